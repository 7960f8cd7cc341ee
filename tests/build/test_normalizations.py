"""The manifest records what a source's format changed in its rows before rendering."""

from __future__ import annotations

from pathlib import Path

from shardprep.formats.messages import NORMALIZATIONS

from ..tasks._helpers import run_build, write_jsonl


def test_messages_sources_record_their_normalizations(tmp_path: Path) -> None:
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    rows = [
        {"messages": conv},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    ]
    write_jsonl(tmp_path / "d.jsonl", rows)
    res = run_build(
        tmp_path, task="sft", sources=[{"path": "d.jsonl", "format": "messages"}], on_error="skip"
    )
    [source] = res.manifest["sources"]
    assert source["normalizations"] == list(NORMALIZATIONS) and NORMALIZATIONS
