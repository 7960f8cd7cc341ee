"""Renderer names, as tinker-cookbook's `get_renderer` knows them.

A new family is one module plus entries in `_REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from shardprep.errors import UnknownRendererError
from shardprep.renderers.base import Renderer
from shardprep.renderers.deepseek_v3 import DeepSeekV3Renderer, DeepSeekV3ThinkingRenderer
from shardprep.renderers.deepseek_v4_1 import DeepSeekV4_1Renderer
from shardprep.renderers.glm5_3 import Glm5_3Renderer
from shardprep.renderers.gpt_oss import GptOssRenderer
from shardprep.renderers.hf_template import HfTemplateRenderer
from shardprep.renderers.kimi import (
    KimiK2Renderer,
    KimiK25DisableThinkingRenderer,
    KimiK25Renderer,
)
from shardprep.renderers.llama3 import Llama3Renderer
from shardprep.renderers.mistral import MistralRenderer, MistralTekkenRenderer
from shardprep.renderers.nemotron3 import (
    Nemotron3DisableThinkingRenderer,
    Nemotron3LowThinkingRenderer,
    Nemotron3Renderer,
    Nemotron3UltraDisableThinkingRenderer,
    Nemotron3UltraMediumThinkingRenderer,
    Nemotron3UltraRenderer,
)
from shardprep.renderers.qwen3 import (
    Qwen3DisableThinkingRenderer,
    Qwen3InstructRenderer,
    Qwen3Renderer,
)
from shardprep.renderers.qwen3_5 import (
    Qwen3_5DisableThinkingRenderer,
    Qwen3_5Renderer,
    Qwen3_8DisableThinkingRenderer,
    Qwen3_8Renderer,
    Qwen3VLRenderer,
)
from shardprep.renderers.role_colon import RoleColonRenderer
from shardprep.tokenizer import LoadedTokenizer


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
_QWEN3_5 = (
    "Qwen/Qwen3.5-4B",
    "Qwen/Qwen3.5-9B",
    "Qwen/Qwen3.5-27B",
    "Qwen/Qwen3.5-35B-A3B",
    "Qwen/Qwen3.5-397B-A17B",
    "Qwen/Qwen3.6-27B",
    "Qwen/Qwen3.6-35B-A3B",
)
_QWEN3_8 = ("Qwen/Qwen3.8-27B",)
_DEEPSEEK_V4_1 = ("deepseek-ai/DeepSeek-V4.1-Flash", "deepseek-ai/DeepSeek-V4.1-Flash-1017")
_GLM5_3 = ("zai-org/GLM-5.3", "zai-org/GLM-5.3-Flash")
_GPT_OSS = ("openai/gpt-oss-20b", "openai/gpt-oss-120b")
_GPT_OSS_SYS = (
    "gpt-oss Harmony format with the system prompt, 'Reasoning: {}'; "
    "option current_date (YYYY-MM-DD, default 2025-06-28)"
)
_NEMOTRON3 = (
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
    "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16",
)
_NEMOTRON3_ULTRA = (
    "nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16",
    "nvidia/Nemotron-3.5-Lightning-30B-A3B-BF16",
    "nvidia/Nemotron-3.5-Super-VL-120B-A12B-BF16",
)


def _info(name: str, description: str, models: tuple[str, ...]) -> RendererInfo:
    return RendererInfo(name, description, models)


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
    "qwen3_vl": _Entry(
        Qwen3VLRenderer,
        _info(
            "qwen3_vl",
            "Qwen3-VL ChatML, text content only (thinking as inline <think> tags)",
            ("Qwen/Qwen3-VL-30B-A3B-Thinking", "Qwen/Qwen3-VL-235B-A22B-Thinking"),
        ),
    ),
    "qwen3_vl_instruct": _Entry(
        Qwen3VLRenderer,
        _info(
            "qwen3_vl_instruct",
            "Qwen3-VL Instruct ChatML, text content only (same output as qwen3_vl)",
            ("Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen/Qwen3-VL-235B-A22B-Instruct"),
        ),
    ),
    "qwen3_5": _Entry(
        Qwen3_5Renderer,
        _info(
            "qwen3_5",
            "Qwen3.5 ChatML with thinking, XML tool calls; reasoning stripped from history",
            _QWEN3_5,
        ),
    ),
    "qwen3_5_disable_thinking": _Entry(
        Qwen3_5DisableThinkingRenderer,
        _info("qwen3_5_disable_thinking", "Qwen3.5, prompt closes an empty think block", _QWEN3_5),
    ),
    "qwen3_5_preserve_thinking": _Entry(
        partial(Qwen3_5Renderer, strip_thinking_from_history=False),
        _info("qwen3_5_preserve_thinking", "Qwen3.5, history keeps its reasoning", _QWEN3_5),
    ),
    "qwen3_8_xhigh_reasoning": _Entry(
        partial(Qwen3_8Renderer, reasoning_effort="xhigh"),
        _info(
            "qwen3_8_xhigh_reasoning",
            "Qwen3.8 with the xhigh reasoning-effort instruction",
            _QWEN3_8,
        ),
    ),
    "qwen3_8_medium_reasoning": _Entry(
        partial(Qwen3_8Renderer, reasoning_effort="medium"),
        _info("qwen3_8_medium_reasoning", "Qwen3.8, medium effort (no instruction)", _QWEN3_8),
    ),
    "qwen3_8_low_reasoning": _Entry(
        partial(Qwen3_8Renderer, reasoning_effort="low"),
        _info(
            "qwen3_8_low_reasoning", "Qwen3.8 with the low reasoning-effort instruction", _QWEN3_8
        ),
    ),
    "qwen3_8_disable_thinking": _Entry(
        Qwen3_8DisableThinkingRenderer,
        _info("qwen3_8_disable_thinking", "Qwen3.8, prompt closes an empty think block", _QWEN3_8),
    ),
    "nemotron3": _Entry(
        Nemotron3Renderer,
        _info("nemotron3", "Nemotron-3 ChatML with thinking, always a system block", _NEMOTRON3),
    ),
    "nemotron3_low_thinking": _Entry(
        Nemotron3LowThinkingRenderer,
        _info(
            "nemotron3_low_thinking",
            "Nemotron-3, '{reasoning effort: low}' hint on the last user message (string content only)",
            ("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16",),
        ),
    ),
    "nemotron3_disable_thinking": _Entry(
        Nemotron3DisableThinkingRenderer,
        _info(
            "nemotron3_disable_thinking",
            "Nemotron-3, prompt closes an empty think block",
            _NEMOTRON3,
        ),
    ),
    "nemotron3_preserve_thinking": _Entry(
        partial(Nemotron3Renderer, strip_thinking_from_history=False),
        _info("nemotron3_preserve_thinking", "Nemotron-3, history keeps its reasoning", _NEMOTRON3),
    ),
    "nemotron3_ultra": _Entry(
        Nemotron3UltraRenderer,
        _info("nemotron3_ultra", "Nemotron-3 Ultra / 3.5 ChatML with thinking", _NEMOTRON3_ULTRA),
    ),
    "nemotron3_ultra_disable_thinking": _Entry(
        Nemotron3UltraDisableThinkingRenderer,
        _info(
            "nemotron3_ultra_disable_thinking",
            "Nemotron-3 Ultra / 3.5, prompt closes an empty think block",
            _NEMOTRON3_ULTRA,
        ),
    ),
    "nemotron3_ultra_medium_thinking": _Entry(
        Nemotron3UltraMediumThinkingRenderer,
        _info(
            "nemotron3_ultra_medium_thinking",
            "Nemotron-3 Ultra, '{reasoning effort: efficient}' hint on the last user message",
            (_NEMOTRON3_ULTRA[0], _NEMOTRON3_ULTRA[2]),
        ),
    ),
    "nemotron3_ultra_preserve_thinking": _Entry(
        partial(Nemotron3UltraRenderer, strip_thinking_from_history=False),
        _info(
            "nemotron3_ultra_preserve_thinking",
            "Nemotron-3 Ultra / 3.5, history keeps its reasoning",
            _NEMOTRON3_ULTRA,
        ),
    ),
    "kimi_k2": _Entry(
        KimiK2Renderer,
        _info(
            "kimi_k2",
            "Kimi K2-Thinking chat format (no <think> prefill)",
            ("moonshotai/Kimi-K2-Thinking",),
        ),
    ),
    "kimi_k25": _Entry(
        KimiK25Renderer,
        _info(
            "kimi_k25",
            "Kimi K2.5 chat format, prompt prefilled with <think>",
            ("moonshotai/Kimi-K2.5",),
        ),
    ),
    "kimi_k25_disable_thinking": _Entry(
        KimiK25DisableThinkingRenderer,
        _info(
            "kimi_k25_disable_thinking",
            "Kimi K2.5, prompt prefilled with <think></think>",
            ("moonshotai/Kimi-K2.5",),
        ),
    ),
    "kimi_k26": _Entry(
        KimiK25Renderer,
        _info("kimi_k26", "Kimi K2.6 chat format (same as kimi_k25)", ("moonshotai/Kimi-K2.6",)),
    ),
    "kimi_k26_disable_thinking": _Entry(
        KimiK25DisableThinkingRenderer,
        _info(
            "kimi_k26_disable_thinking",
            "Kimi K2.6, prompt prefilled with <think></think>",
            ("moonshotai/Kimi-K2.6",),
        ),
    ),
    "kimi_k26_preserve_thinking": _Entry(
        partial(KimiK25Renderer, strip_thinking_from_history=False),
        _info(
            "kimi_k26_preserve_thinking",
            "Kimi K2.6, history keeps its reasoning",
            ("moonshotai/Kimi-K2.6",),
        ),
    ),
    "gpt_oss_no_sysprompt": _Entry(
        GptOssRenderer,
        _info("gpt_oss_no_sysprompt", "gpt-oss Harmony format without the system prompt", _GPT_OSS),
    ),
    "gpt_oss_low_reasoning": _Entry(
        partial(GptOssRenderer, reasoning_effort="low"),
        _info("gpt_oss_low_reasoning", _GPT_OSS_SYS.format("low"), _GPT_OSS),
    ),
    "gpt_oss_medium_reasoning": _Entry(
        partial(GptOssRenderer, reasoning_effort="medium"),
        _info("gpt_oss_medium_reasoning", _GPT_OSS_SYS.format("medium"), _GPT_OSS),
    ),
    "gpt_oss_high_reasoning": _Entry(
        partial(GptOssRenderer, reasoning_effort="high"),
        _info("gpt_oss_high_reasoning", _GPT_OSS_SYS.format("high"), _GPT_OSS),
    ),
    "glm5_3_max_reasoning": _Entry(
        partial(Glm5_3Renderer, effort="Max"),
        _info("glm5_3_max_reasoning", "GLM-5.3, 'Reasoning Effort: Max' prefix", _GLM5_3),
    ),
    "glm5_3_low_reasoning": _Entry(
        partial(Glm5_3Renderer, effort="Low"),
        _info("glm5_3_low_reasoning", "GLM-5.3, 'Reasoning Effort: Low' prefix", _GLM5_3),
    ),
    "glm5_3_high_reasoning": _Entry(
        partial(Glm5_3Renderer, effort="High"),
        _info("glm5_3_high_reasoning", "GLM-5.3, 'Reasoning Effort: High' prefix", _GLM5_3),
    ),
    "deepseekv4_1": _Entry(
        DeepSeekV4_1Renderer,
        _info("deepseekv4_1", "DeepSeek V4.1 thinking mode, reasoning effort 75", _DEEPSEEK_V4_1),
    ),
    "deepseekv4_1_low_reasoning": _Entry(
        partial(DeepSeekV4_1Renderer, reasoning_effort=50),
        _info(
            "deepseekv4_1_low_reasoning",
            "DeepSeek V4.1 thinking mode, reasoning effort 50",
            _DEEPSEEK_V4_1,
        ),
    ),
    "deepseekv4_1_max_reasoning": _Entry(
        partial(DeepSeekV4_1Renderer, reasoning_effort=100),
        _info(
            "deepseekv4_1_max_reasoning",
            "DeepSeek V4.1 thinking mode, reasoning effort 100",
            _DEEPSEEK_V4_1,
        ),
    ),
    "deepseekv4_1_disable_thinking": _Entry(
        partial(DeepSeekV4_1Renderer, reasoning_effort=None),
        _info(
            "deepseekv4_1_disable_thinking",
            "DeepSeek V4.1 chat mode (no reasoning)",
            _DEEPSEEK_V4_1,
        ),
    ),
    "deepseekv4_1_preserve_thinking": _Entry(
        partial(DeepSeekV4_1Renderer, strip_thinking_from_history=False),
        _info(
            "deepseekv4_1_preserve_thinking",
            "DeepSeek V4.1 thinking mode, history keeps its reasoning",
            _DEEPSEEK_V4_1,
        ),
    ),
    "hf_template": _Entry(
        HfTemplateRenderer,
        _info(
            "hf_template",
            "the model's own Jinja chat_template from tokenizer_config.json (sandboxed); "
            "masks from prefix renders; options template_name, template_kwargs",
            ("any model whose tokenizer_config.json has a chat_template",),
        ),
    ),
    "mistral": _Entry(
        MistralRenderer,
        _info(
            "mistral",
            "Mistral v3 tokenizer chat format ([INST] ... [/INST]), as mistral-common's template",
            ("mistralai/Mistral-7B-Instruct-v0.3",),
        ),
    ),
    "mistral_tekken": _Entry(
        MistralTekkenRenderer,
        _info(
            "mistral_tekken",
            "Mistral Tekken tokenizer chat format, as mistral-common's template",
            ("mistralai/Mistral-Nemo-Instruct-2407",),
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


def renderer_class(name: str) -> type[Renderer] | None:
    """The class a name builds (None for an unknown name): facts a recipe check needs per class."""
    entry = _REGISTRY.get(name)
    if entry is None:
        return None
    factory: Any = entry.factory
    cls = factory.func if isinstance(factory, partial) else factory
    return cls if isinstance(cls, type) and issubclass(cls, Renderer) else None


def get_renderer(
    name: str, tokenizer: LoadedTokenizer, options: dict[str, Any] | None = None
) -> Renderer:
    """A renderer bound to `tokenizer`. Call `check_tokenizer()` to verify the pairing."""
    return _entry(name).factory(tokenizer, name, dict(options or {}))
