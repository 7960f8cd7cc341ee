"""Hugging Face Hub sources (`hf: org/name`), read through `datasets` streaming.

A Hub source is planned by file shard: `IterableDataset.n_shards` is the number of data files of
the split, and `shard(n_shards, i)` reads file i alone, in the builder's (sorted) file order. One
work unit covers (a row range of) one shard, so a unit never re-reads rows another unit owns.
The revision is resolved to a commit once, at planning, and every unit reads that commit: a push
to the dataset during a build cannot mix two versions into one build.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shardprep import hub_access
from shardprep.errors import SourceError
from shardprep.sources import retry
from shardprep.sources.base import Identity, Piece, RawRow
from shardprep.sources.paths import file_identity
from shardprep.sources.readers import count_file, detect_format

if TYPE_CHECKING:
    from shardprep.recipe import SourceSpec

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


# What to do about a Hub source that fails: the CLI's default hint names `path:`, not `hf:`.
HUB_HINT = (
    "check the source's `hf:` id, `config:`, `split:` and `revision:`; with HF_HUB_OFFLINE=1 "
    "the Hub cache on this machine is read without network"
)


def _hub_error(message: str) -> SourceError:
    err = SourceError(message)
    err.hint = HUB_HINT
    return err


def _cache_dir(repo: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}"


def check_reachable(repo: str, revision: str | None) -> None:
    """Fail at once, saying so and how to use the cache, when the Hub cannot be reached (and
    HF_HUB_OFFLINE is not set): `datasets` and huggingface_hub would retry for minutes first."""
    reason = hub_access.unreachable()
    if reason is None:
        return
    rev = revision or "main"
    ref = _cache_dir(repo) / "refs" / rev
    if _COMMIT.match(rev) or ref.is_file():
        at = rev if _COMMIT.match(rev) else f"{rev} (commit {ref.read_text().strip()})"
        cache = f"; the Hub cache holds {repo}@{at}: {hub_access.OFFLINE_HINT}"
    else:
        cache = (
            f", and the Hub cache holds no {repo}@{rev}: connect once, or point the source at a "
            "local copy (`path:`, or `hf:` a folder in Hub layout)"
        )
    err = SourceError(hub_access.unreachable_message(f"hf: {repo}", reason) + cache)
    err.hint = hub_access.OFFLINE_HINT if cache.startswith(";") else "connect to the network"
    raise err


def is_local_repo(repo: str, base_dir: Path | None = None) -> Path | None:
    """A folder in Hub layout given instead of a Hub id (absolute, or relative to the recipe)."""
    p = Path(repo).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return p if p.is_dir() else None


def resolve_commit(repo: str, revision: str | None) -> str:
    """The commit sha `revision` (branch, tag or sha; default main) points at now."""
    rev = revision or "main"
    if _COMMIT.match(rev):
        return rev
    if hub_access.offline():
        # Offline, the Hub cache's refs/<rev> file records the commit that was downloaded.
        ref = _cache_dir(repo) / "refs" / rev
        if ref.is_file():
            return ref.read_text().strip()
        raise _hub_error(
            f"hf: {repo}@{rev}: HF_HUB_OFFLINE is set and the revision is not in the Hub cache "
            f"({ref}); pin `revision:` to a commit sha or go online once"
        )
    from huggingface_hub import HfApi

    try:
        info = retry.call(
            lambda: HfApi().dataset_info(repo, revision=rev),
            url=f"hf://datasets/{repo}@{rev}",
            what="resolve",
        )
    except SourceError as e:
        e.hint = e.hint or HUB_HINT
        raise
    if not info.sha:
        raise _hub_error(f"hf: {repo}@{rev}: the Hub returned no commit")
    return str(info.sha)


@dataclass(frozen=True)
class HubRef:
    """Everything `load_dataset` needs, hashable so that a process loads each builder once."""

    path: str  # Hub id, or the absolute path of a local Hub-layout folder
    config: str | None
    split: str
    revision: str | None  # the resolved commit (None for a local folder)
    data_files: str | None  # JSON of the recipe's data_files (str, list or dict)

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"path": self.path, "name": self.config, "revision": self.revision}
        if self.data_files is not None:
            kw["data_files"] = json.loads(self.data_files)
        return kw

    @property
    def url(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        cfg = f" config={self.config}" if self.config else ""
        return f"hf:{self.path}{at}{cfg} split={self.split}"


def hub_ref(src: SourceSpec, base_dir: Path | None) -> HubRef:
    assert src.hf is not None
    local = is_local_repo(src.hf, base_dir)
    path = str(local.resolve()) if local else src.hf
    if not local and not hub_access.offline():
        check_reachable(src.hf, src.revision)
    commit = None if local else resolve_commit(src.hf, src.revision)
    data_files = None if src.data_files is None else json.dumps(src.data_files, sort_keys=True)
    return HubRef(path, src.config, src.split, commit, data_files)


def _wrap(ref: HubRef, what: str, fn: Any) -> Any:
    try:
        return retry.call(fn, url=ref.url, what=what)
    except SourceError as e:
        e.hint = e.hint or HUB_HINT
        raise
    except Exception as e:  # datasets' own errors (DatasetNotFoundError, config errors, ...)
        raise _hub_error(f"cannot {what} {ref.url}: {type(e).__name__}: {e}") from e


@functools.lru_cache(maxsize=16)
def data_files(ref: HubRef) -> tuple[str, ...]:
    """The split's data files, one per shard, in shard order."""
    import datasets

    def load() -> tuple[str, ...]:
        builder = datasets.load_dataset_builder(**ref.kwargs())
        files = (builder.config.data_files or {}).get(ref.split)
        if files is None:
            known = ", ".join(sorted(builder.config.data_files or {}))
            raise SourceError(f"{ref.url}: no split {ref.split!r} (has: {known})")
        return tuple(str(f) for f in files)

    result: tuple[str, ...] = _wrap(ref, "open", load)
    return result


def _stream(ref: HubRef) -> Any:
    import datasets

    return _wrap(
        ref, "open", lambda: datasets.load_dataset(**ref.kwargs(), split=ref.split, streaming=True)
    )


@functools.lru_cache(maxsize=16)
def n_shards(ref: HubRef) -> int:
    return int(_stream(ref).n_shards)


def shard_rows(ref: HubRef, storage_options: dict[str, Any] | None = None) -> list[int]:
    """Rows per shard: Parquet footers when shards are Parquet files, else one streaming pass."""
    files = data_files(ref)
    n = n_shards(ref)
    if n == len(files) and all(f.split("?")[0].endswith(".parquet") for f in files):
        return [count_file(f, detect_format(f), storage_options).rows for f in files]
    return [sum(len(b) for b in _shard_batches(ref, i, n, 0, None, 4096)) for i in range(n)]


def _shard_batches(
    ref: HubRef, shard: int, n: int, start: int, stop: int | None, batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    ds = _stream(ref).shard(num_shards=n, index=shard)
    if start:
        ds = ds.skip(start)
    if stop is not None:
        ds = ds.take(stop - start)
    for cols in ds.iter(batch_size=batch_size):
        names = list(cols)
        yield [dict(zip(names, values, strict=True)) for values in zip(*cols.values(), strict=True)]


def iter_shard_rows(
    ref: HubRef, shard: int, n: int, start: int, stop: int | None, batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Rows [start, stop) of shard `shard`, in batches; a transient error resumes after the last row."""
    return retry.resumed(
        lambda done: _shard_batches(ref, shard, n, start + done, stop, batch_size),
        where=f"{ref.url} shard {shard}",
        size=len,
    )


@dataclass(frozen=True, kw_only=True)
class HubPiece(Piece):
    """One file shard of the split, at the commit resolved when the build was planned."""

    ref: HubRef
    shard: int
    n_shards: int


class HubSource:
    """A recipe source with `hf:`: a Hub dataset (or a local folder in Hub layout)."""

    def __init__(self, spec: SourceSpec, base_dir: Path) -> None:
        self.spec = spec
        self.base_dir = base_dir

    @property
    def path(self) -> str:
        return f"hf:{self.spec.hf}"

    @functools.cached_property
    def ref(self) -> HubRef:
        # Resolved once: the identity's commit is the one every piece of this plan reads.
        return hub_ref(self.spec, self.base_dir)

    def check(self) -> None:
        pass  # the revision is resolved by planning, which needs the network or the Hub cache

    def identity(self) -> Identity:
        """The commit for a Hub id; file identities for a local folder."""
        ref, src = self.ref, self.spec
        files = data_files(ref)
        ident: dict[str, Any] = {
            "hf": src.hf,
            "config": src.config,
            "split": src.split,
            "revision": src.revision,
            "commit": ref.revision,
            "data_files": src.data_files,
        }
        if ref.revision is None:  # a local folder: its files are the version
            ident["files"] = [file_identity(f) for f in files]
        else:  # a commit pins every file's bytes
            ident["files"] = [{"uri": f} for f in files]
        return Identity(ident["files"], hub=ident)

    def pieces(self) -> list[Piece]:
        ref = self.ref
        rows = shard_rows(ref, self.spec.storage_options)
        return [
            # `datasets` reaches row k of a shard only by reading rows < k: one unit per shard.
            HubPiece(
                label=f"{ref.url} shard {i}/{len(rows)}",
                rows=n,
                whole=True,
                ref=ref,
                shard=i,
                n_shards=len(rows),
            )
            for i, n in enumerate(rows)
        ]

    def batches(
        self, piece: Piece, start: int, stop: int, batch_size: int
    ) -> Iterator[list[RawRow]]:
        assert isinstance(piece, HubPiece), piece
        row = start
        for rows in iter_shard_rows(
            piece.ref, piece.shard, piece.n_shards, start, stop, batch_size
        ):
            batch = []
            for data in rows:
                batch.append(RawRow(index=row, file=piece.label, line=row, data=data, unit="row"))
                row += 1
            yield batch

    def first_rows(self, n: int) -> list[RawRow]:
        ref = self.ref
        first = next(iter(iter_shard_rows(ref, 0, n_shards(ref), 0, n, n)), [])
        return [
            RawRow(index=i, file=f"{ref.url} shard 0", line=i, data=d, unit="row")
            for i, d in enumerate(first)
        ]
