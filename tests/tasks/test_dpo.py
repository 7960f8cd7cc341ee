"""task: dpo — pairs equal tinker's build_supervised_example(prompt + side, LAST_ASSISTANT_MESSAGE)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shardprep.encode.examples import make_example
from shardprep.encode.tokenize import BatchEncoder, RenderedExample, render_supervised_batch
from shardprep.errors import RecipeError, RowError
from shardprep.formats import LabeledComparison, to_comparison
from shardprep.recipe import parse_recipe
from shardprep.renderers.base import TrainOnWhat
from shardprep.renderers.registry import get_renderer
from shardprep.tasks.dpo import pair_conversations

from ._helpers import LF, TOY, read_rows, run_build, write_jsonl

SOURCES = [
    {"name": "lf", "path": str(LF / "dpo_en_demo.json.gz"), "format": "sharegpt_pair"},
    {"name": "v1", "path": str(LF / "v1_dpo_demo.jsonl.gz"), "format": "messages_pair"},
]


def _raw_rows() -> dict[str, list[dict[str, Any]]]:
    lf = json.loads(gzip.decompress((LF / "dpo_en_demo.json.gz").read_bytes()))
    v1 = [
        json.loads(line)
        for line in gzip.decompress((LF / "v1_dpo_demo.jsonl.gz").read_bytes()).splitlines()
    ]
    return {"lf": lf, "v1": v1}


def _expected(tokenizer_for: Any, fmt: str, row: dict[str, Any]) -> list[Any]:
    renderer = get_renderer("qwen3", tokenizer_for("toy"))
    convs = pair_conversations(to_comparison(row, format=fmt))
    out = []
    for res in render_supervised_batch(
        renderer,
        BatchEncoder(tokenizer_for("toy")),
        list(convs),
        TrainOnWhat.LAST_ASSISTANT_MESSAGE,
    ):
        assert isinstance(res, RenderedExample)
        out.append(make_example(res.tokens, res.weights, max_length=None, reduction="none"))
    return out


def test_golden_pairs_through_shard_boundaries(tmp_path: Path, tokenizer_for: Any) -> None:
    result = run_build(
        tmp_path, task="dpo", sources=SOURCES, shards={"max_rows": 7}, work_unit_rows=128
    )
    m = result.manifest
    assert m["schema"] == "dpo/1" and m["train_on"] == "last_assistant_message"
    assert len(m["splits"]["train"]["shards"]) > 10  # many boundaries
    rows = read_rows(result)
    raw = _raw_rows()
    assert len(rows) == len(raw["lf"]) + len(raw["v1"])
    assert [(r["source"], r["source_row"]) for r in rows] == sorted(
        (r["source"], r["source_row"]) for r in rows
    )
    fmt = {"lf": "sharegpt_pair", "v1": "messages_pair"}
    for r in rows:
        chosen, rejected = _expected(
            tokenizer_for, fmt[r["source"]], raw[r["source"]][r["source_row"]]
        )
        for side, ex in (("chosen", chosen), ("rejected", rejected)):
            assert r[f"{side}_input_ids"] == ex.input_ids.tolist()
            assert r[f"{side}_target_ids"] == ex.target_ids.tolist()
            assert np.array_equal(np.asarray(r[f"{side}_weights"], dtype=np.float32), ex.weights)
            assert r[f"{side}_length"] == len(ex.input_ids)
            assert set(np.unique(ex.weights)) <= {0.0, 1.0}  # no reduction
        assert r["chosen_input_ids"] != r["rejected_input_ids"]


PROMPT = [{"role": "user", "content": "Hi?"}]


@pytest.mark.parametrize(
    ("fmt", "row"),
    [
        (
            "tinker_comparison",
            {
                "comparison": {
                    "prompt_conversation": PROMPT,
                    "completion_A": [{"role": "assistant", "content": "Good"}],
                    "completion_B": [{"role": "assistant", "content": "Bad"}],
                },
                "label": "A",
            },
        ),
        (
            "sharegpt_pair",
            {
                "conversations": [{"from": "human", "value": "Hi?"}],
                "chosen": {"from": "gpt", "value": "Good"},
                "rejected": [{"from": "gpt", "value": "Bad"}],
            },
        ),
        (
            "messages_pair",
            {
                "chosen": [*PROMPT, {"role": "assistant", "content": "Good"}],
                "rejected": [*PROMPT, {"role": "assistant", "content": "Bad"}],
            },
        ),
        (
            "messages_pair",
            {
                "prompt": PROMPT,
                "chosen": [{"role": "assistant", "content": "Good"}],
                "rejected": [{"role": "assistant", "content": "Bad"}],
            },
        ),
        ("text_pair", {"prompt": "Hi?", "chosen": "Good", "rejected": "Bad"}),
        (
            "hh_rlhf",
            {
                "chosen": "\n\nHuman: Hi?\n\nAssistant: Good",
                "rejected": "\n\nHuman: Hi?\n\nAssistant: Bad",
            },
        ),
    ],
)
def test_every_layout_gives_the_same_comparison(fmt: str, row: dict[str, Any]) -> None:
    lc = to_comparison(row, format=fmt)
    assert lc.label == "A"
    assert lc.comparison.prompt_conversation == PROMPT
    assert lc.chosen_rejected() == (
        [{"role": "assistant", "content": "Good"}],
        [{"role": "assistant", "content": "Bad"}],
    )


def test_swap_and_tie_rules() -> None:
    row = {
        "comparison": {
            "prompt_conversation": PROMPT,
            "completion_A": [{"role": "assistant", "content": "a"}],
            "completion_B": [{"role": "assistant", "content": "b"}],
        },
        "label": "B",
    }
    lc = to_comparison(row, format="tinker_comparison")
    assert lc.chosen_rejected()[0][0]["content"] == "b"
    swapped = lc.swap()
    assert swapped.label == "A" and swapped.chosen_rejected()[0][0]["content"] == "b"
    tie = LabeledComparison(lc.comparison, "Tie")
    assert tie.swap().label == "Tie"
    assert tie.chosen_rejected()[0][0]["content"] == "b"  # tinker: a Tie counts as B


def _tinker_rows(labels: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "comparison": {
                "prompt_conversation": [{"role": "user", "content": f"q{i}"}],
                "completion_A": [{"role": "assistant", "content": f"A{i}"}],
                "completion_B": [{"role": "assistant", "content": f"B{i}"}],
            },
            "label": lab,
        }
        for i, lab in enumerate(labels)
    ]


def test_tie_drop_is_counted_and_as_b_keeps_b(tmp_path: Path, tokenizer_for: Any) -> None:
    write_jsonl(tmp_path / "cmp.jsonl", _tinker_rows(["A", "Tie", "B", "Tie"]))
    src = [{"name": "cmp", "path": "cmp.jsonl", "format": "tinker_comparison"}]
    dropped = run_build(tmp_path, task="dpo", sources=src)
    assert dropped.manifest["splits"]["train"]["rows"] == 2 and dropped.manifest["stats"][
        "dropped"
    ] == {"tie": 2}
    kept = run_build(tmp_path, task="dpo", sources=src, tie="as_b")
    assert kept.manifest["fingerprint"] != dropped.manifest["fingerprint"]
    rows = read_rows(kept)
    assert len(rows) == 4
    decode = tokenizer_for("toy").tokenizer.decode
    assert "B1" in decode(rows[1]["chosen_target_ids"]) and "A1" in decode(
        rows[1]["rejected_target_ids"]
    )
    assert "A0" in decode(rows[0]["chosen_target_ids"]) and "B2" in decode(
        rows[2]["chosen_target_ids"]
    )


@pytest.mark.parametrize(
    ("fmt", "row"),
    [
        (
            "hh_rlhf",
            {"chosen": "Human: Hi?\n\nAssistant: a", "rejected": "Human: Hello?\n\nAssistant: b"},
        ),
        (
            "messages_pair",
            {
                "chosen": [*PROMPT, {"role": "assistant", "content": "a"}],
                "rejected": [
                    {"role": "user", "content": "Other"},
                    {"role": "assistant", "content": "b"},
                ],
            },
        ),
        ("text_pair", {"prompt": "Hi?", "chosen": "  ", "rejected": "b"}),
        (
            "sharegpt_pair",
            {
                "conversations": [{"from": "human", "value": "Hi?"}],
                "chosen": [],
                "rejected": {"from": "gpt", "value": "b"},
            },
        ),
        ("tinker_comparison", {**_tinker_rows(["A"])[0], "label": "C"}),
    ],
)
def test_bad_pairs_are_row_errors(fmt: str, row: dict[str, Any]) -> None:
    with pytest.raises(RowError) as info:
        to_comparison(row, format=fmt)
    assert info.value.reason == "bad_pair"


def test_bad_pairs_fail_or_are_counted(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Hi?", "chosen": "a", "rejected": "b"},
        {"prompt": "Hi?", "chosen": "", "rejected": "b"},
    ]
    write_jsonl(tmp_path / "p.jsonl", rows)
    src = [{"name": "p", "path": "p.jsonl", "format": "text_pair"}]
    with pytest.raises(RowError, match="bad_pair"):
        run_build(tmp_path, task="dpo", sources=src)
    res = run_build(tmp_path, task="dpo", sources=src, on_error="skip")
    assert res.manifest["splits"]["train"]["rows"] == 1 and res.manifest["stats"]["dropped"] == {
        "bad_pair": 1
    }


def test_errors_inside_a_side_name_the_side_field() -> None:
    row = {
        "conversations": [{"from": "human", "value": "Hi?"}],
        "chosen": {"from": "gpt", "value": 3},
        "rejected": {"from": "gpt", "value": "b"},
    }
    with pytest.raises(RowError) as info:
        to_comparison(row, format="sharegpt_pair")
    assert info.value.field == "chosen[0].value"


def test_recipe_rules_for_dpo() -> None:
    base = {"name": "t", "output": "o", "tokenizer": TOY, "renderer": "qwen3", "task": "dpo"}
    with pytest.raises(RecipeError) as info:
        parse_recipe(
            {
                **base,
                "train_on": "all_assistant_messages",
                "weight_reduction": "mean",
                "block_size": 8,
                "sources": [{"path": "x.jsonl", "format": "messages"}],
            }
        )
    text = "\n".join(info.value.problems)
    for key in (
        "train_on:",
        "weight_reduction:",
        "block_size: only for task pretrain",
        "sources[0].format:",
    ):
        assert key in text, text


def test_reader_yields_pairs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from shardprep.torch import ShardDataset

    result = run_build(tmp_path, task="dpo", sources=SOURCES[1:], shards={"max_rows": 3})
    rows = read_rows(result)
    ds = ShardDataset(result.output, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == len(rows) == 10
    for i, r in enumerate(rows):
        for col in ("chosen_input_ids", "rejected_target_ids", "rejected_weights"):
            assert np.asarray(ds[i][col]).tolist() == r[col]
    assert ds.lengths.tolist() == [r["chosen_length"] + r["rejected_length"] for r in rows]


@pytest.mark.parametrize("overlong", ["truncate", "drop"])
def test_max_length_cuts_or_drops_whole_pairs(
    tmp_path: Path, tokenizer_for: Any, overlong: str
) -> None:
    # Sides of different lengths around max_length: a pair is written only when both sides are
    # examples, each side cut exactly as make_example cuts it alone.
    rows = [
        {"prompt": "Hi?", "chosen": "a " * n, "rejected": "b " * m}
        for n, m in [(1, 1), (40, 1), (1, 40), (40, 40), (5, 9)]
    ]
    write_jsonl(tmp_path / "p.jsonl", rows)
    src = [{"name": "p", "path": "p.jsonl", "format": "text_pair"}]
    res = run_build(tmp_path, task="dpo", sources=src, max_length=30, overlong=overlong)
    got = read_rows(res)
    renderer = get_renderer("qwen3", tokenizer_for("toy"))
    want = []
    for row in rows:
        convs = pair_conversations(to_comparison(row, format="text_pair"))
        sides = [
            make_example(r.tokens, r.weights, max_length=30, overlong=overlong, reduction="none")
            for r in render_supervised_batch(
                renderer,
                BatchEncoder(tokenizer_for("toy")),
                list(convs),
                TrainOnWhat.LAST_ASSISTANT_MESSAGE,
            )
            if isinstance(r, RenderedExample)
        ]
        if all(hasattr(s, "input_ids") for s in sides):
            want.append(sides)
    assert len(got) == len(want) == (5 if overlong == "truncate" else 2)
    for row, (chosen, rejected) in zip(got, want, strict=True):
        assert row["chosen_input_ids"] == chosen.input_ids.tolist()
        assert row["rejected_target_ids"] == rejected.target_ids.tolist()
        assert row["rejected_weights"] == rejected.weights.tolist()
        assert row["chosen_length"] == len(chosen.input_ids)
    dropped = res.manifest["stats"]["dropped"]
    assert dropped == ({} if overlong == "truncate" else {"overlong": 3})
