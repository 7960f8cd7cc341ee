"""The trainer examples run on CPU from a build (the toy-tokenizer demo builds: a tiny model with the
build's real vocabulary): HF Trainer on packed batches, TRL SFT and DPO, and a 2-process DDP loop."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from ._examples import load_example

ROOT = Path(__file__).parents[2]


def test_hf_trainer_on_packed_batches(toy_builds: dict[str, Path]) -> None:
    result = load_example("train_hf_packed").main(
        [str(toy_builds["sft"]), "--steps", "6", "--seq-len", "512", "--batch", "2"]
    )
    assert result["steps"] == 6 and result["last"] < result["first"]
    # The loader's global position: 6 steps of 2 packs, in the first epoch.
    assert result["state"]["position"] == 12 and result["state"]["epoch"] == 0


def test_trl_sft_from_a_build(toy_builds: dict[str, Path]) -> None:
    pytest.importorskip("trl")
    result = load_example("train_trl_sft").main(
        [str(toy_builds["sft"]), "--steps", "6", "--pack", "512", "--batch", "2"]
    )
    assert result["steps"] == 6 and result["last"] < result["first"]


def test_trl_dpo_from_a_build(toy_builds: dict[str, Path]) -> None:
    pytest.importorskip("trl")
    result = load_example("train_trl_dpo").main(
        [str(toy_builds["dpo"]), "--steps", "3", "--max-len", "900"]
    )
    assert result["steps"] == 3
    # The reference is the policy's copy: the first step's loss is exactly log 2 ...
    assert result["losses"][0] == pytest.approx(math.log(2), abs=1e-4)
    # ... and training moved the policy away from it.
    assert result["losses"][-1] != pytest.approx(math.log(2), abs=1e-4)


def test_ddp_loop_two_processes(toy_builds: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RANK", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train_ddp.py"),
            str(toy_builds["sft"]),
            "--steps",
            "3",
            "--world",
            "2",
            "--seq-len",
            "512",
            "--result",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["losses"]) == 3 and all(math.isfinite(x) for x in result["losses"])
    first, second = (set(r) for r in result["rows"])
    assert first and second and not first & second  # each rank its own packs
    # The loader state is the global position, the same on both ranks: 3 steps x 2 ranks x 1 pack.
    assert result["states"][0] == result["states"][1]
    assert result["states"][0]["position"] == 6
    assert "2 ranks, 3 steps" in proc.stdout
