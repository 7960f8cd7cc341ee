"""The template conformance sample of a work unit: its first rows compared with the model's template
(a build spreads the recipe's `conformance_rows` over its units: `unit_share`).

Every task that renders conversations samples the same way, so the manifest records, for any
build, how many of the sampled rows the model's own chat_template writes identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shardprep.encode.conformance import ConformanceCheck, prompt_texts, rendered_texts
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.content import Message
from shardprep.renderers.jinja_template import ChatTemplate
from shardprep.tasks.base import UnitIO
from shardprep.tokenizer import LoadedTokenizer

# Compiled once per process per tokenizer and template: a unit samples a handful of rows only.
# Keyed by the template text too: models sharing a tokenizer.json (a base model and its chat
# model) have their own tokenizer_config.json templates.
_TEMPLATES: dict[tuple[str, str], ChatTemplate | None] = {}


def _template(tok: LoadedTokenizer) -> ChatTemplate | None:
    key = (tok.sha256, repr(tok.config.get("chat_template")))
    if key not in _TEMPLATES:
        check = ConformanceCheck.for_tokenizer(tok)
        _TEMPLATES[key] = check.template if check else None
    return _TEMPLATES[key]


def prepare(tok: LoadedTokenizer, rows: int, renderer: str) -> None:
    """Compile the template now, where a build's units will sample it: in the driver before a
    pool forks, every worker inherits it instead of compiling its own (a quarter CPU-second for
    Qwen3's), and the driver does it while the encoder's parse runs."""
    if rows > 0 and renderer != "hf_template":
        _template(tok)


def _rows(io: UnitIO) -> int:
    return io.recipe.conformance_rows if io.conformance_rows is None else io.conformance_rows


def unit_share(rows: int, units: int) -> int:
    """A work unit's share of a build's `conformance_rows`: spread evenly, at least one row per
    unit (so every part of the input is sampled), none when the recipe turns the check off."""
    if rows <= 0:
        return 0
    return max(1, -(-rows // max(1, units)))


class Conformance:
    def __init__(self, io: UnitIO, check: ConformanceCheck) -> None:
        self.io = io
        self.check = check
        self.left = _rows(io)

    @classmethod
    def start(cls, io: UnitIO) -> Conformance | None:
        """A sampler for this unit, or None when off (hf_template is the template itself)."""
        if _rows(io) <= 0 or io.recipe.renderer.name == "hf_template":
            return None
        tok = io.renderer.tokenizer
        template = _template(tok)
        if template is None:
            return None
        return cls(
            io, ConformanceCheck(template, f"{tok.source} (tokenizer_config.json chat_template)")
        )

    def add(
        self, convs: Sequence[Sequence[Message]], source_rows: Sequence[int], train_on: TrainOnWhat
    ) -> None:
        if self.left <= 0 or not convs:
            return
        sample = list(convs[: self.left])
        texts = rendered_texts(self.io.renderer, sample, train_on)
        self.check.add(sample, texts, indices=list(source_rows[: len(sample)]))
        self.left -= len(sample)

    def add_prompts(self, convs: Sequence[Sequence[Message]], source_rows: Sequence[int]) -> None:
        """Generation prompts (rl_prompts), against the template with add_generation_prompt."""
        if self.left <= 0 or not convs:
            return
        sample = list(convs[: self.left])
        texts = prompt_texts(self.io.renderer, sample)
        self.check.add(
            sample, texts, indices=list(source_rows[: len(sample)]), add_generation_prompt=True
        )
        self.left -= len(sample)

    def finish(self) -> None:
        if not self.check.checked:
            return
        res: dict[str, Any] = self.check.result()
        if res["first_difference"] is not None:
            res["first_difference"]["source"] = self.io.source_name
        self.io.extras["conformance"] = res
