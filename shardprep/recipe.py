"""YAML recipe -> validated `Recipe`. Unknown keys are rejected and every problem is reported at once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shardprep.errors import RecipeError
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
    path: str
    format: Literal["messages", "sharegpt", "alpaca"] = "messages"
    columns: dict[str, str] = Field(default_factory=dict)
    file_format: Literal["auto", "jsonl", "json", "parquet"] = "auto"
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @property
    def resolved_name(self) -> str:
        if self.name:
            return self.name
        stem = Path(self.path.rstrip("/")).name
        for suffix in (".gz", ".zst", ".jsonl", ".json", ".ndjson", ".parquet"):
            stem = stem.removesuffix(suffix)
        return stem.replace("*", "").strip("-_.") or "source"


class SplitSpec(_Strict):
    test_size: int = Field(0, ge=0)
    seed: int = 0


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


class RendererSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    output: str
    tokenizer: str
    renderer: RendererSpec
    task: Literal["sft"] = "sft"
    train_on: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES
    max_length: int | None = Field(None, ge=2)
    overlong: Literal["truncate", "drop"] = "truncate"
    weight_reduction: Literal["none", "mean"] = "none"
    sources: list[SourceSpec] = Field(min_length=1)
    split: SplitSpec = Field(default_factory=SplitSpec)
    shards: ShardSpec = Field(default_factory=ShardSpec)
    on_error: Literal["fail", "skip"] = "fail"
    batch_size: int = Field(512, ge=1)
    # Input rows per work unit: the unit of resume and of parallel work (and so of shard boundaries).
    work_unit_rows: int = Field(4096, ge=1)
    workers: int | Literal["auto"] = "auto"
    skipped_sample: int = Field(100, ge=0)

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
        elif part in ("function-after[_unique_sources()]",):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "str", "dict["))))
        msg = e["msg"].removeprefix("Value error, ")
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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError([f"not valid YAML: {exc}"], path=str(p)) from None
    return parse_recipe(data, origin=str(p)), p.resolve().parent
