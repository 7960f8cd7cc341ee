"""Refusals carry the reason of what is wrong with the row, not a generic renderer_error."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardprep import (
    BatchEncoder,
    TrainOnWhat,
    get_renderer,
    load_tokenizer,
    render_supervised_batch,
)
from shardprep.errors import RowError

TOK = Path(__file__).parent.parent / "fixtures" / "tokenizers" / "toy"


@pytest.mark.parametrize("name", ["qwen3", "qwen3_5", "qwen3_8_medium_reasoning"])
def test_tool_call_arguments_that_are_not_json_are_bad_tool_call(name: str) -> None:
    tok = load_tokenizer(str(TOK))
    call = {"type": "function", "function": {"name": "f", "arguments": "{not json"}}
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    [res] = render_supervised_batch(
        get_renderer(name, tok), BatchEncoder(tok), [conv], TrainOnWhat.ALL_ASSISTANT_MESSAGES
    )
    assert isinstance(res, RowError) and res.reason == "bad_tool_call"
