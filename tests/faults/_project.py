"""A small project (toy tokenizer, JSONL chat rows, recipe) that fault tests build and damage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
TOY = ROOT / "tests/fixtures/tokenizers/toy"


def chat_row(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"Question {i}: " + "why? " * (i % 7)},
            {"role": "assistant", "content": f"Answer {i}."},
        ]
    }


def jsonl_bytes(n: int, start: int = 0) -> bytes:
    return "".join(json.dumps(chat_row(i)) + "\n" for i in range(start, start + n)).encode()


def write_recipe(folder: Path, path: str, *, name: str = "faults", **overrides: Any) -> Path:
    recipe: dict[str, Any] = {
        "name": name,
        "output": "out",
        "tokenizer": str(TOY),
        "renderer": "qwen3",
        "sources": [{"name": "chat", "path": path}],
        "workers": 1,
        "conformance_rows": 0,
    }
    recipe.update(overrides)
    p = folder / f"{name}.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


def prep(*args: str) -> tuple[int, str]:
    """`prep ARGS` in this process: (exit code, stdout + stderr)."""
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output  # click >= 8.2: stdout and stderr together


# Child-process code: the process's own peak resident memory in MB. VmHWM, not ru_maxrss: on
# Linux ru_maxrss keeps the forking parent's peak (pytest's, hundreds of MB) across exec.
PEAK_MB = """
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
"""
