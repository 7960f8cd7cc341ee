"""Renderer names, as tinker-cookbook's `get_renderer` knows them.

A new family is one module plus entries in `_REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shardprep.errors import UnknownRendererError
from shardprep.pipeline.tokenizer import LoadedTokenizer
from shardprep.renderers.base import Renderer
from shardprep.renderers.deepseek_v3 import DeepSeekV3Renderer, DeepSeekV3ThinkingRenderer
from shardprep.renderers.llama3 import Llama3Renderer
from shardprep.renderers.qwen3 import (
    Qwen3DisableThinkingRenderer,
    Qwen3InstructRenderer,
    Qwen3Renderer,
)
from shardprep.renderers.role_colon import RoleColonRenderer


@dataclass(frozen=True)
class RendererInfo:
    name: str
    description: str
    models: tuple[str, ...]  # model families the renderer is meant for (tinker's model_info)


@dataclass(frozen=True)
class _Entry:
    factory: Callable[[LoadedTokenizer, str, dict[str, Any]], Renderer]
    info: RendererInfo


_QWEN3 = ("Qwen/Qwen3-8B", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B")
_DEEPSEEK_V3 = ("deepseek-ai/DeepSeek-V3.1",)

_REGISTRY: dict[str, _Entry] = {
    "role_colon": _Entry(
        RoleColonRenderer,
        RendererInfo(
            "role_colon",
            "'Role: text' transcript for base models; BOS from tokenizer_config.json when set",
            (
                "meta-llama/Llama-3.2-1B",
                "meta-llama/Llama-3.2-3B",
                "meta-llama/Llama-3.1-8B",
                "meta-llama/Llama-3.1-70B",
                "Qwen/Qwen3-8B-Base",
                "Qwen/Qwen3-30B-A3B-Base",
                "Qwen/Qwen3.5-9B-Base",
                "Qwen/Qwen3.5-35B-A3B-Base",
                "deepseek-ai/DeepSeek-V3.1-Base",
            ),
        ),
    ),
    "llama3": _Entry(
        Llama3Renderer,
        RendererInfo(
            "llama3",
            "Llama 3 instruct chat format (no knowledge-date preamble)",
            ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.3-70B-Instruct"),
        ),
    ),
    "qwen3": _Entry(
        Qwen3Renderer,
        RendererInfo(
            "qwen3", "Qwen3 ChatML with thinking; reasoning stripped from history", _QWEN3
        ),
    ),
    "qwen3_disable_thinking": _Entry(
        Qwen3DisableThinkingRenderer,
        RendererInfo(
            "qwen3_disable_thinking", "Qwen3 ChatML, prompt closes an empty think block", _QWEN3
        ),
    ),
    "qwen3_instruct": _Entry(
        Qwen3InstructRenderer,
        RendererInfo(
            "qwen3_instruct",
            "Qwen3 ChatML without think framing (Instruct-2507 models)",
            (
                "Qwen/Qwen3-4B-Instruct-2507",
                "Qwen/Qwen3-30B-A3B-Instruct-2507",
                "Qwen/Qwen3-235B-A22B-Instruct-2507",
            ),
        ),
    ),
    "deepseekv3": _Entry(
        DeepSeekV3Renderer,
        RendererInfo("deepseekv3", "DeepSeek V3.1 non-thinking mode", _DEEPSEEK_V3),
    ),
    "deepseekv3_disable_thinking": _Entry(
        DeepSeekV3Renderer,
        RendererInfo("deepseekv3_disable_thinking", "alias of deepseekv3", _DEEPSEEK_V3),
    ),
    "deepseekv3_thinking": _Entry(
        DeepSeekV3ThinkingRenderer,
        RendererInfo(
            "deepseekv3_thinking",
            "DeepSeek V3.1 thinking mode, prompt prefilled with <think>",
            _DEEPSEEK_V3,
        ),
    ),
}


def renderer_names() -> list[str]:
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise UnknownRendererError(
            f"unknown renderer {name!r}; known renderers: {', '.join(renderer_names())}"
        )
    return entry


def renderer_info(name: str) -> RendererInfo:
    return _entry(name).info


def get_renderer(
    name: str, tokenizer: LoadedTokenizer, options: dict[str, Any] | None = None
) -> Renderer:
    """A renderer bound to `tokenizer`. Call `check_tokenizer()` to verify the pairing."""
    return _entry(name).factory(tokenizer, name, dict(options or {}))
