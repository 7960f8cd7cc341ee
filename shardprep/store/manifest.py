"""manifest.json: fingerprint, provenance and stats of a complete build; written last."""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shardprep import FORMAT_VERSION
from shardprep.errors import ManifestError
from shardprep.store.storage import Output

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "shardprep"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(parts: dict[str, Any]) -> str:
    """sha256 over everything that decides the bytes of the shards, and nothing else."""
    return hashlib.sha256(
        canonical_json({"format_version": FORMAT_VERSION, **parts}).encode()
    ).hexdigest()


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
            raise ValueError(f"{_ESCAPES}shard path {rel!r} leaves the shard directory")
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

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


_ESCAPES = "@escapes:"  # marks the path check's message, reported before any other problem


def read_manifest(output: Output) -> dict[str, Any] | None:
    """The manifest of a complete build, or None when there is none (an unfinished build has none)."""
    if not output.exists(MANIFEST_NAME):
        return None
    try:
        data = json.loads(output.read_text(MANIFEST_NAME))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{output.path(MANIFEST_NAME)} is not valid JSON: {exc}") from exc
    validate_manifest(data, where=output.path(MANIFEST_NAME))
    return data


def validate_manifest(data: Any, *, where: str) -> Manifest:
    """The typed manifest; a malformed one is one line naming the field (never a crash later)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ManifestError(f"{where} is not a shardprep manifest")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ManifestError(
            f"{where} has format_version {version!r}; this shardprep reads up to {FORMAT_VERSION} (upgrade shardprep)"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        escapes = [e for e in errors if _ESCAPES in str(e.get("msg", ""))]
        if escapes:
            msg = str(escapes[0]["msg"]).split(_ESCAPES, 1)[1]
            split = escapes[0]["loc"][1] if len(escapes[0]["loc"]) > 1 else "?"
            raise ManifestError(f"{where}: {msg.removesuffix('.')} (split {split!r})") from None
        first = errors[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{where}: malformed: `{loc}`: {first['msg']}") from None


def write_manifest(output: Output, manifest: dict[str, Any]) -> None:
    validate_manifest(manifest, where="the manifest being written")  # the contract holds both ways
    output.write_text_atomic(
        MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n"
    )
