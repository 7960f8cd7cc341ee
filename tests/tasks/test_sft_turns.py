"""sft `examples: per_turn` (issue 18): tinker's build_supervised_examples, without the oracle.

The recorded cases (tests/reference/record_turns.py) replay tinker's own examples; the builds
check the rows, the new column, the manifest counts, the views, the reader and the warning that
per_conversation gives for reasoning renderers.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from shardprep.build.run import plan_build
from shardprep.cli.app import app
from shardprep.encode.tokenize import (
    BatchEncoder,
    render_supervised_batch,
    render_supervised_examples,
)
from shardprep.errors import RecipeError, RowError
from shardprep.formats import to_conversation
from shardprep.recipe import load_recipe, parse_recipe
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.renderers.jinja_template import ChatTemplate, template_messages
from shardprep.tokenizer import load_tokenizer
from shardprep.views.preview import preview_recipe
from shardprep.views.show import inspect_build
from shardprep.views.verify import verify_build

from ._helpers import ROOT, TOY, read_rows, run_build, write_jsonl

FIXTURES = ROOT / "tests" / "fixtures"
QWEN3 = str(FIXTURES / "tokenizers" / "qwen3")
TURNS = FIXTURES / "reference_cases" / "turns.jsonl.gz"


def _records() -> list[dict[str, Any]]:
    with gzip.open(TURNS, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


RECORDS = _records()


@functools.cache
def _bound(name: str, tok: str, date: str) -> tuple[Any, BatchEncoder]:
    tokenizer = load_tokenizer(str(FIXTURES / "tokenizers" / tok))
    options = (
        {"current_date": date}
        if name.startswith("gpt_oss") and name != "gpt_oss_no_sysprompt"
        else {}
    )
    return get_renderer(name, tokenizer, options), BatchEncoder(tokenizer)


def _expand(rle: list[list[float]]) -> np.ndarray:
    values, counts = zip(*rle, strict=True) if rle else ((), ())
    return np.repeat(np.asarray(values, dtype=np.float32), np.asarray(counts, dtype=np.int64))


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r['renderer']}-{r['case']}")
def test_recorded_build_supervised_examples(record: dict[str, Any]) -> None:
    renderer, encoder = _bound(record["renderer"], record["tokenizer"], record["date"])
    assert renderer.has_extension_property == record["has_extension_property"]
    conv = to_conversation({"messages": record["messages"]}, format="messages")
    for mode, want in record["modes"].items():
        [got] = render_supervised_examples(renderer, encoder, [conv], TrainOnWhat(mode))
        if "error" in want:
            assert isinstance(got, RowError), f"{mode}: tinker refuses ({want['error']})"
            continue
        assert not isinstance(got, RowError), f"{mode}: {got}"
        assert len(got) == len(want["examples"]), mode
        for turn, ex in zip(got, want["examples"], strict=True):
            assert turn.example.tokens.tolist() == ex["tokens"], mode
            np.testing.assert_array_equal(
                turn.example.weights, _expand(ex["weights"]), err_msg=mode
            )
            assert conv[turn.message_index]["role"] in ("assistant", "tool", "user"), mode


# has_extension_property, from the reference doc's renderer table (tinker-cookbook 0.6.1, observed).
EXTENSION_PROPERTY = {
    "role_colon": True,
    "llama3": True,
    "qwen3": False,
    "qwen3_disable_thinking": False,
    "qwen3_instruct": True,
    "qwen3_vl": False,
    "qwen3_vl_instruct": False,
    **dict.fromkeys(["qwen3_5", "qwen3_5_disable_thinking", "qwen3_5_preserve_thinking"], False),
    **dict.fromkeys(
        [
            "qwen3_8_xhigh_reasoning",
            "qwen3_8_medium_reasoning",
            "qwen3_8_low_reasoning",
            "qwen3_8_disable_thinking",
        ],
        False,
    ),
    "deepseekv3": True,
    "deepseekv3_disable_thinking": True,
    "deepseekv3_thinking": False,
    "deepseekv4_1": False,
    "deepseekv4_1_low_reasoning": False,
    "deepseekv4_1_max_reasoning": False,
    "deepseekv4_1_disable_thinking": True,
    "deepseekv4_1_preserve_thinking": True,
    **dict.fromkeys(
        ["glm5_3_max_reasoning", "glm5_3_low_reasoning", "glm5_3_high_reasoning"], True
    ),
    **dict.fromkeys(
        [
            "kimi_k2",
            "kimi_k25",
            "kimi_k25_disable_thinking",
            "kimi_k26",
            "kimi_k26_disable_thinking",
            "kimi_k26_preserve_thinking",
        ],
        False,
    ),
    **dict.fromkeys(
        [
            "nemotron3",
            "nemotron3_low_thinking",
            "nemotron3_disable_thinking",
            "nemotron3_ultra",
            "nemotron3_ultra_disable_thinking",
            "nemotron3_ultra_medium_thinking",
        ],
        False,
    ),
    "nemotron3_preserve_thinking": True,
    "nemotron3_ultra_preserve_thinking": True,
    **dict.fromkeys(
        [
            "gpt_oss_no_sysprompt",
            "gpt_oss_low_reasoning",
            "gpt_oss_medium_reasoning",
            "gpt_oss_high_reasoning",
        ],
        False,
    ),
    # Not tinker renderers: no reasoning is dropped from history (hf_template: per row, see there).
    "mistral": True,
    "mistral_tekken": True,
    "hf_template": True,
}


def test_every_renderer_has_tinkers_extension_property() -> None:
    from shardprep.renderers import renderer_names

    tok = load_tokenizer(QWEN3)  # construction only: nothing is rendered
    assert sorted(EXTENSION_PROPERTY) == renderer_names()
    got = {name: get_renderer(name, tok).has_extension_property for name in renderer_names()}
    assert got == EXTENSION_PROPERTY


def _think(thinking: str, text: str) -> list[dict[str, str]]:
    return [{"type": "thinking", "thinking": thinking}, {"type": "text", "text": text}]


def _multi_turn(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"What is {i}+{i}?"},
            {"role": "assistant", "content": _think(f"Add {i} twice.", str(2 * i))},
            {"role": "user", "content": "And times two?"},
            {"role": "assistant", "content": _think("Double it.", str(4 * i))},
        ]
    }


def test_per_turn_build_rows_counts_and_views(tmp_path: Path) -> None:
    data = [_multi_turn(i) for i in range(12)] + [{"messages": [{"role": "user", "content": "x"}]}]
    write_jsonl(tmp_path / "d.jsonl", data)
    res = run_build(
        tmp_path,
        task="sft",
        examples="per_turn",
        sources=[{"name": "d", "path": "d.jsonl"}],
        conformance_rows=0,
    )
    m = res.manifest
    assert m["schema"] == "sft_turns/1"
    rows = read_rows(res)
    assert len(rows) == 24
    assert sorted((r["source_row"], r["message_index"]) for r in rows) == [
        (i, k) for i in range(12) for k in (2, 4)
    ]
    # Each row is tinker's example for messages[:i+1], trained on its last message only.
    renderer = get_renderer("qwen3", load_tokenizer(TOY))
    encoder = BatchEncoder(renderer.tokenizer)
    for r in rows:
        conv = to_conversation(data[r["source_row"]], format="messages")[: r["message_index"] + 1]
        [want] = render_supervised_batch(
            renderer, encoder, [conv], TrainOnWhat.LAST_ASSISTANT_MESSAGE
        )
        assert not isinstance(want, RowError)
        assert [*r["input_ids"], r["target_ids"][-1]] == want.tokens.tolist()
        assert r["weights"] == want.weights[1:].tolist()
    counters = m["stats"]["task_counters"]
    assert counters["conversations"] == 12 and counters["turn_examples"] == 24
    assert m["stats"]["dropped"] == {"no_trained_tokens": 1}  # the row with no assistant message
    summary = m["stats"]["task_summary"]
    assert summary["examples_per_conversation"] == 2.0
    assert 1.0 < summary["token_multiplier"] < 2.0
    assert verify_build(res.output).ok
    report = inspect_build(res.output, rows=[0, 1])
    assert [row["message_index"] for row in report["rows"]] == [2, 4]
    assert report["task_summary"] == summary


def test_per_turn_reader_hands_out_the_message_index(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from shardprep.torch import ShardDataset

    write_jsonl(tmp_path / "d.jsonl", [_multi_turn(i) for i in range(3)])
    res = run_build(
        tmp_path, task="sft", examples="per_turn", sources=[{"name": "d", "path": "d.jsonl"}]
    )
    ds = ShardDataset(res.output, cache_dir=str(tmp_path / "cache"))
    assert ds.schema == "sft_turns/1" and len(ds) == 6
    assert sorted(int(ds[i]["message_index"]) for i in range(6)) == [2, 2, 2, 4, 4, 4]


def test_default_keeps_fingerprint_and_schema(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [_multi_turn(1)])
    base = {
        "name": "t",
        "output": "out",
        "tokenizer": TOY,
        "renderer": "qwen3",
        "sources": [{"name": "d", "path": str(tmp_path / "d.jsonl")}],
    }
    plain = plan_build(parse_recipe(base), tmp_path)
    default = plan_build(parse_recipe({**base, "examples": "per_conversation"}), tmp_path)
    turns = plan_build(parse_recipe({**base, "examples": "per_turn"}), tmp_path)
    assert plain.fingerprint == default.fingerprint != turns.fingerprint


def test_unsplittable_mode_is_a_recipe_error() -> None:
    base = {
        "name": "t",
        "output": "out",
        "tokenizer": TOY,
        "sources": [{"path": "x.jsonl"}],
        "examples": "per_turn",
    }
    with pytest.raises(RecipeError, match="train_on 'all_messages' cannot be split"):
        parse_recipe({**base, "renderer": "qwen3", "train_on": "all_messages"})
    # Kimi splits any mode at user messages (tinker's override), so the recipe stands.
    parse_recipe({**base, "renderer": "kimi_k2", "train_on": "all_messages"})


def test_per_turn_kimi_splits_at_user_messages() -> None:
    renderer, encoder = _bound("kimi_k2", "toy", "2025-06-28")
    conv = to_conversation(_multi_turn(3), format="messages")
    [turns] = render_supervised_examples(renderer, encoder, [conv], TrainOnWhat.ALL_MESSAGES)
    assert not isinstance(turns, RowError)
    assert [t.message_index for t in turns] == [2, 4]  # the prefix before the second user, then all


def test_per_conversation_warns_and_names_per_turn(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "d.jsonl",
        [_multi_turn(i) for i in range(4)] + [{"messages": _multi_turn(0)["messages"][:3]}],
    )
    recipe = {
        "name": "t",
        "output": "out",
        "tokenizer": TOY,
        "renderer": "qwen3",
        "conformance_rows": 0,
        "sources": [{"name": "d", "path": "d.jsonl"}],
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    runner = CliRunner()
    out = runner.invoke(app, ["build", str(tmp_path / "r.yaml"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["task_counters"]["history_trained_rows"] == 4  # the single-turn row is fine
    [w] = data["warnings"]
    assert (
        w["code"] == "history_turns_trained"
        and w["count"] == 4
        and "examples: per_turn" in w["message"]
    )
    plain = runner.invoke(app, ["build", str(tmp_path / "r.yaml"), "--force", "-q"])
    assert plain.exit_code == 0
    assert "warning: 4 rows train earlier assistant messages" in plain.output
    assert "set `examples: per_turn`" in plain.output
    # qwen3 keeps every turn's text in one sequence of a last_assistant_message build: no warning.
    r, base = load_recipe(tmp_path / "r.yaml")
    preview = preview_recipe(
        r.model_copy(update={"train_on": TrainOnWhat.LAST_ASSISTANT_MESSAGE}), base, n=5
    )
    assert not [w for w in preview["warnings"] if w["code"] == "history_turns_trained"]
    preview = preview_recipe(r, base, n=5)
    assert [w["count"] for w in preview["warnings"] if w["code"] == "history_turns_trained"] == [4]


def test_history_without_reasoning_is_not_warned(tmp_path: Path) -> None:
    # The same turns without their thinking: history loses no reasoning (qwen3 leaves out only
    # the empty think block's framing), so nothing to act on; one row keeps its first turn's
    # thinking and is the one counted.
    plain = []
    for i in range(4):
        msgs = _multi_turn(i)["messages"]
        plain.append(
            {
                "messages": [
                    {**m, "content": m["content"][1]["text"]} if m["role"] == "assistant" else m
                    for m in msgs
                ]
            }
        )
    write_jsonl(tmp_path / "d.jsonl", [*plain, _multi_turn(9)])
    recipe = {
        "name": "t",
        "output": "out",
        "tokenizer": TOY,
        "renderer": "qwen3",
        "conformance_rows": 0,
        "sources": [{"name": "d", "path": "d.jsonl"}],
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    out = CliRunner().invoke(app, ["build", str(tmp_path / "r.yaml"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["task_counters"]["history_trained_rows"] == 1
    assert [w["count"] for w in data["warnings"] if w["code"] == "history_turns_trained"] == [1]
    write_jsonl(tmp_path / "d.jsonl", plain)
    out = CliRunner().invoke(app, ["build", str(tmp_path / "r.yaml"), "--json"])
    data = json.loads(out.output)
    assert not data["task_counters"].get("history_trained_rows")
    assert not [w for w in data["warnings"] if w["code"] == "history_turns_trained"]


def test_per_turn_cli_summary_and_preview(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [_multi_turn(i) for i in range(3)])
    recipe = {
        "name": "t",
        "output": "out",
        "tokenizer": TOY,
        "renderer": "qwen3",
        "examples": "per_turn",
        "sources": [{"name": "d", "path": "d.jsonl"}],
    }
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    runner = CliRunner()
    plain = runner.invoke(app, ["build", str(tmp_path / "r.yaml"), "-q"])
    assert plain.exit_code == 0, plain.output
    assert "examples per conversation 2.0, token multiplier" in plain.output
    assert "warning" not in plain.output
    shown = runner.invoke(app, ["show", str(tmp_path / "out"), "--row", "1"])
    assert "source d row 0 message 4" in shown.output
    assert "examples per conversation 2.0" in shown.output
    pre = runner.invoke(app, ["preview", str(tmp_path / "r.yaml"), "-n", "1", "--json"])
    assert pre.exit_code == 0, pre.output
    rows = json.loads(pre.output)["rows"]
    assert [r["message_index"] for r in rows] == [2, 4]


def test_hf_template_per_turn_rescues_rows_the_template_rewrites(tmp_path: Path) -> None:
    """Qwen3's own template drops earlier reasoning: per_conversation refuses such a row, per_turn
    trains each turn as the template writes it after its own generation prompt."""
    tok = load_tokenizer(QWEN3)
    renderer = get_renderer("hf_template", tok)
    encoder = BatchEncoder(tok)
    conv = to_conversation(_multi_turn(2), format="messages")
    [whole] = render_supervised_batch(renderer, encoder, [conv], TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    assert isinstance(whole, RowError) and "not prefix-consistent" in str(whole)
    [turns] = render_supervised_examples(
        renderer, encoder, [conv], TrainOnWhat.ALL_ASSISTANT_MESSAGES
    )
    assert not isinstance(turns, RowError) and [t.message_index for t in turns] == [2, 4]
    template = ChatTemplate.from_config(tok.config, "default")
    for t in turns:
        head = conv[: t.message_index]
        full = template.render(template_messages(conv[: t.message_index + 1]))
        prompt = template.render(template_messages(head), add_generation_prompt=True)
        ids = t.example.tokens.tolist()
        assert tok.tokenizer.decode(ids, skip_special_tokens=False) == full
        n_prompt = len(
            encoder.encode_chunks([renderer.plan_cut(conv, _cut(t.message_index))].pop().chunks)[0]
        )
        assert tok.tokenizer.decode(ids[:n_prompt], skip_special_tokens=False) == prompt
        assert not t.example.weights[:n_prompt].any() and t.example.weights[n_prompt:].all()
    # The build: every turn of every row, none refused.
    write_jsonl(tmp_path / "d.jsonl", [_multi_turn(i) for i in range(3)])
    res = run_build(
        tmp_path,
        task="sft",
        tokenizer=QWEN3,
        renderer="hf_template",
        examples="per_turn",
        sources=[{"name": "d", "path": "d.jsonl"}],
    )
    assert res.manifest["splits"]["train"]["rows"] == 6 and not res.manifest["stats"]["dropped"]


def _cut(message_index: int) -> Any:
    from shardprep.renderers.base import ExampleCut

    return ExampleCut(message_index + 1, TrainOnWhat.LAST_ASSISTANT_MESSAGE)
