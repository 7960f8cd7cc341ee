"""manifest.json: fingerprint, provenance and stats of a complete build; written last."""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

from shardprep import FORMAT_VERSION
from shardprep.errors import ManifestError
from shardprep.store.storage import Output

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "shardprep"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(parts: dict[str, Any]) -> str:
    """sha256 over everything that decides the bytes of the shards, and nothing else."""
    return hashlib.sha256(canonical_json({"format_version": FORMAT_VERSION, **parts}).encode()).hexdigest()


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


def validate_manifest(data: Any, *, where: str) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ManifestError(f"{where} is not a shardprep manifest")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ManifestError(
            f"{where} has format_version {version!r}; this shardprep reads up to {FORMAT_VERSION} (upgrade shardprep)"
        )
    problem = _shape_problem(data)
    if problem:
        raise ManifestError(f"{where}: {problem}")


def _shape_problem(data: dict[str, Any]) -> str | None:
    """The first shard path that leaves the output, or field a reader relies on that is missing or
    of the wrong type (a malformed manifest is one line naming it, never a crash later)."""
    splits = data.get("splits")
    if not isinstance(splits, dict):
        return "malformed: `splits` is not a mapping of split names"
    shards: list[tuple[str, int, dict[str, Any]]] = []
    for split, info in splits.items():
        if not isinstance(info, dict) or not isinstance(info.get("shards"), list):
            return f"malformed: split {split!r} has no `shards` list"
        for i, shard in enumerate(info["shards"]):
            if not isinstance(shard, dict) or not isinstance(shard.get("path"), str):
                return f"malformed: split {split!r} shard {i} has no string `path`"
            rel = shard["path"]
            norm = posixpath.normpath(rel)
            if rel.startswith("/") or norm.startswith("..") or "://" in rel:
                return f"shard path {rel!r} of split {split!r} leaves the shard directory"
            shards.append((split, i, shard))
    if not isinstance(data.get("fingerprint"), str):
        return "malformed: `fingerprint` is not a string"
    for split, info in splits.items():
        if not isinstance(info.get("rows"), int):
            return f"malformed: split {split!r} has no integer `rows`"
    for split, i, shard in shards:
        for key, kind in (("rows", int), ("sha256", str)):
            if not isinstance(shard.get(key), kind):
                return f"malformed: split {split!r} shard {i} has no {kind.__name__} `{key}`"
    return None


def write_manifest(output: Output, manifest: dict[str, Any]) -> None:
    output.write_text_atomic(MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
