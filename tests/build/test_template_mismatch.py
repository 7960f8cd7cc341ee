"""A build says when its rows differ from the model's own chat template, and can refuse to finish."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardprep.errors import BuildError

from ..tasks._helpers import LLAMA3, ROOT, run_build

ALPACA = {
    "name": "alpaca",
    "path": str(ROOT / "demo/data/alpaca_en_demo.slice.json"),
    "format": "alpaca",
}


def test_llama3_difference_is_warned_as_known_and_names_hf_template(tmp_path: Path) -> None:
    res = run_build(
        tmp_path,
        task="sft",
        sources=[ALPACA],
        tokenizer=LLAMA3,
        renderer="llama3",
        conformance_rows=4,
    )
    [warning] = [w for w in res.manifest["warnings"] if w["code"] == "template_mismatch"]
    conf = res.manifest["conformance"]
    assert warning["count"] == conf["checked"] - conf["identical"] > 0
    assert warning["known"] and "Cutting Knowledge Date" in warning["message"]
    assert "hf_template" in warning["message"]
    assert warning["first_difference"]["diff"]


def test_template_mismatch_fail_stops_the_build_and_warn_reuses_its_units(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="template_mismatch: fail"):
        run_build(
            tmp_path,
            task="sft",
            sources=[ALPACA],
            tokenizer=LLAMA3,
            renderer="llama3",
            conformance_rows=4,
            template_mismatch="fail",
        )
    assert not (tmp_path / "out" / "manifest.json").exists()
    res = run_build(
        tmp_path,
        task="sft",
        sources=[ALPACA],
        tokenizer=LLAMA3,
        renderer="llama3",
        conformance_rows=4,
    )
    assert res.resumed_units == res.manifest["stats"]["units"] > 0


def test_matching_template_gives_no_warning(tmp_path: Path) -> None:
    res = run_build(
        tmp_path,
        task="sft",
        sources=[ALPACA],
        tokenizer=LLAMA3,
        renderer="hf_template",
        conformance_rows=4,
    )
    assert res.manifest["warnings"] == []


def test_rl_prompt_and_dpo_builds_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "rl").mkdir()
    (tmp_path / "dpo").mkdir()
    rl = run_build(
        tmp_path / "rl",
        task="rl_prompts",
        sources=[ALPACA],
        tokenizer=LLAMA3,
        renderer="llama3",
        conformance_rows=3,
    )
    assert rl.manifest["conformance"]["checked"] > 0
    assert [w["code"] for w in rl.manifest["warnings"]] == ["template_mismatch"]
    pairs = {
        "name": "pairs",
        "path": str(ROOT / "tests/fixtures/data/llamafactory/dpo_en_demo.json.gz"),
        "format": "sharegpt_pair",
    }
    dpo = run_build(
        tmp_path / "dpo",
        task="dpo",
        sources=[pairs],
        tokenizer=LLAMA3,
        renderer="llama3",
        conformance_rows=3,
    )
    assert dpo.manifest["conformance"]["checked"] > 0
