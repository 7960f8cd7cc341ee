"""`prep ls`: the builds under a folder, with recipe name, fingerprint, size and age."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from shardprep.errors import ShardprepError
from shardprep.store.manifest import MANIFEST_NAME, read_manifest
from shardprep.store.storage import Output


def list_builds(url: str, *, max_depth: int = 3) -> list[dict[str, Any]]:
    root = Output(url)
    # A mistyped folder is an error, not an empty listing that reads as "no builds here".
    if not root.fs.isdir(root.root):
        what = "a file, not a folder" if root.fs.exists(root.root) else "not found"
        raise ShardprepError(f"{url}: {what} (prep ls takes the folder to search for builds)")
    found: list[dict[str, Any]] = []
    for path in sorted(root.fs.find(root.root, maxdepth=max_depth + 1, withdirs=False)):
        if not path.endswith("/" + MANIFEST_NAME):
            continue
        folder = path[: -len(MANIFEST_NAME) - 1]
        rel = folder[len(root.root) :].lstrip("/") or "."
        out = Output(folder if "://" not in url else f"{url.rstrip('/')}/{rel}")
        try:
            m = read_manifest(out, filled=True)
        except ShardprepError as exc:
            found.append({"path": rel, "error": str(exc)})
            continue
        if m is None:
            continue
        created = m["created_at"]  # None in a hand-written build: age unknown
        found.append(
            {
                "path": rel,
                "name": m["recipe"].get("name"),
                "fingerprint": m["fingerprint"],
                "task": m.get("task"),
                "rows": sum(s["rows"] for s in m["splits"].values()),
                "tokens": sum(s["tokens"] for s in m["splits"].values()),
                "bytes": sum(sh["bytes"] for s in m["splits"].values() for sh in s["shards"]),
                "created_at": m["created_at"],
                "age_s": (
                    round(time.time() - datetime.fromisoformat(created).timestamp())
                    if created
                    else None
                ),
            }
        )
    return found
