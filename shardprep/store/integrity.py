"""Whether the shards a manifest lists are really there: present, of their recorded size, and
(on local disk) inside the output folder once symlinks are resolved.

Cheap enough for every "up to date" answer and for the check before a manifest is placed: one stat
per shard locally, one listing per folder on object stores. Hashes are `prep verify`'s job.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from typing import Any

from shardprep.store.storage import Output


def manifest_shards(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for info in manifest.get("splits", {}).values() for s in info.get("shards", [])]


def escapes_output(output: Output, rel: str) -> bool:
    """True when a local shard path resolves (through symlinks) outside the output folder."""
    if not output.is_local:
        return False
    root = os.path.realpath(output.root)
    return not os.path.realpath(output.path(rel)).startswith(root + os.sep)


def shard_problems(output: Output, manifest: dict[str, Any], *, sizes: bool = True) -> list[str]:
    """'PATH: problem' for each listed shard that is missing, of another size, or escapes."""
    problems: list[str] = []
    shards = manifest_shards(manifest)
    listed: dict[str, dict[str, int]] = {}  # folder -> name -> size (object stores)
    for shard in shards:
        rel = shard["path"]
        if escapes_output(output, rel):
            problems.append(f"{rel}: resolves outside the output folder (a symlink?)")
            continue
        if output.is_local:
            try:
                size: int | None = os.stat(output.path(rel)).st_size
            except FileNotFoundError:
                size = None
        else:
            folder, name = posixpath.split(rel)
            if folder not in listed:
                listed[folder] = _sizes(output, folder)
            size = listed[folder].get(name)
        if size is None:
            problems.append(f"{rel}: missing")
        elif sizes and "bytes" in shard and size != shard["bytes"]:
            problems.append(f"{rel}: {size} bytes, the manifest says {shard['bytes']}")
    return problems


def _sizes(output: Output, folder: str) -> dict[str, int]:
    try:
        entries = output.fs.ls(output.path(folder), detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    except TypeError:  # a filesystem whose ls takes no refresh
        entries = output.fs.ls(output.path(folder), detail=True)
    return {
        posixpath.basename(e["name"].rstrip("/")): int(e.get("size") or 0)
        for e in entries
        if e.get("type") != "directory"
    }


def hash_problems(output: Output, shards: list[dict[str, Any]]) -> list[str]:
    """'PATH: sha256 differs ...' for each of `shards` whose bytes are not the manifest's."""
    problems = []
    for shard in shards:
        if escapes_output(output, shard["path"]):
            continue  # reported by shard_problems; never read
        h = hashlib.sha256()
        try:
            with output.fs.open(output.path(shard["path"]), "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
        except FileNotFoundError:
            continue  # reported by shard_problems
        if h.hexdigest() != shard["sha256"]:
            problems.append(
                f"{shard['path']}: sha256 differs from the manifest (the shard changed or is corrupt)"
            )
    return problems
