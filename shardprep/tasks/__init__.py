"""Tasks: what a work unit makes of its rows (SFT examples, preference pairs, ...).

A task module provides `to_table` (its records -> an Arrow table of its explicit schema), its
`SCHEMA` name for the manifest, and `Runner(io)` with `process(rows)` / `finish()`. Everything else
(reading rows, skipping bad ones, shard cutting, markers, stats) is shared in `units.py`.
"""

from __future__ import annotations

from types import ModuleType

from shardprep.tasks import dpo, pretrain, rl_prompts, sft

TASKS: dict[str, ModuleType] = {"sft": sft, "dpo": dpo, "rl_prompts": rl_prompts, "pretrain": pretrain}


def task_module(name: str) -> ModuleType:
    return TASKS[name]
