"""Mask health on a crafted bad build (every warning fires), decoding, and the library side of show."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shardprep import FORMAT_VERSION
from shardprep.cli.app import app
from shardprep.encode.decode import decode_pieces, spans_of
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer
from shardprep.views.health import MaskHealth, health_warnings
from shardprep.views.show import inspect_build, length_histogram

QWEN3 = Path(__file__).parents[1] / "fixtures" / "tokenizers" / "qwen3"
IM_START, IM_END = 151644, 151645
ALL_CODES = {
    "untrained_rows",
    "untrained_rows_dropped",
    "end_of_turn_never_trained",
    "trained_ratio_low",
    "trained_ratio_high",
    "trained_ratio_outlier",
    "source_no_examples",
    "template_mismatch",
}
CONFORMANCE = {
    "template": "Qwen/Qwen3-8B chat_template",
    "checked": 10,
    "identical": 9,
    "first_difference": {
        "index": 3,
        "diff": "--- chat_template\n+++ shardprep\n@@ -1 +1 @@\n-<|im_start|>assistant\n+<|im_start|>assistant <think>",
    },
}


@pytest.fixture(scope="module")
def tok() -> LoadedTokenizer:
    return load_tokenizer(str(QWEN3))


def _conversation(
    tok: LoadedTokenizer, answer: str, trained_share: float, *, train_end: bool = False
) -> tuple[list[int], list[float]]:
    """A two-turn ChatML row whose answer is trained in its first `trained_share`; the <|im_end|>s only if train_end."""
    enc = tok.tokenizer.encode
    prompt = [
        IM_START,
        *enc("user\nplease answer", add_special_tokens=False).ids,
        IM_END,
        IM_START,
        *enc("assistant\n", add_special_tokens=False).ids,
    ]
    body = enc(answer, add_special_tokens=False).ids
    k = round(len(body) * trained_share)
    tokens = [*prompt, *body, IM_END]
    weights = (
        [0.0] * len(prompt) + [1.0] * k + [0.0] * (len(body) - k) + [1.0 if train_end else 0.0]
    )
    return tokens, weights


def write_crafted_build(root: Path, tok: LoadedTokenizer, *, tokenizer_path: str) -> dict[str, Any]:
    """Shards written with pyarrow, as another tool (or a broken build) might: one row per source,
    each source crafted to trip one warning, <|im_end|> never trained anywhere."""
    long = "word " * 120
    rows = {
        "good_a": _conversation(tok, "a fine answer of some length here", 0.9),
        "good_b": _conversation(tok, "another fine answer of some length", 0.9),
        "good_c": _conversation(tok, "a third fine answer, also long enough", 0.9),
        "empty": _conversation(tok, "nothing of this is trained", 0.0),
        "low": _conversation(tok, long, 0.01),
        "high": (
            [IM_START, *tok.tokenizer.encode(long, add_special_tokens=False).ids, IM_END],
            None,
        ),
        "outlier": _conversation(tok, long, 0.08),
    }
    table_rows = []
    sources = []
    for name, (tokens, weights) in rows.items():
        w = (
            weights if weights is not None else [1.0] * (len(tokens) - 1) + [0.0]
        )  # all but the end token
        table_rows.append(
            {
                "input_ids": tokens[:-1],
                "target_ids": tokens[1:],
                "weights": w[1:],
                "length": len(tokens) - 1,
                "source": name,
                "source_row": 0,
            }
        )
        n, trained = len(tokens) - 1, sum(1 for x in w[1:] if x > 0)
        sources.append(
            {
                "name": name,
                "path": f"{name}.jsonl",
                "format": "messages",
                "files": [],
                "rows_read": 1,
                "examples": 1,
                "tokens": n,
                "trained_tokens": trained,
                "dropped": 0,
            }
        )
    sources.append(
        {
            "name": "gone",
            "path": "gone.jsonl",
            "format": "messages",
            "files": [],
            "rows_read": 4,
            "examples": 0,
            "tokens": 0,
            "trained_tokens": 0,
            "dropped": 4,
        }
    )
    schema = pa.schema(
        [
            ("input_ids", pa.list_(pa.int32())),
            ("target_ids", pa.list_(pa.int32())),
            ("weights", pa.list_(pa.float32())),
            ("length", pa.int32()),
            ("source", pa.dictionary(pa.int32(), pa.string())),
            ("source_row", pa.int64()),
        ]
    )
    (root / "data-crafted").mkdir(parents=True)
    rel = "data-crafted/train-00000.parquet"
    pq.write_table(pa.Table.from_pylist(table_rows, schema=schema), root / rel, row_group_size=3)
    n_tokens = sum(r["length"] for r in table_rows)
    n_trained = sum(sum(1 for x in r["weights"] if x > 0) for r in table_rows)
    shard = {
        "path": rel,
        "rows": len(table_rows),
        "tokens": n_tokens,
        "trained_tokens": n_trained,
        "bytes": (root / rel).stat().st_size,
        "sha256": hashlib.sha256((root / rel).read_bytes()).hexdigest(),
    }
    manifest = {
        "format": "shardprep",
        "format_version": FORMAT_VERSION,
        "created_at": "2025-01-01T00:00:00+00:00",
        "fingerprint": "f" * 64,
        "task": "sft",
        "recipe": {"name": "crafted", "max_length": 4096, "overlong": "truncate"},
        "tokenizer": {"source": "qwen3", "path": tokenizer_path, "eos_id": IM_END},
        "renderer": {"name": "qwen3", "options": {}},
        "train_on": "all_assistant_messages",
        "sources": sources,
        "splits": {
            "train": {
                "rows": len(table_rows),
                "tokens": n_tokens,
                "trained_tokens": n_trained,
                "shards": [shard],
            }
        },
        "stats": {
            "rows_read": 11,
            "examples": len(table_rows),
            "dropped": {"no_trained_tokens": 4},
            "truncated": 0,
            "length_histogram": length_histogram(r["length"] for r in table_rows),
        },
        "skipped_sample": None,
        "conformance": CONFORMANCE,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory, tok: LoadedTokenizer) -> Path:
    root = tmp_path_factory.mktemp("crafted")
    write_crafted_build(root, tok, tokenizer_path=str(QWEN3))
    return root


def test_every_warning_fires_on_crafted_build(crafted: Path) -> None:
    report = inspect_build(str(crafted))
    codes = [w["code"] for w in report["warnings"]]
    assert set(codes) == ALL_CODES
    by_source = {w.get("source"): w["code"] for w in report["warnings"] if w.get("source")}
    assert by_source == {
        "empty": "trained_ratio_low",
        "low": "trained_ratio_low",
        "high": "trained_ratio_high",
        "outlier": "trained_ratio_outlier",
        "gone": "source_no_examples",
    }
    h = report["health"]
    assert h["untrained_rows"] == 1 and h["untrained_by_source"] == {"empty": 1}
    assert h["end_of_turn"] == [
        {"token": "<|im_end|>", "id": IM_END, "in_targets": 7 * 2 - 1, "trained": 0}
    ]


def test_crafted_build_in_the_terminal(crafted: Path) -> None:
    res = CliRunner().invoke(
        app, ["show", str(crafted), "--row", "3"], env={"COLUMNS": "120", "NO_COLOR": "1"}
    )
    assert res.exit_code == 0, res.output
    for code in ALL_CODES:
        assert f"[{code}]" in res.output
    assert "9 of 10 rows identical" in res.output and "-<|im_start|>assistant" in res.output
    assert "source empty row 0" in res.output and "0 trained" in res.output


def test_warnings_without_the_tokenizer(tmp_path: Path, tok: LoadedTokenizer) -> None:
    """On a machine without the tokenizer: rows print as ids, the eos id still catches the untrained end token."""
    write_crafted_build(tmp_path, tok, tokenizer_path=str(tmp_path / "missing"))
    report = inspect_build(str(tmp_path))
    assert report["decoded"] is False and report["rows"][0]["spans"] is None
    assert "end_of_turn_never_trained" in {w["code"] for w in report["warnings"]}


def test_check_rows_limits_the_scan(crafted: Path) -> None:
    report = inspect_build(str(crafted), check_rows=2)
    assert report["health"]["rows_checked"] == 2 and report["health"]["rows_total"] == 7


def test_health_counts_are_exact() -> None:
    h = MaskHealth({9: "<end>"})
    targets = np.array([1, 9, 2, 9, 3, 3, 9], dtype=np.int32)
    weights = np.array([1, 0, 0, 1, 0, 0, 0], dtype=np.float32)
    h.add(targets, weights, np.array([2, 2, 3]), np.array(["a", "b", "c"], dtype=object))
    assert h.rows_checked == 3 and h.untrained_rows == 1 and dict(h.untrained_by_source) == {"c": 1}
    assert h.eot_in_targets[9] == 3 and h.eot_trained[9] == 1
    # Healthy numbers: no warning at all.
    src = [
        {"name": n, "rows_read": 5, "examples": 5, "tokens": 100, "trained_tokens": t}
        for n, t in (("a", 60), ("b", 70), ("c", 80))
    ]
    assert (
        health_warnings(h.to_json() | {"untrained_rows": 0}, src, {}, "all_assistant_messages")
        == []
    )


def test_pieces_keep_multibyte_text_and_exact_trained_counts(tok: LoadedTokenizer) -> None:
    text = "naïve 東京 café 🤖🙂 done"
    ids = [IM_START, *tok.tokenizer.encode(text, add_special_tokens=False).ids, IM_END]
    trained = [i % 3 == 0 for i in range(len(ids))]  # boundaries that cut through characters
    pieces = decode_pieces(tok, ids, trained)
    assert sum(len(p.ids) for p in pieces) == len(ids)
    assert sum(p.n_trained for p in pieces) == sum(trained)
    assert [p.special for p in pieces][0] and pieces[-1].special
    whole = "".join(p.text for p in pieces)
    assert whole == tok.tokenizer.decode(ids, skip_special_tokens=False)
    spans = spans_of(pieces)
    assert "".join(s.text for s in spans) == whole
    assert sum(s.n_trained for s in spans) == sum(trained)
    assert any(
        0 < p.n_trained < len(p.ids) for p in pieces
    )  # a character cut by the mask stays one piece


OPTIONAL_KEYS = (
    "created_at",
    "task",
    "recipe",
    "tokenizer",
    "renderer",
    "train_on",
    "sources",
    "stats",
)


@pytest.mark.parametrize("key", [*OPTIONAL_KEYS, "all"])
def test_a_manifest_with_only_required_keys_shows_and_lists(
    tmp_path: Path, tok: LoadedTokenizer, key: str
) -> None:
    # The manifest model lets provenance and stats default (older or hand-written builds); show and
    # ls read it through that model, so a missing one prints as unknown instead of a KeyError.
    manifest = write_crafted_build(tmp_path / "b", tok, tokenizer_path=str(QWEN3))
    for k in OPTIONAL_KEYS if key == "all" else (key,):
        del manifest[k]
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    env = {"COLUMNS": "120", "NO_COLOR": "1"}
    for args in (["show", str(tmp_path / "b")], ["ls", str(tmp_path)]):
        for extra in ([], ["--json"]):
            res = CliRunner().invoke(app, [*args, *extra], env=env)
            assert res.exit_code == 0, (args, extra, res.output)
            assert "internal error" not in res.output
    res = CliRunner().invoke(app, ["ls", str(tmp_path), "--json"], env=env)
    (entry,) = json.loads(res.output)
    assert entry["fingerprint"] == "f" * 64 and entry["rows"] == 7
    if key in ("recipe", "all"):
        assert entry["name"] is None
    if key in ("created_at", "all"):
        assert entry["age_s"] is None
    res = CliRunner().invoke(app, ["show", str(tmp_path / "b"), "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    report = inspect_build(str(tmp_path / "b"))
    assert report["splits"]["train"]["rows"] == 7


@pytest.mark.s3
def test_a_build_on_s3_shows_its_size_and_shard_count(crafted: Path) -> None:
    """What a reader of a remote build will download: the header's `stored` line, and --json."""
    import fsspec
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "COLUMNS": "120",
            "NO_COLOR": "1",
        }
        fs = fsspec.filesystem("s3", key="testing", secret="testing", endpoint_url=endpoint)
        fs.mkdir("shown")
        fs.put(str(crafted) + "/", "shown/crafted", recursive=True)
        m = json.loads((crafted / "manifest.json").read_text())
        shards = [s for info in m["splits"].values() for s in info["shards"]]
        total = sum(s["bytes"] for s in shards)
        res = CliRunner().invoke(app, ["show", "s3://shown/crafted"], env=env)
        assert res.exit_code == 0, res.output
        assert f"stored      s3://shown/crafted: {len(shards)} shards, " in res.output
        assert (f"{total:,} bytes" if total < 1000 else f"{total / 1000:.1f} KB") in res.output
        res = CliRunner().invoke(app, ["show", "s3://shown/crafted", "--json"], env=env)
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["stored"] == {"shards": len(shards), "bytes": total}
    finally:
        server.stop()
