"""task: sft — one row per conversation: input_ids / target_ids / weights (tinker's datum)."""

from __future__ import annotations

import numpy as np

from shardprep.encode.conformance import ConformanceCheck, rendered_texts
from shardprep.encode.examples import make_example
from shardprep.encode.tokenize import render_supervised_batch
from shardprep.errors import RowError
from shardprep.formats import declare_tools, to_conversation
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.jinja_template import ChatTemplate
from shardprep.sources.files import RawRow
from shardprep.store.shards import SFT_SCHEMA, examples_table
from shardprep.tasks.base import UnitIO

SCHEMA = "sft/1"
ARROW_SCHEMA = SFT_SCHEMA
to_table = examples_table


_TEMPLATES: dict[str, ChatTemplate | None] = {}


def _conformance(io: UnitIO) -> ConformanceCheck | None:
    """A check against the model's own chat_template, compiled once per process per tokenizer."""
    if io.recipe.conformance_rows <= 0 or io.recipe.renderer.name == "hf_template":
        return None
    tok = io.renderer.tokenizer
    if tok.sha256 not in _TEMPLATES:
        check = ConformanceCheck.for_tokenizer(tok)
        _TEMPLATES[tok.sha256] = check.template if check else None
    template = _TEMPLATES[tok.sha256]
    return ConformanceCheck(template, f"{tok.source} (tokenizer_config.json chat_template)") if template else None


class Runner:
    def __init__(self, io: UnitIO) -> None:
        self.io = io
        self.customized = io.recipe.train_on == TrainOnWhat.CUSTOMIZED
        self.check = _conformance(io)
        self.check_left = io.recipe.conformance_rows

    def process(self, rows: list[RawRow]) -> None:
        io, recipe, src = self.io, self.io.recipe, self.io.source
        convs, metas = [], []
        for raw in io.readable(rows):
            try:
                conv = to_conversation(raw.data or {}, format=src.format, columns=src.columns or None, customized=self.customized)
                # Declared tools replace the leading system message with the renderer's prefix.
                conv = declare_tools(io.renderer, conv, raw.data or {}, src.columns or None, recipe.tools)
            except RowError as err:
                io.skip(err, file=raw.file, line=raw.line, row=raw.data)
                continue
            convs.append(conv)
            metas.append(raw)
        if self.check is not None and self.check_left > 0 and convs:
            sample = convs[: self.check_left]
            texts = rendered_texts(io.renderer, sample, recipe.train_on)
            self.check.add(sample, texts, indices=[io.source_row(r) for r in metas[: len(sample)]])
            self.check_left -= len(sample)
        rendered = render_supervised_batch(io.renderer, io.encoder, convs, recipe.train_on) if convs else []
        for raw, res in zip(metas, rendered, strict=True):
            if isinstance(res, RowError):
                io.skip(res, file=raw.file, line=raw.line, row=raw.data)
                continue
            ex = make_example(
                res.tokens, res.weights, max_length=recipe.max_length, overlong=recipe.overlong,
                reduction=recipe.weight_reduction,
            )
            if isinstance(ex, str):
                io.dropped[ex] += 1
                continue
            io.count_example(len(ex.input_ids), int(np.count_nonzero(ex.weights)), ex.truncated)
            io.writers[io.split_of(raw)].add_example(ex, io.source_name, io.source_row(raw))

    def finish(self) -> None:
        if self.check is not None and self.check.checked:
            res = self.check.result()
            if res["first_difference"] is not None:
                res["first_difference"]["source"] = self.io.source_name
            self.io.extras["conformance"] = res
