"""`hf_template` gives a row's `tools` to the model's own template: token for token what
`transformers.apply_chat_template(messages, tools=...)` gives, on the repo's LLaMA-Factory glaive
tool-call demo with the Qwen3 tokenizer and template from tests/fixtures (offline)."""

from __future__ import annotations

import functools
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardprep.encode.tokenize import (
    BatchEncoder,
    RenderedExample,
    render_prompt_batch,
    render_supervised_batch,
    render_supervised_examples,
)
from shardprep.formats import declare_tools, to_conversation, tools_of
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.renderers.hf_template import tools_of as carried_tools
from shardprep.renderers.hf_template import untooled
from shardprep.renderers.jinja_template import template_messages
from shardprep.renderers.tools import wrapped
from shardprep.tokenizer import LoadedTokenizer

ROOT = Path(__file__).parents[2]
GLAIVE = ROOT / "tests/fixtures/data/llamafactory/glaive_toolcall_en_demo.json.gz"
QWEN3 = ROOT / "tests/fixtures/tokenizers/qwen3"
ROWS = 40


@functools.cache
def _hf_tokenizer(tmp: str) -> Any:
    transformers = pytest.importorskip("transformers")
    dst = Path(tmp) / "qwen3"
    dst.mkdir()
    for f in QWEN3.iterdir():
        if f.name.endswith(".gz"):
            with gzip.open(f, "rb") as fin, open(dst / f.name[:-3], "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            shutil.copy(f, dst / f.name)
    return transformers.AutoTokenizer.from_pretrained(str(dst))


def _rows() -> list[dict[str, Any]]:
    with gzip.open(GLAIVE, "rt", encoding="utf-8") as fh:
        rows: list[dict[str, Any]] = json.load(fh)
    return [r for r in rows if tools_of(r)][:ROWS]


def _apply(hf: Any, messages: list[Any], tools: Any, prompt: bool) -> list[int]:
    ids = hf.apply_chat_template(
        messages, tools=tools, tokenize=True, add_generation_prompt=prompt, return_dict=False
    )
    return [int(t) for t in (ids["input_ids"] if hasattr(ids, "keys") else ids)]


def test_tools_rows_equal_apply_chat_template(
    tmp_path_factory: pytest.TempPathFactory, tokenizer_for: Any
) -> None:
    hf = _hf_tokenizer(str(tmp_path_factory.mktemp("hf")))
    tok: LoadedTokenizer = tokenizer_for("qwen3")
    renderer = get_renderer("hf_template", tok)
    encoder = BatchEncoder(tok, encoder="tokenizers")
    rows = _rows()
    assert len(rows) == ROWS
    convs = []
    for row in rows:
        conv = to_conversation(row, format="sharegpt")
        declared = declare_tools(renderer, conv, row, None, "auto")
        # The row's own declarations, as a transformers user passes them, reach the template.
        assert carried_tools(declared) == wrapped(tools_of(row) or [])
        assert len(declared) == len(conv)  # no prefix message: the template declares them
        convs.append(declared)
    # Qwen3's template rewrites earlier turns (their empty think blocks), so a whole multi-turn
    # row is refused as not prefix-consistent; one example per turn (examples: per_turn) is
    # the render of messages[:i+1], untrained up to the generation prompt of messages[:i].
    turns = render_supervised_examples(renderer, encoder, convs, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    whole = render_supervised_batch(renderer, encoder, convs, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    prompts = render_prompt_batch(renderer, encoder, [c[:-1] for c in convs])
    compared = prompted = 0
    for row, conv, examples, ex, prompt in zip(rows, convs, turns, whole, prompts, strict=True):
        tools = wrapped(tools_of(row) or [])
        messages = template_messages(untooled(conv))
        assert isinstance(examples, list) and examples, examples
        for turn in examples:
            i = turn.message_index
            want = _apply(hf, messages[: i + 1], tools, prompt=False)
            head = _apply(hf, messages[:i], tools, prompt=True)
            got = turn.example.tokens.tolist()
            # A template ends with the separator before the next turn ("<|im_end|>\n").
            assert got == want[: len(got)] and len(want) - len(got) <= 1
            assert got[: len(head)] == head
            weights = turn.example.weights
            assert weights[: len(head)].sum() == 0 and weights[len(head) :].all()
            compared += 1
        if isinstance(ex, RenderedExample):  # a row the template writes prefix-consistently
            want = _apply(hf, messages, tools, prompt=False)
            assert ex.tokens.tolist() == want[: len(ex.tokens)]
        else:
            assert "prefix-consistent" in ex.message
        if isinstance(prompt, np.ndarray):
            assert prompt.tolist() == _apply(hf, messages[:-1], tools, prompt=True)
            prompted += 1
        else:
            assert "prefix-consistent" in prompt.message
        # The declarations open the first example, as the template writes them.
        text = hf.decode(examples[0].example.tokens.tolist())
        assert "# Tools" in text and tools[0]["function"]["name"] in text
    assert compared >= ROWS and prompted > 0


def test_tools_ignore_and_no_tools_render_as_before(tokenizer_for: Any) -> None:
    tok = tokenizer_for("qwen3")
    renderer = get_renderer("hf_template", tok)
    encoder = BatchEncoder(tok, encoder="tokenizers")
    [row] = _rows()[:1]
    conv = to_conversation(row, format="sharegpt")[:2]  # one turn: prefix-consistent
    ignored = declare_tools(renderer, conv, row, None, "ignore")
    assert ignored == conv and carried_tools(ignored) is None
    with_tools = declare_tools(renderer, conv, row, None, "auto")
    plain, tooled = render_supervised_batch(
        renderer, encoder, [ignored, with_tools], TrainOnWhat.LAST_ASSISTANT_MESSAGE
    )
    assert isinstance(plain, RenderedExample) and isinstance(tooled, RenderedExample)
    assert len(tooled.tokens) > len(plain.tokens)
    # Only the declarations differ: the conversation's own tokens end both.
    n = int(plain.weights.astype(bool).sum())
    assert tooled.tokens[-n:].tolist() == plain.tokens[-n:].tolist()
