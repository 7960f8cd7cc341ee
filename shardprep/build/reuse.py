"""Reusing a finished build: the quick up-to-date check, and the answer a reused build gives.

The full check compares fingerprints, which needs the tokenizer read and parsed (seconds for a
real vocabulary). The quick one needs file stats only: the manifest records a `quick_key` over
the validated recipe, the base folder, and the stats of the tokenizer files and of every input,
plus a `quick_probe` saying how to take those stats again. Equal keys mean an unchanged build; a
different key only means the full fingerprint decides.

`prep build` runs the quick check from the recipe file itself (`from_recipe_file`), before the
recipe model, the tokenizer or any task machinery loads: when the file's bytes and the --output
override are the ones the recorded build was made from, they validate to the same recipe, so the
recorded key can be recomputed from the probe and file stats alone. It answers only where it is
sure (local output, every source plain files); anything else goes the full way.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardprep import __version__
from shardprep.errors import BuildError, ShardprepError
from shardprep.sources.paths import expand_paths, file_identity, is_local, resolve_path
from shardprep.store.integrity import shard_problems
from shardprep.store.manifest import canonical_json, fingerprint, read_manifest, read_manifest_json
from shardprep.store.storage import Output

SourceFiles = dict[str, list[dict[str, Any]]]


@dataclass
class BuildResult:
    status: str  # "built" | "up_to_date"
    output: str
    manifest: dict[str, Any]
    resumed_units: int = 0


@dataclass(frozen=True)
class QuickProbe:
    """What the quick key covers, as the manifest records it (`quick_probe`)."""

    recipe: str  # sha256 of the validated recipe, less `output` (the manifest's place)
    base_dir: str  # relative paths in the recipe resolve against it
    # The local files that decide which tokenizer loads, and with what (tokenizer.local_tokenizer_files)
    tokenizer_files: tuple[str, ...]
    # (name, path) of each source when every one is files named by `path:` without storage
    # options (identities from stats alone); None otherwise: a Hub source's identity needs the
    # Hub, storage options need the recipe.
    sources: tuple[tuple[str, str], ...] | None
    # sha256 of the recipe file's bytes and the --output override, when `prep build` read one
    # (and the tokenizer is local: a Hub id's cache may resolve it to another file tomorrow, so
    # such a recipe is always judged with its model, which resolves it again).
    recipe_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "base_dir": self.base_dir,
            "tokenizer_files": list(self.tokenizer_files),
            "sources": None if self.sources is None else [list(s) for s in self.sources],
            "recipe_file": self.recipe_file,
        }

    @classmethod
    def from_json(cls, data: Any) -> QuickProbe | None:
        """The probe a manifest records; None for a missing or malformed one (no quick answer)."""
        try:
            sources = data["sources"]
            probe = cls(
                recipe=data["recipe"],
                base_dir=data["base_dir"],
                tokenizer_files=tuple(data["tokenizer_files"]),
                sources=None if sources is None else tuple((n, p) for n, p in sources),
                recipe_file=data.get("recipe_file"),
            )
        except (KeyError, TypeError, ValueError):
            return None
        strings = [probe.recipe, probe.base_dir, *probe.tokenizer_files]
        strings += [s for pair in probe.sources or () for s in pair]
        if not all(isinstance(s, str) for s in strings):
            return None
        if probe.recipe_file is not None and not isinstance(probe.recipe_file, str):
            return None
        return probe


def quick_key(probe: QuickProbe, source_files: SourceFiles, manifest: dict[str, Any]) -> str:
    """The key over the probe's recipe and folder, its tokenizer files' stats, the inputs'
    identities (`source_files`: each source's file identities, as its Source reports them) and the
    manifest it is recorded in, less the key itself: a manifest whose key matches is exactly the
    one a build wrote (and validated), so the quick answer needs no manifest model."""
    stats = []
    for name in probe.tokenizer_files:
        try:
            st = os.stat(name)
        except OSError:
            continue  # absent (no tokenizer_config.json): its appearing changes the key
        stats.append([name, st.st_size, st.st_mtime_ns])
    body = canonical_json({k: v for k, v in manifest.items() if k != "quick_key"})
    return fingerprint(
        {
            "shardprep": __version__,
            "recipe": probe.recipe,
            "base_dir": probe.base_dir,
            "tokenizer_files": stats,
            "sources": source_files,
            "manifest_sha256": hashlib.sha256(body.encode()).hexdigest(),
        }
    )


def sealed(
    manifest: dict[str, Any], probe: QuickProbe, source_files: SourceFiles
) -> dict[str, Any]:
    """`manifest` with `probe` and its quick key, as it will read back from manifest.json."""
    as_written = json.loads(json.dumps({**manifest, "quick_probe": probe.to_json()}, default=str))
    return {**as_written, "quick_key": quick_key(probe, source_files, as_written)}


def probe_source_files(probe: QuickProbe) -> SourceFiles | None:
    """The inputs' identities taken again from the probe (FileSource.identity's own calls, for
    sources without storage options); None when the probe has no file-only sources."""
    if probe.sources is None:
        return None
    base = Path(probe.base_dir)
    return {
        name: [file_identity(u) for u in expand_paths(path, base_dir=base)]
        for name, path in probe.sources
    }


def recipe_file_digest(path: Path, output: str | None) -> str | None:
    """sha256 of a recipe file's bytes and the --output override (resolved); None if unreadable."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    h = hashlib.sha256(raw)
    h.update(b"\0--output\0" + (output or "").encode())
    return h.hexdigest()


def from_recipe_file(path: Path, *, output: str | None, digest: str) -> BuildResult | None:
    """The up-to-date answer for `prep build PATH`, from the file and stats alone; None when the
    quick check cannot say (then the build validates the recipe and decides the full way).

    `output`: the --output override, resolved as the build resolves it; `digest`: the file's
    recipe_file_digest."""
    from shardprep.recipe_yaml import load_yaml

    base = Path(path).resolve().parent
    if output is None:
        try:
            data = load_yaml(Path(path).read_text(encoding="utf-8"), origin=str(path))
        except Exception:  # noqa: BLE001 - load_recipe reports it
            return None
        if not isinstance(data, dict) or data.get("output_storage_options"):
            return None
        output = data.get("output")
        if not isinstance(output, str):
            return None
        output = resolve_path(output, base)
    if not is_local(output):
        return None  # an object store's listing needs fsspec and its options: the full way
    try:
        out = Output(output)
        manifest = read_manifest_json(out)  # trusted below only once its sealed key matches
        if not isinstance(manifest, dict):
            return None
        probe = QuickProbe.from_json(manifest.get("quick_probe"))
        if probe is None or probe.recipe_file != digest or probe.base_dir != str(base):
            return None
        files = probe_source_files(probe)
        if files is None or quick_key(probe, files, manifest) != manifest.get("quick_key"):
            return None
        if shard_problems(out, manifest):
            return None
    except ShardprepError:
        return None  # the full way reports it, with the recipe's context
    return up_to_date(out, manifest)


def up_to_date(output: Output, manifest: dict[str, Any]) -> BuildResult:
    _clean_stale(output, manifest)
    return BuildResult("up_to_date", output.url, manifest)


def record_quick(
    output: Output, *, build_fingerprint: str, probe: QuickProbe, source_files: SourceFiles
) -> None:
    """Seal `probe` into the manifest of the build with `build_fingerprint` where it is not
    already (a setting outside the fingerprint changed, a file was touched, the recipe file was
    edited without changing the recipe): the next run then answers from file stats again instead
    of parsing the tokenizer every time. Best effort: skipped when another build holds the
    output or it cannot be written."""
    from shardprep.build.lock import build_lock
    from shardprep.store.manifest import write_manifest

    try:
        with build_lock(output, wait_s=0):
            current = read_manifest(output)
            if current is None or current.get("fingerprint") != build_fingerprint:
                return
            new = sealed(current, probe, source_files)
            if new != current:
                write_manifest(output, new)
    except (BuildError, OSError):
        return


def _clean_stale(output: Output, manifest: dict[str, Any]) -> None:
    """Remove what a build made that the manifest no longer reads (a build killed right after its
    manifest was placed leaves the previous folder, or the unit shards it merged; a killed worker
    leaves temporaries), when no other build holds the output. Only what a build provably made
    (store/ownership.py): the manifest can keep a folder, never name one to remove."""
    from shardprep.store.ownership import leftovers, remove_unreferenced, scratch_leftovers

    if not scratch_leftovers(output) and not leftovers(output, manifest):
        return
    from shardprep.build.lock import build_lock

    try:
        with build_lock(output, wait_s=0):
            current = read_manifest(output)
            if current is not None:
                remove_unreferenced(output, current)
    except BuildError:
        return  # another build is writing here; it cleans up when it finishes
