"""manifest.json: fingerprint, provenance and stats of a complete build; written last."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, cast

from shardprep import FORMAT_VERSION
from shardprep.errors import ManifestError
from shardprep.store.storage import Output

if TYPE_CHECKING:
    from shardprep.store.manifest_model import Manifest

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "shardprep"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(parts: dict[str, Any]) -> str:
    """sha256 over everything that decides the bytes of the shards, and nothing else."""
    return hashlib.sha256(
        canonical_json({"format_version": FORMAT_VERSION, **parts}).encode()
    ).hexdigest()


def read_manifest(output: Output, *, filled: bool = False) -> dict[str, Any] | None:
    """The manifest of a complete build, or None when there is none (an unfinished build has none).

    `filled`: as the typed model reads it, every optional key present with its default (what a
    reader of an older or hand-written build indexes without a KeyError); otherwise the JSON as
    written (what a build compares and rewrites)."""
    data = read_manifest_json(output)
    if data is not None:
        typed = validate_manifest(data, where=output.path(MANIFEST_NAME))
        if filled:
            return typed.to_json()
    return cast("dict[str, Any] | None", data)


def no_manifest_error(output: Output, url: str) -> ManifestError:
    """`url` holds no manifest: say so, and when a folder above it is a build (a `data-*` folder
    or a shard was given), name that folder, which is what readers take."""
    parent = url.rstrip("/")
    for _ in range(3):  # data-<fp>/ ; data-<fp>/<shard> ; data-<fp>/_units/<marker>
        head, sep, _tail = parent.rpartition("/")
        if not sep or not head or head.endswith(":/"):
            break
        parent = head
        try:
            found = Output(parent, storage_options=output.storage_options).exists(MANIFEST_NAME)
        except OSError:
            break
        if found:
            err = ManifestError(
                f"{url} is inside the build {parent}: readers take the build folder (the one "
                f"holding {MANIFEST_NAME}), which finds its shards through the manifest"
            )
            err.hint = f"give {parent} instead (e.g. `prep show {parent}`)"
            return err
    err = ManifestError(
        f"{output.path(MANIFEST_NAME)} not found: {url} is not a finished build "
        "(run `prep build` first)"
    )
    err.hint = (
        "run `prep build RECIPE`, or give the folder a build wrote (`prep ls DIR` lists them)"
    )
    return err


def read_manifest_json(output: Output) -> Any:
    """manifest.json's JSON as it is, unchecked (None when there is none): for a caller that
    trusts it only once it is proven to be what a build wrote (the sealed quick key)."""
    if not output.exists(MANIFEST_NAME):
        return None
    try:
        return json.loads(output.read_text(MANIFEST_NAME))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{output.path(MANIFEST_NAME)} is not valid JSON: {exc}") from exc


def validate_manifest(data: Any, *, where: str) -> Manifest:
    """The typed manifest; a malformed one is one line naming the field (never a crash later)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ManifestError(f"{where} is not a shardprep manifest")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ManifestError(
            f"{where} has format_version {version!r}; this shardprep reads up to {FORMAT_VERSION} (upgrade shardprep)"
        )
    from pydantic import ValidationError

    from shardprep.store.manifest_model import ESCAPES, Manifest

    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        errors = err.errors()
        escapes = [e for e in errors if ESCAPES in str(e.get("msg", ""))]
        if escapes:
            msg = str(escapes[0]["msg"]).split(ESCAPES, 1)[1]
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
