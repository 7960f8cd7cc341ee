"""Tasks: what a work unit makes of its rows (SFT examples, preference pairs, prompts, blocks).

`TASKS` maps a recipe's `task:` to its `Task` (see `base.py`). Adding a task is one module here,
one entry below, a config in `configs/` and its tests.
"""

from __future__ import annotations

from shardprep.errors import ManifestError
from shardprep.store.schemas import ShardSchema
from shardprep.tasks.base import Task, TaskOptions, UnitIO
from shardprep.tasks.dpo import DpoTask
from shardprep.tasks.pretrain import PretrainTask
from shardprep.tasks.rl_prompts import RlPromptsTask
from shardprep.tasks.sft import SftTask

TASKS: dict[str, Task] = {
    t.name: t for t in (SftTask(), DpoTask(), RlPromptsTask(), PretrainTask())
}


def get_task(name: str) -> Task:
    return TASKS[name]


def task_for_schema(schema_id: str, *, where: str = "") -> Task:
    """The task whose shards carry this schema id (as a manifest names it)."""
    for task in TASKS.values():
        if task.shard_schema(schema_id) is not None:
            return task
    known = ", ".join(s.id for t in TASKS.values() for s in (t.schema, *t.variant_schemas))
    raise ManifestError(
        f"{where}shard schema {schema_id!r} is not one this version knows ({known})"
    )


def shard_schema(schema_id: str, *, where: str = "") -> ShardSchema:
    """The schema a manifest names (its columns, sequences and length columns)."""
    schema = task_for_schema(schema_id, where=where).shard_schema(schema_id)
    assert schema is not None
    return schema


def option_owners() -> dict[str, str]:
    """Every task option key -> the task it belongs to (a key set for another task is a mistake)."""
    return {key: t.name for t in TASKS.values() for key in t.options_model.model_fields}


__all__ = [
    "TASKS",
    "Task",
    "TaskOptions",
    "UnitIO",
    "get_task",
    "option_owners",
    "shard_schema",
    "task_for_schema",
]
