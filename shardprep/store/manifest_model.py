"""The typed manifest.json (pydantic): what `validate_manifest` checks a manifest against.

Its own module so that reading a manifest's JSON (an up-to-date `prep build` answered from a sealed
quick key, build/reuse.py) does not build these models.
"""

from __future__ import annotations

import posixpath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ESCAPES = "@escapes:"  # marks the path check's message, reported before any other problem


class _Entry(BaseModel):
    # A newer shardprep may add fields; a reader keeps them and relies only on the typed ones.
    # List defaults are written `[]` (pydantic copies a mutable default for each instance): a
    # `default_factory=list` has pydantic read `list`'s signature, which compiles tokenize's
    # patterns, 6 ms of every up-to-date `prep build`.
    model_config = ConfigDict(extra="allow")


class ShardEntry(_Entry):
    path: str  # relative to the build folder
    rows: int
    sha256: str
    bytes: int = 0
    tokens: int = 0
    trained_tokens: int = 0

    @field_validator("path")
    @classmethod
    def _inside(cls, rel: str) -> str:
        if rel.startswith("/") or posixpath.normpath(rel).startswith("..") or "://" in rel:
            raise ValueError(f"{ESCAPES}shard path {rel!r} leaves the shard directory")
        return rel


class SplitEntry(_Entry):
    rows: int
    shards: list[ShardEntry]
    tokens: int = 0
    trained_tokens: int = 0


class SourceEntry(_Entry):
    name: str
    path: str | None = None
    format: str | None = None
    files: list[dict[str, Any]] = []
    hub: dict[str, Any] | None = None
    rows_read: int = 0
    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    dropped: int = 0
    truncated: int | None = None
    dropped_by_reason: dict[str, int] | None = None
    normalizations: list[str] = []


class BuildStats(_Entry):
    rows_read: int = 0
    examples: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    truncated: int = 0
    length_histogram: dict[str, list[int]] = Field(default_factory=dict)
    task_counters: dict[str, int] = Field(default_factory=dict)
    task_summary: dict[str, Any] | None = None
    units: int = 0
    units_resumed: int = 0
    elapsed_s: float = 0.0
    rows_per_s: float | None = None
    tokens_per_s: float | None = None


class Manifest(_Entry):
    """manifest.json. What a reader needs is required; provenance and stats default when absent
    (older builds, hand-written test builds)."""

    format: Literal["shardprep"]
    format_version: int
    fingerprint: str
    splits: dict[str, SplitEntry]
    schema_id: str = Field("sft/1", alias="schema")
    shardprep_version: str | None = None
    created_at: str | None = None
    quick_key: str | None = None
    # build/reuse.py: how to take quick_key again; a hint, read leniently (a bad one: no quick answer)
    quick_probe: Any = None
    task: str = "sft"
    recipe: dict[str, Any] = Field(default_factory=dict)
    tokenizer: dict[str, Any] = Field(default_factory=dict)
    renderer: dict[str, Any] = Field(default_factory=dict)
    train_on: str | None = None
    sources: list[SourceEntry] = []
    stats: BuildStats = Field(default_factory=BuildStats)
    data_dir: str | None = None
    skipped_sample: str | None = None
    conformance: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = []

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="after")
    def _shards_in_data_dir(self) -> Manifest:
        """`data_dir` names the one top-level folder every listed shard is in: a manifest that
        says otherwise is not one a build wrote (and cleanup keeps what either names)."""
        d = self.data_dir
        if d is None:
            return self
        if not d or "/" in d or "\\" in d or d in (".", "..") or "://" in d:
            raise ValueError(f"data_dir {d!r} is not a folder of the build")
        for split, info in self.splits.items():
            for shard in info.shards:
                if posixpath.dirname(posixpath.normpath(shard.path)) != d:
                    raise ValueError(
                        f"shard {shard.path!r} (split {split!r}) is not in data_dir {d!r}"
                    )
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)
