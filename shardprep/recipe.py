"""YAML recipe -> validated `Recipe`. Unknown keys are rejected and every problem is reported at once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shardprep.errors import RecipeError
from shardprep.recipe_yaml import load_yaml
from shardprep.renderers.base import TrainOnWhat

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_size(value: int | str) -> int:
    """'256MB' -> 256_000_000, '256MiB' -> 268_435_456, 1000 -> 1000."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 256MB, 1GiB or a byte count)")
    number, unit = float(m.group(1)), (m.group(2) or "").upper()
    binary = "I" in unit
    base = unit[:1] if unit[:1] in "KMGT" else ""
    factor = 1024 ** "KMGT".index(base) * 1024 if binary and base else _UNITS[base]
    return int(number * factor)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    name: str | None = None
    # Exactly one of `path` (local path, glob or fsspec URL) and `hf` (Hub id or Hub-layout folder).
    path: str = ""
    # Conversation formats (sft, rl_prompts), pair formats (dpo) and `text` (pretrain); see TASK_FORMATS.
    format: Literal[
        "messages", "sharegpt", "alpaca",
        "tinker_comparison", "sharegpt_pair", "messages_pair", "text_pair", "hh_rlhf",
        "text",
        "prompt_completion",
    ] = "messages"
    columns: dict[str, str] = Field(default_factory=dict)
    file_format: Literal["auto", "jsonl", "json", "parquet", "csv"] = "auto"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    # Hugging Face Hub (read with `datasets` streaming); revision is resolved to a commit at planning.
    hf: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    # Mixture controls, applied in this order: skip the first rows, keep a seeded fraction of the
    # rest, take the first N of those, then repeat the selection (see build/mixture.py).
    skip: int = Field(0, ge=0)
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    take: int | None = Field(None, ge=0)
    repeat: int = Field(1, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _one_input(self) -> SourceSpec:
        if bool(self.path) == bool(self.hf):
            raise ValueError("give exactly one of `path` (files or URL) and `hf` (Hub dataset)")
        if not self.hf and (self.config or self.revision or self.data_files is not None):
            raise ValueError("`config`, `revision` and `data_files` apply to `hf:` sources only")
        return self

    @property
    def resolved_name(self) -> str:
        if self.name:
            return self.name
        if self.hf:
            base = Path(self.hf.rstrip("/")).name or "hub"
            return f"{base}-{self.config}" if self.config else base
        stem = Path(self.path.rstrip("/")).name
        for suffix in (".gz", ".zst", ".jsonl", ".json", ".ndjson", ".parquet", ".csv"):
            stem = stem.removesuffix(suffix)
        return stem.replace("*", "").strip("-_.") or "source"


class SplitSpec(_Strict):
    test_size: int = Field(0, ge=0)
    # Alternative to test_size: each row is held out when a seeded hash of (source, row) falls
    # below the fraction; independent of workers, resumes and the other sources.
    test_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _one_rule(self) -> SplitSpec:
        if self.test_size and self.test_fraction is not None:
            raise ValueError("give test_size or test_fraction, not both")
        return self


class ShardSpec(_Strict):
    max_rows: int = Field(50_000, ge=1)
    max_bytes: int = 256 * 1024 * 1024
    row_group_rows: int = Field(1024, ge=1)

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        size = parse_size(v)
        if size < 1024:
            raise ValueError("max_bytes must be at least 1KB")
        return size


CONVERSATION_FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion")
PAIR_FORMATS = ("tinker_comparison", "sharegpt_pair", "messages_pair", "text_pair", "hh_rlhf")
# Which source formats each task reads.
TASK_FORMATS: dict[str, tuple[str, ...]] = {
    "sft": CONVERSATION_FORMATS,
    "rl_prompts": CONVERSATION_FORMATS,
    "dpo": PAIR_FORMATS,
    "pretrain": ("text",),
}
# Task-specific keys: set for another task they are a mistake, so they are rejected.
_TASK_KEYS: dict[str, str] = {
    "tie": "dpo",
    "max_prompt_tokens": "rl_prompts",
    "passthrough": "rl_prompts",
    "block_size": "pretrain",
    "add_bos": "pretrain",
    "add_eos": "pretrain",
    "tools": "sft",
}
PASSTHROUGH_TYPES = ("string", "int64", "float64", "bool", "json", "list<string>", "list<int64>", "list<float64>")
# Columns a task writes itself; a passthrough column may not shadow them.
RL_RESERVED_COLUMNS = frozenset({"prompt_ids", "length", "source", "source_row"})


_PATHED = "@path:"  # marks validator messages that carry their own YAML path


class RendererSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    output: str
    tokenizer: str
    renderer: RendererSpec
    task: Literal["sft", "dpo", "rl_prompts", "pretrain"] = "sft"
    train_on: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES
    max_length: int | None = Field(None, ge=2)
    overlong: Literal["truncate", "drop"] = "truncate"
    weight_reduction: Literal["none", "mean"] = "none"
    # fsspec options for `output` (endpoint, credentials, ...); standard env variables work too.
    output_storage_options: dict[str, Any] = Field(default_factory=dict)
    sources: list[SourceSpec] = Field(min_length=1)
    split: SplitSpec = Field(default_factory=SplitSpec)
    shards: ShardSpec = Field(default_factory=ShardSpec)
    on_error: Literal["fail", "skip"] = "fail"
    batch_size: int = Field(512, ge=1)
    # Input rows per work unit: the unit of resume and of parallel work (and so of shard boundaries).
    # `auto`: about 64 units, 128 to 4096 rows each, from the input's row count (not the workers).
    work_unit_rows: int | Literal["auto"] = "auto"
    workers: int | Literal["auto"] = "auto"
    skipped_sample: int = Field(100, ge=0)
    # task: dpo — what a "Tie" label becomes: dropped (counted as `tie`) or chosen = B, as tinker does.
    tie: Literal["drop", "as_b"] = "drop"
    # task: rl_prompts — prompts longer than this are dropped (`overlong`), never cut: a cut prompt
    # loses its generation suffix. Passthrough: output column -> declared Arrow type (row field
    # named by `columns` of the source when mapped there, else the same name).
    max_prompt_tokens: int | None = Field(None, ge=1)
    passthrough: dict[str, Literal[
        "string", "int64", "float64", "bool", "json", "list<string>", "list<int64>", "list<float64>"
    ]] = Field(default_factory=dict)
    # task: pretrain — tokens per block row (inputs; targets are shifted by one), and the BOS/EOS
    # policy per document (None: add the token when tokenizer_config.json names one).
    block_size: int | None = Field(None, ge=2)
    add_bos: bool | None = None
    add_eos: bool | None = None
    # task: sft — a row's `tools` column: `auto` declares them through the renderer's tool prefix
    # (replacing the leading system message), `ignore` trains as if the column were absent.
    tools: Literal["auto", "ignore"] = "auto"
    # Rows per work unit whose text is compared with the model's own chat_template (0: off).
    conformance_rows: int = Field(16, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        # DPO trains the last assistant message (tinker's build_supervised_example default).
        if isinstance(data, dict) and data.get("task") == "dpo" and "train_on" not in data:
            return {**data, "train_on": TrainOnWhat.LAST_ASSISTANT_MESSAGE.value}
        return data

    @model_validator(mode="after")
    def _per_task(self) -> Recipe:
        problems = []
        for key, task in _TASK_KEYS.items():
            if key in self.model_fields_set and self.task != task:
                problems.append(f"{key}: only for task {task} (this recipe's task is {self.task})")
        allowed = TASK_FORMATS[self.task]
        for i, src in enumerate(self.sources):
            if src.format not in allowed:
                problems.append(
                    f"sources[{i}].format: task {self.task} reads {', '.join(allowed)} (got {src.format!r})"
                )
        if self.task == "dpo":
            if self.train_on != TrainOnWhat.LAST_ASSISTANT_MESSAGE:
                problems.append("train_on: task dpo trains on last_assistant_message (as tinker's DPO builder)")
            if self.weight_reduction != "none":
                problems.append("weight_reduction: task dpo keeps per-token weights (none), as tinker's DPO builder")
        if self.task == "pretrain" and self.block_size is None:
            problems.append("block_size: required for task pretrain")
        clash = sorted(RL_RESERVED_COLUMNS & set(self.passthrough))
        if clash:
            problems.append(f"passthrough: {', '.join(clash)} are columns the task writes itself")
        if problems:
            # One line per problem, each already naming its YAML path (see _problems).
            raise ValueError(_PATHED + f"\n{_PATHED}".join(problems))
        return self

    @field_validator("renderer", mode="before")
    @classmethod
    def _renderer(cls, v: Any) -> Any:
        # `renderer: qwen3` or `renderer: {name: gpt_oss_medium_reasoning, current_date: ...}`
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and "options" not in v and "name" in v:
            return {"name": v["name"], "options": {k: val for k, val in v.items() if k != "name"}}
        return v

    @model_validator(mode="after")
    def _unique_sources(self) -> Recipe:
        names = [s.resolved_name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)} (set `name:` on each source)")
        return self


def _yaml_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-after["):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "str", "dict["))))
        msg = e["msg"].removeprefix("Value error, ")
        if msg.startswith(_PATHED):
            problems += [line.removeprefix(_PATHED) for line in msg.splitlines()]
            continue
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        problems.append(f"{_yaml_path(loc)}: {msg}")
    return problems


def parse_recipe(data: Any, *, origin: str | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(["the recipe must be a YAML mapping of keys to values"], path=origin)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_problems(err), path=origin) from None
    return recipe


def load_recipe(path: str | Path) -> tuple[Recipe, Path]:
    """Read and validate a recipe; returns it with the folder its relative paths resolve against."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"recipe file {p} does not exist"]) from None
    # Bounded aliases, no repeated keys (recipe_yaml.py); errors name the recipe file.
    data = load_yaml(text, origin=str(p))
    return parse_recipe(data, origin=str(p)), p.resolve().parent
