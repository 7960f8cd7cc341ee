"""End to end: recipe -> shards + manifest on real data and a real tokenizer, read back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from shardprep.build.run import build
from shardprep.encode.tokenize import BatchEncoder, render_supervised_batch
from shardprep.errors import RowError, TokenizerError
from shardprep.recipe import load_recipe
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.registry import get_renderer
from shardprep.tokenizer import load_tokenizer

ROOT = Path(__file__).parents[2]
QWEN3 = str(ROOT / "tests/fixtures/tokenizers/qwen3")
LLAMA3 = str(ROOT / "tests/fixtures/tokenizers/llama3")


def write_recipe(tmp_path: Path, **overrides: Any) -> Path:
    recipe: dict[str, Any] = {
        "name": "t",
        "output": "out",
        "tokenizer": QWEN3,
        "renderer": "qwen3",
        "sources": [{"name": "chat", "path": "data.jsonl"}],
        **overrides,
    }
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


def write_jsonl(path: Path, rows: list[Any]) -> None:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )


def chat(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": f"What is {i} + {i}?"},
            {"role": "assistant", "content": f"{2 * i}."},
        ]
    }


def read_split(out: Path, manifest: dict[str, Any], split: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for shard in manifest["splits"][split]["shards"]:
        rows += pq.read_table(out / shard["path"]).to_pylist()
    return rows


def test_build_reads_back_exactly(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", [chat(i) for i in range(50)])
    recipe, base = load_recipe(
        write_recipe(tmp_path, split={"test_size": 5, "seed": 1}, shards={"max_rows": 16})
    )
    result = build(recipe, base)
    assert result.status == "built"
    out = tmp_path / "out"
    m = json.loads((out / "manifest.json").read_text())
    assert m == result.manifest
    assert m["splits"]["train"]["rows"] == 45 and m["splits"]["test"]["rows"] == 5
    assert len(m["splits"]["train"]["shards"]) == 3  # 16 + 16 + 13
    train = read_split(out, m, "train")
    test = read_split(out, m, "test")
    assert sorted(r["source_row"] for r in train + test) == list(range(50))
    # every shard's sha256 and size match the manifest
    for info in m["splits"]["train"]["shards"] + m["splits"]["test"]["shards"]:
        data = (out / info["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["bytes"]
    # token counts add up
    assert m["splits"]["train"]["tokens"] == sum(r["length"] for r in train)
    assert m["splits"]["train"]["trained_tokens"] == sum(
        int(np.count_nonzero(r["weights"])) for r in train
    )
    # row content equals rendering the conversation directly (then shift)
    tok = load_tokenizer(QWEN3)
    r7 = next(r for r in train + test if r["source_row"] == 7)
    rendered = render_supervised_batch(
        get_renderer("qwen3", tok),
        BatchEncoder(tok),
        [chat(7)["messages"]],
        TrainOnWhat.ALL_ASSISTANT_MESSAGES,
    )[0]
    assert not isinstance(rendered, RowError)
    assert r7["input_ids"] == rendered.tokens[:-1].tolist()
    assert r7["target_ids"] == rendered.tokens[1:].tolist()
    assert r7["weights"] == rendered.weights[1:].tolist()
    decoded = tok.tokenizer.decode(
        r7["input_ids"] + r7["target_ids"][-1:], skip_special_tokens=False
    )
    assert "What is 7 + 7?" in decoded and decoded.endswith("14.<|im_end|>")
    # the schema is explicit
    schema = pq.read_schema(out / m["splits"]["train"]["shards"][0]["path"])
    assert schema.field("input_ids").type.value_type == pa.int32()
    assert schema.field("weights").type.value_type == pa.float32()
    assert schema.field("source").type == pa.dictionary(pa.int32(), pa.string())
    assert m["stats"]["dropped"] == {}
    assert m["tokenizer"]["sha256"] == tok.sha256


def test_unchanged_rebuild_is_up_to_date_and_change_rebuilds(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", [chat(i) for i in range(10)])
    path = write_recipe(tmp_path)
    recipe, base = load_recipe(path)
    first = build(recipe, base)
    second = build(recipe, base)
    assert (
        second.status == "up_to_date"
        and second.manifest["fingerprint"] == first.manifest["fingerprint"]
    )
    recipe2, _ = load_recipe(write_recipe(tmp_path, max_length=30))
    third = build(recipe2, base)
    assert (
        third.status == "built" and third.manifest["fingerprint"] != first.manifest["fingerprint"]
    )
    # the old data folder is gone once the new manifest is in place
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("data-")) == [
        third.manifest["data_dir"]
    ]


def test_weight_reduction_mean_and_no_trained_rows_dropped(tmp_path: Path) -> None:
    rows = [chat(i) for i in range(4)] + [
        {"messages": [{"role": "user", "content": "only a question"}]}
    ]
    write_jsonl(tmp_path / "data.jsonl", rows)
    recipe, base = load_recipe(write_recipe(tmp_path, weight_reduction="mean"))
    m = build(recipe, base).manifest
    assert m["stats"]["dropped"] == {"no_trained_tokens": 1}
    for r in read_split(tmp_path / "out", m, "train"):
        assert sum(r["weights"]) == pytest.approx(1.0, abs=1e-5)


def test_overlong_truncate_and_drop(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", [chat(i) for i in range(3)])
    recipe, base = load_recipe(write_recipe(tmp_path, max_length=24, train_on="all_tokens"))
    m = build(recipe, base).manifest
    assert m["stats"]["truncated"] == 3
    assert all(r["length"] == 23 for r in read_split(tmp_path / "out", m, "train"))
    short = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    write_jsonl(tmp_path / "data.jsonl", [chat(i) for i in range(3)] + [short])
    recipe, base = load_recipe(write_recipe(tmp_path, max_length=24, overlong="drop"))
    m = build(recipe, base).manifest
    assert m["stats"]["dropped"] == {"overlong": 3}
    assert [r["source_row"] for r in read_split(tmp_path / "out", m, "train")] == [3]


BAD_ROWS = [
    ("{not json", "malformed_json"),
    (json.dumps({"text": "no messages"}), "missing_field"),
    (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}), "unknown_role"),
    (
        json.dumps(
            {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}
        ),
        "bad_content",
    ),
    (json.dumps({"messages": []}), "empty_conversation"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_bad_row_fails_with_location(tmp_path: Path, line: str, reason: str) -> None:
    write_jsonl(tmp_path / "data.jsonl", [chat(0), chat(1), line, chat(2)])
    recipe, base = load_recipe(write_recipe(tmp_path))
    with pytest.raises(RowError) as info:
        build(recipe, base)
    err = info.value
    assert err.reason == reason
    assert err.line == 3 and err.file is not None and err.file.endswith("data.jsonl")
    assert "line 3" in str(err)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_bad_rows_skipped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_bytes(
        b"".join(
            [json.dumps(chat(0)).encode() + b"\n"]
            + [line.encode() + b"\n" for line, _ in BAD_ROWS]
            + [b'{"messages": "\xff\xfe"}\n', json.dumps(chat(1)).encode() + b"\n"]
        )
    )
    recipe, base = load_recipe(write_recipe(tmp_path, on_error="skip"))
    m = build(recipe, base).manifest
    expected = {reason: 1 for _, reason in BAD_ROWS} | {"invalid_utf8": 1}
    assert m["stats"]["dropped"] == expected
    assert m["splits"]["train"]["rows"] == 2
    sample = [
        json.loads(x) for x in (tmp_path / "out" / m["skipped_sample"]).read_text().splitlines()
    ]
    assert sorted(s["reason"] for s in sample) == sorted(expected)
    assert all(s["line"] is not None and s["file"].endswith("data.jsonl") for s in sample)


def test_renderer_error_is_located(tmp_path: Path) -> None:
    thinking = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm"},
                    {"type": "text", "text": "yo"},
                ],
            },
        ]
    }
    write_jsonl(tmp_path / "data.jsonl", [chat(0), thinking])
    recipe, base = load_recipe(write_recipe(tmp_path, tokenizer=LLAMA3, renderer="llama3"))
    with pytest.raises(RowError) as info:
        build(recipe, base)
    assert info.value.reason == "renderer_error" and info.value.line == 2


def test_tokenizer_lacking_special_tokens_fails_before_first_row(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", [chat(0)])
    recipe, base = load_recipe(write_recipe(tmp_path, tokenizer=LLAMA3, renderer="qwen3"))
    with pytest.raises(TokenizerError, match="<\\|im_start\\|>|<\\|im_end\\|>"):
        build(recipe, base)


def test_formats_and_parquet_and_glob(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    write_jsonl(tmp_path / "parts" / "a.jsonl", [chat(i) for i in range(3)])
    write_jsonl(tmp_path / "parts" / "b.jsonl", [chat(i) for i in range(3, 5)])
    pq.write_table(
        pa.Table.from_pylist([{"instruction": "Say hi", "input": "", "output": "hi"}] * 4),
        tmp_path / "alpaca.parquet",
    )
    (tmp_path / "sg.json").write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "hey"},
                        {"from": "gpt", "value": "hello"},
                    ]
                }
            ]
            * 2
        )
    )
    sources = [
        {"name": "msgs", "path": "parts/*.jsonl"},
        {"name": "alp", "path": "alpaca.parquet", "format": "alpaca"},
        {"name": "sg", "path": "sg.json", "format": "sharegpt"},
    ]
    recipe, base = load_recipe(write_recipe(tmp_path, sources=sources))
    m = build(recipe, base).manifest
    per = {s["name"]: s for s in m["sources"]}
    assert (per["msgs"]["examples"], per["alp"]["examples"], per["sg"]["examples"]) == (5, 4, 2)
    assert len(per["msgs"]["files"]) == 2
    rows = read_split(tmp_path / "out", m, "train")
    assert [r["source"] for r in rows] == ["msgs"] * 5 + ["alp"] * 4 + ["sg"] * 2
    assert [r["source_row"] for r in rows] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1]


def test_missing_source_file_is_a_clear_error(tmp_path: Path) -> None:
    from shardprep.errors import SourceError

    recipe, base = load_recipe(write_recipe(tmp_path))
    with pytest.raises(SourceError, match="data.jsonl"):
        build(recipe, base)


def test_all_rows_dropped_is_an_error_not_an_empty_build(tmp_path: Path) -> None:
    from shardprep.errors import BuildError

    write_jsonl(
        tmp_path / "data.jsonl", [{"messages": [{"role": "user", "content": "question?"}]}] * 3
    )
    recipe, base = load_recipe(write_recipe(tmp_path))
    with pytest.raises(BuildError, match="all 3 rows were dropped.*no_trained_tokens 3"):
        build(recipe, base)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_customized_train_on_uses_per_message_trainable(tmp_path: Path) -> None:
    conv = chat(3)
    conv["messages"] = [{**m, "trainable": m["role"] == "user"} for m in conv["messages"]]
    write_jsonl(tmp_path / "data.jsonl", [conv])
    recipe, base = load_recipe(write_recipe(tmp_path, train_on="customized"))
    m = build(recipe, base).manifest
    row = read_split(tmp_path / "out", m, "train")[0]
    tok = load_tokenizer(QWEN3)
    trained = [t for t, w in zip(row["target_ids"], row["weights"], strict=True) if w > 0]
    assert tok.tokenizer.decode(trained, skip_special_tokens=False) == "What is 3 + 3?<|im_end|>"


def test_tokenizer_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    # A Hub-layout cache, as huggingface_hub writes it; HF_HUB_OFFLINE=1 keeps the lookup local.
    snap = tmp_path / "hub" / "models--acme--tiny-chat" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "tokenizer.json").write_bytes(
        gzip.decompress((Path(QWEN3) / "tokenizer.json.gz").read_bytes())
    )
    refs = tmp_path / "hub" / "models--acme--tiny-chat" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    tok = load_tokenizer("acme/tiny-chat")
    assert tok.sha256 == load_tokenizer(QWEN3).sha256
    with pytest.raises(TokenizerError, match="huggingface_hub cache"):
        load_tokenizer("acme/not-cached")


def test_manifest_records_template_conformance(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", [chat(i) for i in range(40)])
    m = build(*load_recipe(write_recipe(tmp_path, conformance_rows=8, work_unit_rows=10))).manifest
    conf = m["conformance"]
    assert conf["checked"] == 8  # the build's 8 rows spread over its 4 units: 2 in each
    assert conf["identical"] == 8 and conf["first_difference"] is None  # qwen3 == Qwen3's template
    m = build(
        *load_recipe(
            write_recipe(tmp_path, conformance_rows=3, work_unit_rows=10, output="out-share")
        )
    ).manifest
    assert m["conformance"]["checked"] == 4  # at least one row in each unit
    m = build(
        *load_recipe(write_recipe(tmp_path, tokenizer=LLAMA3, renderer="llama3", output="out2"))
    ).manifest
    conf = m["conformance"]
    assert conf["identical"] == 0  # Llama's template adds the "Cutting Knowledge Date" system block
    assert "Cutting Knowledge Date" in conf["first_difference"]["diff"]
    assert conf["first_difference"]["source"] == "chat"
    m = build(*load_recipe(write_recipe(tmp_path, conformance_rows=0, output="out3"))).manifest
    assert "conformance" not in m
