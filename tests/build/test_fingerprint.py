"""Every recipe key is fingerprinted by construction: each model field is dumped into the
fingerprint, replaced by what it resolves to, or left out with a reason (build/fingerprint.py)."""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from shardprep.build.fingerprint import (
    EXCLUDED,
    RESOLVED,
    SOURCE_EXCLUDED,
    Resolved,
    fingerprint_parts,
)
from shardprep.recipe import Recipe, SourceSpec, parse_recipe
from shardprep.store.manifest import fingerprint
from shardprep.tasks import TASKS

# A recipe per task: a files source and a Hub source (so the Hub-only keys can change too).
BASES: dict[str, dict[str, Any]] = {
    "sft": {"task": "sft", "decontaminate": {"paths": ["eval.jsonl"]}},
    "dpo": {"task": "dpo", "format": "tinker_comparison"},
    "rl_prompts": {"task": "rl_prompts"},
    "pretrain": {"task": "pretrain", "format": "text", "block_size": 16},
}
HUB_ONLY = {"hf", "config", "revision", "data_files", "split"}

# A changed value for every fingerprinted key ("sources[].k": of a source; a task's own keys at
# the top level, as recipes write them). A new recipe key must be added here (the test below
# says so) unless it is listed in EXCLUDED with its reason.
ALTERNATIVES: dict[str, Any] = {
    "task": None,  # each task's base recipe differs in it: checked by test_task_changes_it
    "train_on": "last_assistant_message",
    "max_length": 64,
    "overlong": "drop",
    "weight_reduction": "mean",
    "renderer.name": "qwen3_instruct",
    "split.test_size": 3,
    "split.test_fraction": 0.25,
    "split.seed": 9,
    "shards.max_rows": 10,
    "shards.max_bytes": "1MB",
    "shards.row_group_rows": 7,
    "on_error": "skip",
    "max_row_bytes": "1MiB",
    "work_unit_rows": 7,
    "special_tokens_in_content": "escape",
    "dedup": "exact",
    "decontaminate.ngram": 8,
    "decontaminate.field": "question",
    "sources[].name": "renamed",
    "sources[].format": "sharegpt",
    "sources[].columns": {"messages": "conversation"},
    "sources[].file_format": "jsonl",
    "sources[].hf": "org/other",
    "sources[].config": "cfg",
    "sources[].split": "validation",
    "sources[].revision": "v2",
    "sources[].data_files": "data/*.parquet",
    "sources[].skip": 2,
    "sources[].fraction": 0.5,
    "sources[].take": 3,
    "sources[].repeat": 2,
    "sources[].seed": 4,
    # task keys
    "tools": "ignore",
    "examples": "per_turn",
    "tie": "as_b",
    "max_prompt_tokens": 100,
    "passthrough": {"id": "string"},
    "block_size": 32,
    "add_bos": False,
    "add_eos": True,
}
# A changed value for every key left out: the fingerprint stays.
EXCLUDED_ALTERNATIVES: dict[str, Any] = {
    "name": "renamed",
    "output": "elsewhere/out",
    "output_storage_options": {"anon": True},
    "workers": 3,
    "batch_size": 7,
    "encoder": "tokenizers",
    "skipped_sample": 3,
    "conformance_rows": 0,
    "template_mismatch": "fail",
    "allow_empty_sources": True,
    "sources[].storage_options": {"anon": True},
}


def _model_keys() -> dict[str, str]:
    """Every key a recipe can set -> the task it belongs to ("" for all tasks)."""
    keys: dict[str, str] = {}
    for name, info in Recipe.model_fields.items():
        if name == "task_options":
            continue
        ann = info.annotation
        if get_origin(ann) in (Union, UnionType):  # an optional section: its own keys
            ann = next(a for a in get_args(ann) if a is not type(None))
        if name == "sources":
            keys.update({f"sources[].{k}": "" for k in SourceSpec.model_fields})
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.update({f"{name}.{k}": "" for k in ann.model_fields})
        else:
            keys[name] = ""
    for task in TASKS.values():
        keys.update({k: task.name for k in task.options_model.model_fields})
    return keys


def _recipe(task: str, key: str | None = None, value: Any = None) -> Recipe:
    base = dict(BASES[task])
    fmt = base.pop("format", "messages")
    data: dict[str, Any] = {
        "name": "t",
        "output": "out",
        "tokenizer": "tok",
        "renderer": "qwen3",
        "sources": [
            {"name": "files", "path": "a.jsonl", "format": fmt},
            {"hf": "org/ds", "format": fmt},
        ],
        **base,
    }
    if key is not None:
        if key.startswith("sources[]."):
            k = key.removeprefix("sources[].")
            data["sources"][1 if k in HUB_ONLY else 0][k] = value
        elif "." in key:
            outer, inner = key.split(".", 1)
            section = data.get(outer)
            data[outer] = value if outer == "renderer" else {**(section or {}), inner: value}
        else:
            data[key] = value
    return parse_recipe(data)


def _fp(recipe: Recipe) -> str:
    resolved = Resolved(
        tokenizer_sha256="t" * 64,
        tokenizer_config_sha256="c" * 64,
        renderer_options={},
        template_sha256="r" * 64,
        # The same identities whatever the recipe says: only the recipe's own keys change here.
        source_files={
            s.resolved_name: [{"uri": "file:///a.jsonl", "size": 1}] for s in recipe.sources
        },
        hub_sources={},
    )
    return fingerprint(fingerprint_parts(recipe, resolved))


def test_every_model_key_is_fingerprinted_resolved_or_excluded() -> None:
    keys = _model_keys()
    left_out = set(EXCLUDED) | set(RESOLVED) | {f"sources[].{k}" for k in SOURCE_EXCLUDED}
    assert left_out <= set(keys), f"listed but not recipe keys: {left_out - set(keys)}"
    fingerprinted = set(keys) - left_out
    missing = fingerprinted - set(ALTERNATIVES)
    assert not missing, (
        f"recipe keys {sorted(missing)} are fingerprinted: give each a changed value in "
        "ALTERNATIVES (or list it in build/fingerprint.py's EXCLUDED with why it cannot change "
        "a shard byte)"
    )
    assert set(ALTERNATIVES) <= fingerprinted, set(ALTERNATIVES) - fingerprinted
    assert set(EXCLUDED_ALTERNATIVES) == left_out - set(RESOLVED)
    # and each fingerprinted key is in the parts the fingerprint hashes
    for key, task in keys.items():
        if key not in fingerprinted:
            continue
        parts = fingerprint_parts(_recipe(task or "sft"), _resolved_for(_recipe(task or "sft")))
        if key.startswith("sources[]."):
            assert key.removeprefix("sources[].") in parts["sources"][0], key
        elif "." in key:
            outer, inner = key.split(".", 1)
            assert inner in parts[outer], key
        else:
            assert key in parts, key


def _resolved_for(recipe: Recipe) -> Resolved:
    return Resolved(
        tokenizer_sha256="t",
        tokenizer_config_sha256="c",
        renderer_options={},
        template_sha256="r",
        source_files={s.resolved_name: [] for s in recipe.sources},
    )


def _task_of(key: str) -> str:
    return _model_keys().get(key) or "sft"


@pytest.mark.parametrize("key", [k for k in ALTERNATIVES if k != "task"])
def test_changing_a_fingerprinted_key_changes_the_fingerprint(key: str) -> None:
    task = _task_of(key)
    value = ALTERNATIVES[key]
    if key == "sources[].format":
        value = {"dpo": "sharegpt_pair", "pretrain": "text"}.get(task, value)
    changed = _recipe(task, key, value)
    assert changed.model_dump() != _recipe(task).model_dump(), f"{key}: {value!r} is the default"
    assert _fp(changed) != _fp(_recipe(task))


def test_task_changes_it() -> None:
    assert len({_fp(_recipe(t)) for t in BASES}) == len(BASES)


@pytest.mark.parametrize("key", list(EXCLUDED_ALTERNATIVES))
def test_changing_a_key_left_out_keeps_the_fingerprint(key: str) -> None:
    changed = _recipe("sft", key, EXCLUDED_ALTERNATIVES[key])
    assert changed.model_dump() != _recipe("sft").model_dump()
    assert _fp(changed) == _fp(_recipe("sft"))


def test_resolved_keys_enter_as_what_they_resolve_to() -> None:
    recipe = _recipe("sft")
    base = _resolved_for(recipe)
    fp = fingerprint(fingerprint_parts(recipe, base))
    for change in (
        {"tokenizer_sha256": "u"},
        {"tokenizer_config_sha256": "d"},
        {"renderer_options": {"x": 1}},
        {"template_sha256": "s"},
        {"source_files": {"files": [{"uri": "b"}], "ds": []}},
        {"hub_sources": {"ds": {"commit": "abc"}}},
        {"eval_files": [[{"uri": "file:///eval.jsonl", "size": 2}]]},
    ):
        other = Resolved(**{**base.__dict__, **change})
        assert fingerprint(fingerprint_parts(recipe, other)) != fp, change
