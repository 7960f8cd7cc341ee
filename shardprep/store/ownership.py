"""What a build made in its output folder, proved by a record the build writes before any data.

A build removes only folders it can prove it made: each data folder (`data-<fp12>[-tag]`) and the
scratch folder of temporary files carry an owner record, written into the folder before anything
else is, naming that folder. Cleanup lists the output's top level and removes a folder only when
its record is there and names it; never by a name pattern, and never from what a manifest says (a
manifest can only keep folders, never add one to remove). An output folder that holds anything
else (the user's inputs, another tool's files) is refused before a build writes there, unless it
is already a build (it has a manifest.json).
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from typing import Any

from shardprep.errors import BuildError
from shardprep.store.storage import LOCK_NAME, SCRATCH_DIR, Output, naming_errors

OWNER_NAME = ".shardprep-owner"
MANIFEST_NAME = "manifest.json"
_MADE_BY = "shardprep"


def _record(folder: str) -> str:
    return json.dumps({"made_by": _MADE_BY, "folder": folder}) + "\n"


def owns(output: Output, folder: str) -> bool:
    """True when `folder` (a top-level entry of the output) holds the owner record naming it."""
    if "/" in folder or folder in ("", ".", ".."):
        return False
    rel = f"{folder}/{OWNER_NAME}"
    try:
        if output.is_local:
            if os.path.islink(output.path(folder)):
                return False  # a link may point anywhere: never followed to remove
            with open(output.path(rel), encoding="utf-8") as f:
                text = f.read(4096)
        else:
            if not output.exists(rel):
                return False
            text = output.read_text(rel)
        data = json.loads(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data == {"made_by": _MADE_BY, "folder": folder}


def claim(output: Output, folder: str) -> None:
    """Make `folder` this build's own before anything is written into it. A folder that exists,
    is not owned and holds anything but a half-written record is refused (never written into)."""
    if owns(output, folder):
        return
    if output.listdir(folder) and any(not n.startswith(OWNER_NAME) for n in output.listdir(folder)):
        raise BuildError(
            f"{output.path(folder)} exists and was not made by shardprep; "
            "move it away or choose another output"
        )
    rel = f"{folder}/{OWNER_NAME}"
    if not output.is_local:
        # An object store has no empty folders: the folder appears with its record, one upload.
        output.write_text_atomic(rel, _record(folder))
        return
    output.makedirs()
    if folder == SCRATCH_DIR:
        # Created, then its record written beside and renamed in: a kill in between leaves an
        # empty folder (or a half record), which the next claim takes and no check calls foreign.
        output.makedirs(folder)
        tmp = output.path(f"{folder}/{OWNER_NAME}.{uuid.uuid4().hex[:8]}")
        with naming_errors(tmp), open(tmp, "w", encoding="utf-8") as f:
            f.write(_record(folder))
        os.replace(tmp, output.path(rel))
        return
    # A data folder is made whole in the scratch folder and renamed into place: it never exists
    # without its record (a kill in between leaves it in the scratch folder, swept later).
    staged = output.local_tempfile(folder)
    os.mkdir(staged)
    record = os.path.join(staged, OWNER_NAME)
    with naming_errors(record), open(record, "w", encoding="utf-8") as f:
        f.write(_record(folder))
    os.rename(staged, output.path(folder))  # replaces an empty folder of that name


def reclaim(output: Output, folder: str) -> None:
    """Write again the record of a folder this run claimed, when the store lost it (an object
    store restarted empty) while the build went on writing there: those files are the build's,
    and the rerun resumes them rather than refuse them as foreign. Best effort: called as a
    failing build unwinds, when the store may still be down."""
    try:
        if output.listdir(folder) and not owns(output, folder):
            output.write_text_atomic(f"{folder}/{OWNER_NAME}", _record(folder))
    except Exception:  # noqa: BLE001 - the build's own error is the one to report
        pass


def remove_owned(output: Output, folder: str) -> bool:
    """Remove `folder` if this tool made it; False (nothing removed) otherwise."""
    if not owns(output, folder):
        return False
    output.remove_tree(folder)
    return True


def scratch_leftovers(output: Output) -> list[str]:
    """The scratch folder's temporary files (all but its record): a killed writer's, or, while a
    build runs, its own."""
    if not output.is_local or not owns(output, SCRATCH_DIR):
        return []
    return [n for n in output.listdir(SCRATCH_DIR) if n != OWNER_NAME]


def sweep_scratch(output: Output) -> None:
    """Empty the scratch folder of temporary files (a killed writer's), keeping its record.
    Call only under the build lock: another build's temporaries live there while it runs."""
    for name in scratch_leftovers(output):
        try:
            os.unlink(output.path(f"{SCRATCH_DIR}/{name}"))
        except IsADirectoryError:
            output.remove_tree(f"{SCRATCH_DIR}/{name}")
        except FileNotFoundError:
            pass


def foreign_entries(output: Output) -> list[str]:
    """Top-level entries of an output folder that no shardprep build made; [] for a folder that
    does not exist, is empty, or is already a build (has a manifest.json)."""
    names = output.listdir()
    if not names or MANIFEST_NAME in names:
        return []
    return [
        n
        for n in names
        if n != LOCK_NAME
        and not owns(output, n)
        and not (n == SCRATCH_DIR and all(e.startswith(OWNER_NAME) for e in output.listdir(n)))
    ]


def foreign_problem(output: Output) -> str | None:
    """Why a build must not write into `output` (it holds files that are not a build's, named),
    or None: the one wording of `prep validate`'s check and the build's refusal."""
    foreign = foreign_entries(output)
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return (
        f"output {output.url} holds files that are not a shardprep build's ({shown}); "
        "a build writes only into an empty folder or an earlier build"
    )


def refuse_foreign(output: Output) -> None:
    """An output folder holding other files than a build's is never written into: the user's
    inputs, an HF `save_to_disk` folder, notes. Exit 2 naming a few of them."""
    problem = foreign_problem(output)
    if problem is not None:
        err = BuildError(problem)
        err.hint = "choose another `output:` (or `-o PATH`), e.g. a new folder beside these files"
        raise err


def _listed(manifest: dict[str, Any]) -> set[str]:
    """The files a manifest reads (its shards and skipped sample), normalized relative paths."""
    paths = [
        s.get("path") if isinstance(s, dict) else None
        for info in (manifest.get("splits") or {}).values()
        for s in (info or {}).get("shards") or []
    ]
    paths.append(manifest.get("skipped_sample"))
    return {posixpath.normpath(p) for p in paths if isinstance(p, str)}


def keep_folders(manifest: dict[str, Any]) -> set[str]:
    """The top-level folders a manifest reads from: never removed while it is the current one."""
    keep = {p.split("/", 1)[0] for p in _listed(manifest)}
    data_dir = manifest.get("data_dir")
    if isinstance(data_dir, str):
        keep.add(data_dir)
    return keep


def leftovers(output: Output, manifest: dict[str, Any]) -> list[str]:
    """What a build made that `manifest` no longer reads (relative paths): owned folders it does
    not use, and, inside the owned folders it uses, files it does not list (unit shards merged
    into its shards when a kill came between the manifest and their removal). The unit markers,
    the skipped sample and the owner record stay."""
    keep, listed = keep_folders(manifest), _listed(manifest)
    found: list[str] = []
    for name in output.listdir():
        if name in (MANIFEST_NAME, LOCK_NAME, SCRATCH_DIR) or not owns(output, name):
            continue
        if name not in keep:
            found.append(name)
            continue
        for entry in output.listdir(name):
            rel = f"{name}/{entry}"
            if entry not in (OWNER_NAME, "_units") and rel not in listed:
                found.append(rel)
    return found


def remove_unreferenced(output: Output, manifest: dict[str, Any]) -> None:
    """Remove `leftovers` and empty the scratch folder. Call only under the build lock, with
    `manifest` the one just placed (or read under the lock)."""
    for rel in leftovers(output, manifest):
        output.remove_tree(rel)
    sweep_scratch(output)
