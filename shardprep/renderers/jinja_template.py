"""A model's own Jinja `chat_template`, rendered in a sandbox the way transformers renders it.

Same environment as transformers' `apply_chat_template`: ImmutableSandboxedEnvironment with
`trim_blocks` / `lstrip_blocks`, the `raise_exception` and `strftime_now` globals, a `tojson`
filter that keeps non-ASCII text, and `bos_token` / `eos_token` from tokenizer_config.json.
The sandbox matters: a template is code that came with a downloaded model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.ext import loopcontrols

from shardprep.errors import RendererError, ShardprepError
from shardprep.renderers.content import Message, parts
from shardprep.renderers.jinja_limits import BoundedEnvironment


class TemplateRaised(RendererError):
    """The template refused the conversation (its `raise_exception`)."""


def _raise_exception(message: str) -> NoReturn:
    raise TemplateRaised(f"chat template raised: {message}", field="messages")


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _token_text(config: dict[str, Any], key: str) -> str:
    tok = config.get(key)
    if isinstance(tok, dict):
        tok = tok.get("content")
    return tok if isinstance(tok, str) else ""


def chat_template_of(config: dict[str, Any], name: str = "default") -> str:
    """The `chat_template` string of a tokenizer_config.json (a named one from a list form)."""
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get(name)
    if not isinstance(template, str) or not template:
        raise ShardprepError(
            "the tokenizer's tokenizer_config.json has no chat_template"
            + (f" named {name!r}" if name != "default" else "")
        )
    return template


def template_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them.

    Text parts are joined into a string (most templates apply string filters to `content`),
    thinking parts go to `reasoning_content` (the key the Qwen and DeepSeek templates read),
    and shardprep's own keys (`trainable`) are left out.
    """
    out = []
    for m in messages:
        msg = {k: v for k, v in m.items() if k != "trainable"}
        content = m.get("content")
        if isinstance(content, list):
            items = parts(content)
            msg["content"] = "".join(
                str(p.get("text", "")) for p in items if p.get("type") == "text"
            )
            thinking = "".join(
                str(p.get("thinking", "")) for p in items if p.get("type") == "thinking"
            )
            if thinking:
                msg["reasoning_content"] = thinking
        out.append(msg)
    return out


class ChatTemplate:
    """One compiled chat template plus the special-token values it is rendered with."""

    def __init__(
        self, source: str, *, bos_token: str = "", eos_token: str = "", label: str = "chat template"
    ) -> None:
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        # The sandbox, with a time and output-size bound per render (jinja_limits.py).
        env = self._env = BoundedEnvironment(
            label=label, trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = env.bounded_filter("tojson", _tojson)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ShardprepError(f"chat template does not compile: {exc}") from exc

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "default") -> ChatTemplate:
        return cls(
            chat_template_of(config, name),
            bos_token=_token_text(config, "bos_token"),
            eos_token=_token_text(config, "eos_token"),
            label="tokenizer_config.json chat_template"
            + (f" {name!r}" if name != "default" else ""),
        )

    def render(
        self,
        # As `template_messages` gives them: what Jinja templates read, not shardprep's Message.
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tools: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> str:
        """The template's text for `messages` (already in template form, see template_messages)."""
        self._env.start()
        try:
            chunks = self._template.generate(
                messages=list(messages),
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
            out: list[str] = []
            size = 0
            for chunk in chunks:  # streamed, so a runaway template is stopped as it writes
                size += len(chunk)
                self._env.check_size(size)
                self._env.check_time()
                out.append(chunk)
            return "".join(out)
        except RendererError:
            raise
        except Exception as exc:  # a template error is about this conversation, not the build
            raise RendererError(
                f"chat template failed: {type(exc).__name__}: {exc}", field="messages"
            ) from exc
