"""Duplicates and eval leaks: `dedup: exact` and `decontaminate:`, decided once at commit.

Work units run in parallel, each seeing its own rows only, so a rule that compares rows across the
build cannot be decided inside a unit. The per-row work is done there (in parallel): each unit
reads back its own unit shards and records, per shard, each row's digest, tokens and trained
tokens, and which eval files its trained tokens share an n-gram with (`RowFacts`, in the
shard's entry as `filter`). The decision is made by the driver, in one pass over those records in
a fixed order: every held-out (test) shard first, then every train shard, each split in unit
order (the global row order). It therefore depends on the rows alone, never on the engine, the
worker count or how often the build resumed. The rows it drops are left out when compaction
merges the unit shards (`compact_manifest(keep=...)`), and the manifest counts them as drops
(`duplicate`, `contaminated`) with samples, so rows read = train + test + dropped still holds.

- `dedup: exact`: a row whose token columns (every sequence's ids and weights: a dpo pair as a
  whole) equal an earlier row's is a duplicate. Rows are compared by a 128-bit BLAKE2b digest of
  those columns. Test rows come first, so a train row equal to a held-out row is the one dropped:
  nothing held out leaks into train through a copy.
- `decontaminate`: a row is contaminated when its trained tokens hold a token n-gram (`ngram`
  consecutive ids) of an eval file's `field`. The eval texts are encoded by the build's own
  tokenizer (the reference encoder, special-token text as plain text, as message content is);
  an n-gram counts only inside one eval text and, on the build side, wholly inside the trained
  positions of one sequence of one row (never across rows, across a dpo pair's two sides, or
  over an untrained token); an rl prompt's whole prompt counts as trained. Matching is on ids,
  so it is case- and whitespace-exact, and a passage's first and last tokens may encode
  differently in context than alone (a shared passage matches from about n + 2 tokens). Every
  window is hashed at once (numpy: a polynomial hash of scrambled ids), looked up in the eval
  set's sorted hashes (a bitmap, then a bucket index), and every hit is confirmed on the ids.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shardprep.errors import BuildError, SourceError
from shardprep.store.columns import numpy_view
from shardprep.store.schemas import ShardSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from shardprep.encode.tokenize import BatchEncoder
    from shardprep.recipe import DecontaminateSpec
    from shardprep.store.storage import Output

DROP_DUPLICATE = "duplicate"
DROP_CONTAMINATED = "contaminated"
# What a unit's `contaminated` facts were matched on (facts without it, from a version that
# matched words, are taken again from the shard).
_MATCHED_BY = "token n-grams"
SAMPLES = 3  # rows kept as a sample per source and reason (as tasks.base.DROP_SAMPLES_PER_REASON)

# splitmix64's finaliser constants: each token id is scrambled before the polynomial hash, so no
# regular pattern of ids can make windows collide systematically (a collision would only cost a
# comparison: every hash hit is confirmed on the ids themselves).
_MIX = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xBF58476D1CE4E5B9),
    np.uint64(0x94D049BB133111EB),
)
_BASE = np.uint64(0xD6E8FEB86659FD93)  # odd: the polynomial hash's base, mod 2**64
_ENCODE_BATCH = 4096  # eval texts encoded per call


def _scramble(ids: np.ndarray) -> np.ndarray:
    x = ids.astype(np.uint64) + _MIX[0]
    x ^= x >> np.uint64(30)
    x *= _MIX[1]
    x ^= x >> np.uint64(27)
    x *= _MIX[2]
    x ^= x >> np.uint64(31)
    return x


_SCRAMBLED = np.zeros(0, dtype=np.uint64)  # _scramble of every id below its length


def _mixed(ids: np.ndarray) -> np.ndarray:
    """Each id scrambled: one gather from a table of the vocabulary's (made once per process)."""
    global _SCRAMBLED
    try:
        return _SCRAMBLED[ids]
    except IndexError:
        size = 1 << max(18, (int(ids.max()) + 1 - 1).bit_length())
        _SCRAMBLED = _scramble(np.arange(size, dtype=np.int64))
        return _SCRAMBLED[ids]


def window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """The 64-bit hash of every window ids[p : p + n] (len(ids) - n + 1 of them): the polynomial
    sum(x[p + k] * B**(n - 1 - k)) mod 2**64 of the scrambled ids x, built by doubling
    (H[a + b][p] = H[a][p] * B**b + H[b][p + a]): about 2 log2(n) passes over the flat ids."""
    total = len(ids)
    if total < n:
        return np.zeros(0, dtype=np.uint64)
    cur, width = _mixed(ids), 1  # H[width]
    out: np.ndarray | None = None
    done = 0  # out is H[done]
    left = n
    while True:
        if left & 1:
            if out is None:
                out, done = cur, width
            else:
                m = total - done - width + 1
                out = out[:m] * _power(width) + cur[done : done + m]
                done += width
        left >>= 1
        if not left:
            break
        m = len(cur) - width
        cur = cur[:m] * _power(width) + cur[width : width + m]
        width *= 2
    assert out is not None and len(out) == total - n + 1
    return out


def _power(k: int) -> np.uint64:
    return np.uint64(pow(int(_BASE), k, 1 << 64))


def window_starts(offsets: np.ndarray, n: int) -> np.ndarray:
    """The start p of every window [p, p + n) of flat ids that lies inside one span
    offsets[i]:offsets[i + 1] (offsets from 0)."""
    m = int(offsets[-1]) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    # the end of the span each position is in: a window fits when it ends by then
    ends = np.repeat(offsets[1:], np.diff(offsets))[:m]
    return np.flatnonzero(ends >= np.arange(n, m + n, dtype=np.int64))


@dataclass
class EvalFile:
    path: str
    ngrams: int = 0  # distinct n-grams it holds
    rows: int = 0  # build rows that share one with it
    samples: list[dict[str, Any]] = field(default_factory=list)


def _gather(flat: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """The n ids from each start of `flat`, one row each."""
    return flat[starts[:, None] + np.arange(n)]


def _distinct(flat: np.ndarray, n: int, h: np.ndarray, at: np.ndarray) -> tuple[Any, Any]:
    """(hashes, starts) of the distinct n-grams among those starting at `at` in `flat`, sorted
    by hash: of equal ones the first kept."""
    if not len(h):  # every text shorter than n
        return h, at
    order = np.argsort(h, kind="stable")
    h, at = h[order], at[order]
    same_hash = np.flatnonzero(h[1:] == h[:-1])
    same = np.zeros(max(len(h) - 1, 0), dtype=bool)
    same[same_hash] = (_gather(flat, at[same_hash + 1], n) == _gather(flat, at[same_hash], n)).all(
        axis=1
    )
    keep = np.concatenate([[True], ~same])
    # A hash shared by two different n-grams (a 64-bit collision): its run compared in full.
    for value in sorted(set(h[same_hash[~same[same_hash]]].tolist())):
        seen: set[bytes] = set()
        for i in np.flatnonzero(h == np.uint64(value)).tolist():
            gram = flat[at[i] : at[i] + n].tobytes()
            keep[i] = gram not in seen
            seen.add(gram)
    return h[keep], at[keep]


def eval_files(spec: DecontaminateSpec, base_dir: Path) -> list[list[str]]:
    """The files each entry of `decontaminate.paths` names (globs expanded): what the build
    loads and what its fingerprint takes the identities of."""
    from shardprep.sources.paths import expand_paths

    try:
        return [expand_paths(pattern, base_dir=base_dir) for pattern in spec.paths]
    except SourceError as exc:  # named as the eval file it is, not as a source
        err = BuildError(f"decontaminate.paths: {exc}")
        err.hint = "check `decontaminate.paths` in the recipe (relative to its folder)"
        raise err from exc


class EvalNgrams:
    """The token n-grams of the eval files' texts, encoded by the build's encoder: per distinct
    (n-gram, file), its hash (sorted), where its ids are (in the eval texts' ids, all in one
    array) and its file. A build row's trained windows are hashed and looked up at once; a hash
    found is confirmed on the ids."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.files: list[EvalFile] = []
        self.ids = np.zeros(0, dtype=np.int32)  # every eval text's ids, one after another
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.starts = np.zeros(0, dtype=np.int64)  # of each n-gram in `ids`
        self.file_of = np.zeros(0, dtype=np.int64)
        self.run = 0  # the most entries sharing one hash
        # A bitmap over a hash's top bits, packed (it stays in cache): most windows are ruled out
        # by one gather, and only the rest are looked up in `hashes`.
        self._shift = np.uint64(63)
        self._bitmap = np.zeros(1, dtype=np.uint8)
        # Where each bucket of hashes (by their top bits, about one entry a bucket) starts in
        # `hashes`: a window's hash is found by a step or two from there, not a binary search.
        self._bucket_shift = np.uint64(63)
        self._bucket = np.zeros(3, dtype=np.int64)

    @classmethod
    def load(cls, spec: DecontaminateSpec, base_dir: Path, encoder: BatchEncoder) -> EvalNgrams:
        """Every eval text encoded by `encoder` as message content is (special-token text as
        plain text). Its selection waits for a fastokens parse still running, as the units'
        first encode would (the reference twin meanwhile would cost some 50 times the CPU)."""
        from shardprep.sources.files import iter_source_rows

        n = spec.ngram
        out = cls(n)
        flat: list[np.ndarray] = []
        base = 0
        per_file: list[tuple[list[np.ndarray], list[np.ndarray]]] = []
        for paths in eval_files(spec, base_dir):
            for path in paths:
                out.files.append(EvalFile(path))
                hashes: list[np.ndarray] = []
                starts: list[np.ndarray] = []
                per_file.append((hashes, starts))
                texts: list[str] = []
                rows = iter(iter_source_rows(path))
                while True:
                    raw = next(rows, None)
                    if raw is not None:
                        where = f"{path} {raw.unit} {raw.line}"
                        if raw.error is not None:
                            raise BuildError(f"decontaminate: {where}: {raw.error.message}")
                        text = (raw.data or {}).get(spec.field)
                        if not isinstance(text, str):
                            raise BuildError(
                                f"decontaminate: {where}: field {spec.field!r} is "
                                f"{'missing' if text is None else type(text).__name__}, not text "
                                "(set decontaminate.field to the eval text's field)"
                            )
                        texts.append(text)
                    if texts and (raw is None or len(texts) == _ENCODE_BATCH):
                        ids, offsets = encoder.backend.encode_flat(texts, escaped=True)
                        at = window_starts(offsets, n)  # inside one eval text
                        hashes.append(window_hashes(ids, n)[at])
                        starts.append(at + base)
                        flat.append(ids)
                        base += len(ids)
                        texts = []
                    if raw is None:
                        break
        if not flat:
            return out
        out.ids = np.concatenate(flat).astype(np.int32, copy=False)
        hashes, starts, file_of = [], [], []
        for k, (file_hashes, file_starts) in enumerate(per_file):
            if file_hashes:
                fh, fs = _distinct(
                    out.ids, n, np.concatenate(file_hashes), np.concatenate(file_starts)
                )
                out.files[k].ngrams = len(fh)
                hashes.append(fh)
                starts.append(fs)
                file_of.append(np.full(len(fh), k, dtype=np.int64))
        h = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        if not len(h):  # no eval text as long as n: nothing to match (a warning says so)
            return out
        # each file's are sorted already
        order = np.argsort(h, kind="stable") if len(hashes) > 1 else np.arange(len(h))
        out.hashes = h[order]
        out.starts = np.concatenate(starts)[order]
        out.file_of = np.concatenate(file_of)[order]
        edges = np.flatnonzero(out.hashes[1:] != out.hashes[:-1]) + 1
        out.run = int(np.diff(edges, prepend=0, append=len(h)).max())
        bits = min(26, max(10, int(len(h) * 32).bit_length()))  # at most 1/32 of it set
        out._shift = np.uint64(64 - bits)
        top = out.hashes >> out._shift  # sorted
        byte = (top >> np.uint64(3)).astype(np.int64)
        first = np.flatnonzero(np.concatenate([[True], byte[1:] != byte[:-1]]))
        bit = np.left_shift(1, (top & np.uint64(7)).astype(np.uint8), dtype=np.uint8)
        out._bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
        out._bitmap[byte[first]] = np.bitwise_or.reduceat(bit, first)
        buckets = bits - 5
        out._bucket_shift = np.uint64(64 - buckets)
        out._bucket = np.searchsorted(
            out.hashes >> out._bucket_shift, np.arange((1 << buckets) + 1, dtype=np.uint64)
        )
        return out

    def match_flat(
        self, ids: np.ndarray, offsets: np.ndarray, trained: np.ndarray | None = None
    ) -> dict[int, int]:
        """{span i: bitmask of the eval files} for the spans ids[offsets[i]:offsets[i + 1]]
        (offsets from 0) holding an eval n-gram wholly in their trained positions (`trained`: a
        bool per id; None: every id). Spans without one are left out."""
        n = self.n
        if not len(self.hashes):
            return {}
        row_at = offsets
        if trained is not None:
            # The trained ids alone, each run of them inside a row a span of its own: hashed are
            # only the windows that can count.
            kept = np.flatnonzero(trained)
            row_at = np.searchsorted(kept, offsets)  # where each row's trained ids start
            cut = np.zeros(len(kept) + 1, dtype=bool)
            cut[1:-1] = np.diff(kept) != 1  # an untrained id between two trained ones
            cut[row_at] = True
            offsets = np.flatnonzero(cut)
            ids = ids[kept]
        h = window_hashes(ids, n)  # every window, then those in one span among the few left
        top = h >> self._shift
        maybe = (self._bitmap[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1
        at = np.flatnonzero(maybe)
        at = at[at + n <= offsets[np.searchsorted(offsets, at, side="right")]]
        h = h[at]
        lo = self._find(h)
        hit = lo >= 0
        at, lo, h = at[hit], lo[hit], h[hit]
        if not len(at):
            return {}
        # Confirmed on the ids, vectorized too (a heavily contaminated build hits in most
        # windows): each hit against every entry of its hash (one per file holding the n-gram,
        # or a true collision), `self.run` of them at most.
        windows = _gather(ids, at, n)
        rows = np.searchsorted(row_at, at, side="right") - 1  # a row without any: skipped
        pairs = []
        for d in range(self.run):
            j = lo + d
            ok = j < len(self.hashes)
            ok[ok] = self.hashes[j[ok]] == h[ok]
            ok[ok] = (_gather(self.ids, self.starts[j[ok]], n) == windows[ok]).all(axis=1)
            pairs.append(rows[ok] * len(self.files) + self.file_of[j[ok]])
        found: dict[int, int] = {}
        both = np.sort(np.concatenate(pairs))  # (np.unique hashes its input: slower here)
        for pair in both[np.concatenate([[True], both[1:] != both[:-1]])].tolist():
            row, k = divmod(pair, len(self.files))
            found[row] = found.get(row, 0) | 1 << k
        return found

    def _find(self, h: np.ndarray) -> np.ndarray:
        """The first index of each hash in `hashes`, -1 where it is not there."""
        b = (h >> self._bucket_shift).astype(np.int64)
        lo, end = self._bucket[b], self._bucket[b + 1]
        live = np.flatnonzero(lo < end)
        while len(live):  # step on while the entry is below the hash (in its bucket)
            below = self.hashes[lo[live]] < h[live]
            lo[live[below]] += 1
            live = live[below]
            live = live[lo[live] < end[live]]
        found = lo < end
        found[found] = self.hashes[lo[found]] == h[found]
        return np.where(found, lo, -1)

    def match_table(self, table: pa.Table, schema: ShardSchema) -> dict[int, int]:
        """{row: bitmask of the eval files} for the rows whose trained tokens hold an eval
        n-gram in one sequence (a dpo pair: its chosen or its rejected side; an rl prompt:
        anywhere in the prompt)."""
        found: dict[int, int] = {}
        for prefix in schema.sequences or ("",):
            if schema.sequences:
                col = table.column(f"{prefix}target_ids").combine_chunks()
                weights = table.column(f"{prefix}weights").combine_chunks()
                w_off = numpy_view(weights.offsets)
                trained = numpy_view(weights.values)[w_off[0] : w_off[-1]] != 0
            else:
                col = table.column(schema.token_columns[0]).combine_chunks()
                trained = None
            off = numpy_view(col.offsets).astype(np.int64)
            ids = numpy_view(col.values)[off[0] : off[-1]]
            for row, mask in self.match_flat(ids, off - off[0], trained).items():
                found[row] = found.get(row, 0) | mask
        return found


_LOADED: dict[str, EvalNgrams] = {}


def eval_ngrams(spec: DecontaminateSpec, base_dir: Path, encoder: BatchEncoder) -> EvalNgrams:
    """The eval n-grams, loaded once per process and tokenizer: the driver loads them before a
    pool forks, so its workers start with them in memory (spawned or Ray workers load their
    own). Every encoder a build may use gives the same ids, so any may have loaded them."""
    key = json.dumps([spec.model_dump(mode="json"), str(base_dir), encoder.tokenizer.sha256])
    if key not in _LOADED:
        _LOADED[key] = EvalNgrams.load(spec, base_dir, encoder)
    return _LOADED[key]


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def _unb64(text: str, dtype: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


@dataclass
class RowFacts:
    """What the driver's decision needs of a run of rows (a unit shard's), taken by its unit:
    the source, each row's source row, tokens and trained tokens, its digest (dedup: 16 bytes a
    row) and the eval files its trained tokens share an n-gram with ({row: bitmask of files})."""

    source: str
    rows: np.ndarray  # int64
    tokens: np.ndarray  # int32
    trained: np.ndarray  # int32
    # What the length histogram buckets: the longest of the row's sequences (a pair's longer side)
    longest: np.ndarray  # int32
    digests: bytes = b""
    contaminated: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of_table(
        cls,
        table: pa.Table,
        schema: ShardSchema,
        *,
        dedup: bool,
        evals: EvalNgrams | None,
        tokens: np.ndarray | None = None,
        trained: np.ndarray | None = None,
    ) -> RowFacts:
        """`tokens` / `trained`: as the writer was given them (else counted from the table)."""
        if tokens is None or trained is None:
            from shardprep.build.compact import per_row

            tokens, trained = per_row(table, schema)
        found: dict[int, int] = {}
        if evals is not None and table.num_rows:
            found = evals.match_table(table, schema)
        return cls(
            # A unit reads one source.
            source=table.column("source")[0].as_py() if table.num_rows else "",
            rows=numpy_view(table.column("source_row").combine_chunks()).astype(np.int64),
            tokens=np.asarray(tokens, dtype=np.int32),
            trained=np.asarray(trained, dtype=np.int32),
            longest=np.max(
                [numpy_view(table.column(c).combine_chunks()) for c in schema.length_columns],
                axis=0,
            ).astype(np.int32),
            digests=b"".join(_digests(table, schema)) if dedup else b"",
            contaminated=found,
        )

    @classmethod
    def concat(cls, parts: list[RowFacts]) -> RowFacts:
        offsets = np.cumsum([0] + [len(p.rows) for p in parts])
        return cls(
            source=next((p.source for p in parts if p.source), ""),
            rows=np.concatenate([p.rows for p in parts]),
            tokens=np.concatenate([p.tokens for p in parts]),
            trained=np.concatenate([p.trained for p in parts]),
            longest=np.concatenate([p.longest for p in parts]),
            digests=b"".join(p.digests for p in parts),
            contaminated={
                int(o) + i: m
                for p, o in zip(parts, offsets, strict=False)
                for i, m in p.contaminated.items()
            },
        )

    def slice(self, a: int, b: int) -> RowFacts:
        return RowFacts(
            self.source,
            self.rows[a:b],
            self.tokens[a:b],
            self.trained[a:b],
            self.longest[a:b],
            self.digests[16 * a : 16 * b],
            {i - a: m for i, m in self.contaminated.items() if a <= i < b},
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: it travels in the unit's marker, in its shard's entry (`filter`)."""
        return {
            "source": self.source,
            "source_rows": _b64(self.rows),
            "tokens": _b64(self.tokens),
            "trained": _b64(self.trained),
            "longest": _b64(self.longest),
            "digests": base64.b64encode(self.digests).decode("ascii"),
            "contaminated": {str(i): m for i, m in self.contaminated.items()},
            "contaminated_by": _MATCHED_BY,
        }

    @classmethod
    def from_json(cls, data: Any, *, rows: int, dedup: bool) -> RowFacts | None:
        """The facts a unit recorded for a shard of `rows` rows; None when there are none or
        they are not whole (a marker of another version): then they are taken from the shard."""
        try:
            facts = cls(
                source=data["source"],
                rows=_unb64(data["source_rows"], np.int64),
                tokens=_unb64(data["tokens"], np.int32),
                trained=_unb64(data["trained"], np.int32),
                longest=_unb64(data["longest"], np.int32),
                digests=base64.b64decode(data["digests"]),
                contaminated={int(i): int(m) for i, m in data["contaminated"].items()},
            )
            if data["contaminated_by"] != _MATCHED_BY:  # a unit of a version matching words
                return None
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        sizes = {len(facts.rows), len(facts.tokens), len(facts.trained), len(facts.longest)}
        if sizes != {rows} or (dedup and len(facts.digests) != 16 * rows):
            return None
        if any(not 0 <= i < rows for i in facts.contaminated):
            return None
        return facts


@dataclass
class RowDrops:
    """What the pass dropped: a keep mask per unit shard with drops, and the counts, tokens and
    samples the manifest subtracts and adds."""

    keep: dict[str, np.ndarray] = field(default_factory=dict)
    # source -> reason -> rows; and the examples, tokens, trained tokens and length buckets lost
    by_source: dict[str, Counter[str]] = field(default_factory=dict)
    tokens: Counter[str] = field(default_factory=Counter)
    trained: Counter[str] = field(default_factory=Counter)
    split_rows: Counter[str] = field(default_factory=Counter)
    split_tokens: Counter[str] = field(default_factory=Counter)
    split_trained: Counter[str] = field(default_factory=Counter)
    length_log2: Counter[int] = field(default_factory=Counter)
    samples: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    eval_files: list[EvalFile] = field(default_factory=list)

    def drop(
        self,
        reason: str,
        source: str,
        row: int,
        split: str,
        tokens: int,
        trained: int,
        longest: int,
        **about: Any,
    ) -> None:
        self.by_source.setdefault(source, Counter())[reason] += 1
        self.tokens[source] += tokens
        self.trained[source] += trained
        self.split_rows[split] += 1
        self.split_tokens[split] += tokens
        self.split_trained[split] += trained
        self.length_log2[max(0, (longest - 1).bit_length())] += 1  # as count_example buckets
        kept = self.samples.setdefault(source, {}).setdefault(reason, [])
        if len(kept) < SAMPLES:
            kept.append({"row": row, "split": split, **about})

    def drop_many(
        self,
        reason: str,
        source: str,
        split: str,
        rows: np.ndarray,
        tokens: np.ndarray,
        trained: np.ndarray,
        longest: np.ndarray,
        *,
        about: list[dict[str, Any]],
    ) -> None:
        """`drop` of many rows of one source and split at once; `about`: the sample fields of
        the first rows (as many as the samples may still take)."""
        self.by_source.setdefault(source, Counter())[reason] += len(rows)
        for counter, key, values in (
            (self.tokens, source, tokens),
            (self.trained, source, trained),
            (self.split_tokens, split, tokens),
            (self.split_trained, split, trained),
        ):
            counter[key] += int(values.sum(dtype=np.int64))
        self.split_rows[split] += len(rows)
        # (longest - 1).bit_length(), as drop buckets: frexp's exponent of a positive integer
        buckets = np.frexp(np.abs(longest.astype(np.int64) - 1))[1]
        for b, c in zip(*np.unique(buckets, return_counts=True), strict=True):
            self.length_log2[int(b)] += int(c)
        kept = self.samples.setdefault(source, {}).setdefault(reason, [])
        for row, extra in zip(rows.tolist(), about, strict=False):
            if len(kept) < SAMPLES:
                kept.append({"row": row, "split": split, **extra})


def _digests(table: pa.Table, schema: ShardSchema) -> list[bytes]:
    """A 128-bit digest per row of its token columns (every sequence: ids and weights).

    A sequence's targets are its inputs shifted by one (tinker's datum, `make_examples`), so of
    `target_ids` only the last token is hashed: with each column's length, in the row's first
    block (where one column ends and the next starts)."""
    views, offsets, heads = [], [], []
    for name in schema.token_columns:
        arr = table.column(name).combine_chunks()
        values = numpy_view(arr.values)
        off = numpy_view(arr.offsets).astype(np.int64)
        heads.append(np.diff(off))
        prefix = name.removesuffix("target_ids")
        if name != prefix and f"{prefix}input_ids" in schema.token_columns:
            # the row's last token (-1 for an empty row: none is ever written)
            last = np.where(off[1:] > off[:-1], values[np.maximum(off[1:] - 1, 0)], -1)
            heads.append(last.astype(np.int64))
            continue
        views.append(np.ascontiguousarray(values).data.cast("B"))
        offsets.append((off * values.itemsize).tolist())  # byte offsets, as Python ints
    head = np.ascontiguousarray(np.stack(heads, axis=1), dtype=np.int64).data.cast("B")
    width = 8 * len(heads)
    blake = hashlib.blake2b
    out = []
    for i in range(table.num_rows):
        h = blake(head[i * width : (i + 1) * width], digest_size=16)
        for view, off in zip(views, offsets, strict=True):
            h.update(view[off[i] : off[i + 1]])
        out.append(h.digest())
    return out


def warm(spec: DecontaminateSpec, base_dir: Path, encoder: BatchEncoder) -> None:
    """Load the eval n-grams in this process: the driver does before a pool forks, so its
    workers start with them."""
    eval_ngrams(spec, base_dir, encoder)


def find_drops(
    output: Output,
    manifest: dict[str, Any],
    schema: ShardSchema,
    *,
    dedup: bool,
    evals: EvalNgrams | None,
    read: Any,
) -> RowDrops:
    """The decision, over the manifest's unit shards: test split first, each split in unit order.

    Each shard's `filter` facts are its unit's (RowFacts); a shard without them (never, for a
    build this version made) has them taken here from the shard itself (`read(output, shard)`:
    the checked table, compact.read_unit_shard)."""
    # Counted afresh per build (the eval n-grams are cached per process).
    files = [EvalFile(ev.path, ev.ngrams) for ev in evals.files] if evals is not None else []
    drops = RowDrops(eval_files=files)
    seen: dict[bytes, tuple[str, int, str]] = {}
    order = sorted(manifest["splits"], key=lambda s: s != "test")
    for split in order:
        for shard in manifest["splits"][split]["shards"]:
            if not shard["rows"]:
                continue
            facts = RowFacts.from_json(shard.get("filter"), rows=shard["rows"], dedup=dedup)
            if facts is None:  # none recorded, or not readable as this version records them
                facts = RowFacts.of_table(read(output, shard), schema, dedup=dedup, evals=evals)
            if not dedup and not facts.contaminated:
                continue
            src, rows, contaminated, digests = (
                facts.source,
                facts.rows,
                facts.contaminated,
                facts.digests,
            )
            tokens, trained, longest = facts.tokens, facts.trained, facts.longest
            keep = np.ones(len(rows), dtype=bool)
            if contaminated:  # at once: a leaky eval set may contaminate most rows
                at = sorted(contaminated)
                masks = [contaminated[i] for i in at]
                keep[at] = False
                for k, ev in enumerate(files):
                    mine = [i for i, m in zip(at, masks, strict=True) if m >> k & 1]
                    ev.rows += len(mine)
                    for i in mine[: max(0, SAMPLES - len(ev.samples))]:
                        ev.samples.append({"source": src, "row": int(rows[i]), "split": split})
                taken = drops.samples.get(src, {}).get(DROP_CONTAMINATED, [])
                drops.drop_many(
                    DROP_CONTAMINATED,
                    src,
                    split,
                    *(a[at] for a in (rows, tokens, trained, longest)),
                    # a sample names the first eval file the row shares an n-gram with
                    about=[
                        {"eval_file": files[(m & -m).bit_length() - 1].path}
                        for m in masks[: max(0, SAMPLES - len(taken))]
                    ],
                )
            if dedup:
                row_ids = rows.tolist()
                for i in np.flatnonzero(keep).tolist():
                    row = row_ids[i]
                    first = seen.setdefault(digests[16 * i : 16 * i + 16], (src, row, split))
                    if first != (src, row, split):
                        keep[i] = False
                        of = {"source": first[0], "row": first[1], "split": first[2]}
                        cost = (split, int(tokens[i]), int(trained[i]), int(longest[i]))
                        drops.drop(DROP_DUPLICATE, src, row, *cost, duplicate_of=of)
            if not keep.all():
                drops.keep[shard["path"]] = keep
    return drops


def eval_warnings(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """A warning per eval file that gave no n-gram (empty, or every text shorter than `ngram`
    tokens): the build is checked against nothing from it, which a user should not assume away."""
    return [
        {
            "code": "eval_file_without_ngrams",
            "message": f"decontaminate: {ev['path']} holds no n-gram of `ngram` tokens (empty, or "
            "every text shorter): no row is checked against it",
            "path": ev["path"],
        }
        for ev in manifest.get("decontamination") or []
        if not ev["ngrams"]
    ]


def apply_drops(manifest: dict[str, Any], drops: RowDrops) -> None:
    """Count the pass's drops in the manifest built from the unit results (before compaction,
    which leaves those rows out): per source, per split, in the totals and the histogram."""
    for s in manifest["sources"]:
        lost = drops.by_source.get(s["name"])
        if not lost:
            continue
        n = sum(lost.values())
        s["examples"] -= n
        s["tokens"] -= drops.tokens[s["name"]]
        s["trained_tokens"] -= drops.trained[s["name"]]
        s["dropped"] += n
        s["dropped_by_reason"] = dict(sorted((Counter(s["dropped_by_reason"]) + lost).items()))
        samples = s.setdefault("drop_samples", {})
        for reason, rows in drops.samples.get(s["name"], {}).items():
            samples[reason] = rows
        s["drop_samples"] = dict(sorted(samples.items()))
    for split, info in manifest["splits"].items():
        info["rows"] -= drops.split_rows[split]
        info["tokens"] -= drops.split_tokens[split]
        info["trained_tokens"] -= drops.split_trained[split]
    st = manifest["stats"]
    total: Counter[str] = Counter()
    for lost in drops.by_source.values():
        total.update(lost)
    st["dropped"] = dict(sorted((Counter(st["dropped"]) + total).items()))
    st["examples"] = sum(info["rows"] for info in manifest["splits"].values())
    hist = st["length_histogram"]
    counts = list(hist["counts"])
    for bucket, n in drops.length_log2.items():
        counts[bucket] -= n
    while counts and not counts[-1]:
        counts.pop()
    st["length_histogram"] = {"edges": hist["edges"][: len(counts)], "counts": counts}
    if drops.eval_files:
        manifest["decontamination"] = [
            {"path": ev.path, "ngrams": ev.ngrams, "rows": ev.rows, "samples": ev.samples}
            for ev in drops.eval_files
        ]
