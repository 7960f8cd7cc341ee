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
    for split, info in data.get("splits", {}).items():
        for shard in info.get("shards", []):
            rel = shard.get("path", "")
            norm = posixpath.normpath(rel)
            if rel.startswith("/") or norm.startswith("..") or "://" in rel:
                raise ManifestError(f"{where}: shard path {rel!r} of split {split!r} leaves the shard directory")


def write_manifest(output: Output, manifest: dict[str, Any]) -> None:
    output.write_text_atomic(MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
