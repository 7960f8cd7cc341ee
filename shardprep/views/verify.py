"""`prep verify`: every shard re-hashed against the manifest, schema and row counts checked."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from shardprep.store.integrity import escapes_output
from shardprep.tasks import task_for_schema
from shardprep.views.show import open_build


@dataclass
class ShardCheck:
    path: str
    split: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    url: str
    fingerprint: str
    shards: list[ShardCheck]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "fingerprint": self.fingerprint,
            "ok": self.ok,
            "shards": len(self.shards),
            "problems": [
                {"path": s.path, "split": s.split, "problems": s.problems}
                for s in self.shards
                if not s.ok
            ],
        }


def _hash(fs: Any, path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with fs.open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def verify_build(url: str) -> VerifyReport:
    output, manifest = open_build(url)
    schema_id = manifest.get("schema", "sft/1")
    task = task_for_schema(schema_id, where=f"{url}: ")
    shard_schema = task.shard_schema(schema_id)
    assert shard_schema is not None
    extra = task.extra_fields(task.options_from_manifest(manifest.get("recipe", {})))
    checks: list[ShardCheck] = []
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            check = ShardCheck(shard["path"], split)
            checks.append(check)
            path = output.path(shard["path"])
            if escapes_output(output, shard["path"]):
                check.problems.append("resolves outside the output folder (a symlink?): not read")
                continue
            if not output.fs.exists(path):
                check.problems.append("missing")
                continue
            digest, size = _hash(output.fs, path)
            if size != shard["bytes"]:
                what = "truncated" if size < shard["bytes"] else "longer than recorded"
                check.problems.append(f"{what}: {size} bytes, manifest says {shard['bytes']}")
            if digest != shard["sha256"]:
                check.problems.append(
                    f"altered: sha256 {digest[:16]}… differs from the manifest's {shard['sha256'][:16]}…"
                )
            try:
                with output.fs.open(path, "rb") as f:
                    meta = pq.ParquetFile(f).metadata
                    schema = meta.schema.to_arrow_schema()
                    rows = meta.num_rows
            except Exception as exc:  # pyarrow raises several types for a damaged file
                check.problems.append(f"unreadable Parquet: {exc}")
                continue
            if rows != shard["rows"]:
                check.problems.append(f"{rows} rows, manifest says {shard['rows']}")
            check.problems += [f"schema: {p}" for p in shard_schema.problems(schema, extra)]
        listed = sum(s["rows"] for s in info["shards"])
        if listed != info["rows"]:
            checks.append(
                ShardCheck(
                    f"split {split}",
                    split,
                    [f"shards hold {listed} rows, the split says {info['rows']}"],
                )
            )
    return VerifyReport(url, manifest["fingerprint"], checks)
