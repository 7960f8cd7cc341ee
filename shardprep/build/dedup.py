"""Duplicates and eval leaks: `dedup: exact` and `decontaminate:`, decided once at commit.

Work units run in parallel, each seeing its own rows only, so a rule that compares rows across the
build cannot be decided inside a unit. The per-row work is done there (in parallel): each unit
reads back its own unit shards and records, per shard, each row's digest, tokens and trained
tokens, and which eval files its trained text shares an n-gram with (`RowFacts`, in the
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
- `decontaminate`: a row whose trained text (its trained target tokens decoded; an rl prompt's
  whole prompt) shares a word n-gram (lowercased `\\w+` words) with an eval file's `field` is
  contaminated. N-grams are matched by a rolling hash over word ids, every hit confirmed on the
  words themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shardprep.errors import BuildError
from shardprep.store.columns import numpy_view
from shardprep.store.schemas import ShardSchema

if TYPE_CHECKING:
    import pyarrow as pa

    from shardprep.recipe import DecontaminateSpec
    from shardprep.store.storage import Output
    from shardprep.tokenizer import LoadedTokenizer

DROP_DUPLICATE = "duplicate"
DROP_CONTAMINATED = "contaminated"
SAMPLES = 3  # rows kept as a sample per source and reason (as tasks.base.DROP_SAMPLES_PER_REASON)

_WORD = re.compile(r"\w+")
_WORD_OR_END = re.compile(r"\w+|\0")
_END = -2  # the NUL ending a text, as match_joined numbers it (an unknown word is -1)


class _Lookup(dict[str, int]):
    """Word -> id, -1 for a word no eval file has (a dict miss without a Python call per hit)."""

    def __missing__(self, word: str) -> int:
        return _END if word == "\0" else -1


_MASK = (1 << 64) - 1
_BASE = np.uint64(0x9E3779B97F4A7C15)  # an odd multiplier: the rolling hash's base


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class EvalFile:
    path: str
    ngrams: int = 0  # distinct n-grams it holds
    rows: int = 0  # build rows that share one with it
    samples: list[dict[str, Any]] = field(default_factory=list)


class EvalNgrams:
    """The word n-grams of the eval files: a sorted array of their rolling hashes (the fast
    test) and, per n-gram, the files that hold it (the exact one)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.vocab: dict[str, int] = {}
        self._lookup = _Lookup()  # the vocabulary as match_joined reads it (filled by load)
        self.owners: dict[tuple[int, ...], int] = {}  # n-gram of word ids -> bitmask of files
        self.files: list[EvalFile] = []
        self.hashes = np.zeros(0, dtype=np.uint64)
        self._pow = _BASE ** np.arange(n - 1, -1, -1, dtype=np.uint64)

    @classmethod
    def load(cls, spec: DecontaminateSpec, base_dir: Path) -> EvalNgrams:
        from shardprep.sources.files import iter_source_rows
        from shardprep.sources.paths import expand_paths

        out = cls(spec.ngram)
        hashes: list[np.ndarray] = []
        for pattern in spec.paths:
            for path in expand_paths(pattern, base_dir=base_dir):
                bit = 1 << len(out.files)
                ev = EvalFile(path)
                out.files.append(ev)
                seen: set[tuple[int, ...]] = set()
                for raw in iter_source_rows(path):
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
                    ids = [out.vocab.setdefault(w, len(out.vocab)) for w in words(text)]
                    for i in range(len(ids) - spec.ngram + 1):
                        seen.add(tuple(ids[i : i + spec.ngram]))
                for gram in seen:
                    out.owners[gram] = out.owners.get(gram, 0) | bit
                ev.ngrams = len(seen)
                if seen:
                    hashes.append(out._hash(np.array(list(seen), dtype=np.uint64)))
        if hashes:
            out.hashes = np.unique(np.concatenate(hashes))
        out._lookup.update(out.vocab)
        return out

    def _hash(self, windows: np.ndarray) -> np.ndarray:
        """Rolling hashes of n-gram windows (rows of word ids), wrapping mod 2**64."""
        with np.errstate(over="ignore"):
            return (windows.astype(np.uint64) * self._pow).sum(axis=1, dtype=np.uint64)

    def match(self, text: str) -> int:
        """Bitmask of the eval files sharing an n-gram with `text` (0: none)."""
        return self.match_many([text]).get(0, 0)

    def match_many(self, texts: list[str]) -> dict[int, int]:
        """{i: bitmask of the eval files sharing an n-gram with texts[i]} for the texts that
        share one: every text's words in one array, each followed by an unknown word (-1) so
        that no window spans two texts, hashed and searched at once."""
        if not len(self.hashes) or not texts:
            return {}
        return self.match_joined("\0".join(t.replace("\0", " ") for t in texts))

    def match_joined(self, joined: str) -> dict[int, int]:
        """`match_many` of the texts `joined` holds, a NUL after each but the last (none inside)."""
        n = self.n
        if not len(self.hashes):
            return {}
        # One lowercase and one regex pass over all texts; a NUL is not a word character: it
        # comes out as its own item, an unknown word ending each text.
        items = _WORD_OR_END.findall(joined.lower() + "\0")
        ids = np.fromiter(map(self._lookup.__getitem__, items), dtype=np.int64, count=len(items))
        starts = np.concatenate([[0], np.flatnonzero(ids == _END) + 1])
        if len(ids) < n:
            return {}
        windows = np.lib.stride_tricks.sliding_window_view(ids, n)
        known = np.flatnonzero(windows.min(axis=1) >= 0)  # an unknown word or an end: no match
        if not len(known):
            return {}
        hashes = self._hash(windows[known])
        # self.hashes is sorted and unique: a binary search per window (np.isin would sort the
        # eval set again on every call)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        found: dict[int, int] = {}
        for w in known[self.hashes[at] == hashes].tolist():
            owners = self.owners.get(tuple(ids[w : w + n].tolist()), 0)  # the words themselves
            if owners:
                row = int(np.searchsorted(starts, w, side="right")) - 1
                found[row] = found.get(row, 0) | owners
        return found


_LOADED: dict[str, EvalNgrams] = {}


def eval_ngrams(spec: DecontaminateSpec, base_dir: Path) -> EvalNgrams:
    """The eval n-grams, loaded once per process: the driver loads them before a pool forks, so
    its workers start with them in memory (spawned or Ray workers load their own)."""
    key = json.dumps([spec.model_dump(mode="json"), str(base_dir)])
    if key not in _LOADED:
        _LOADED[key] = EvalNgrams.load(spec, base_dir)
    return _LOADED[key]


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def _unb64(text: str, dtype: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


@dataclass
class RowFacts:
    """What the driver's decision needs of a run of rows (a unit shard's), taken by its unit:
    the source, each row's source row, tokens and trained tokens, its digest (dedup: 16 bytes a
    row) and the eval files its trained text shares an n-gram with ({row: bitmask of files})."""

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
        tokenizer: LoadedTokenizer | None,
        tokens: np.ndarray | None = None,
        trained: np.ndarray | None = None,
    ) -> RowFacts:
        """`tokens` / `trained`: as the writer was given them (else counted from the table)."""
        if tokens is None or trained is None:
            from shardprep.build.compact import per_row

            tokens, trained = per_row(table, schema)
        found: dict[int, int] = {}
        if evals is not None and tokenizer is not None and table.num_rows:
            found = evals.match_joined(trained_text(table, schema, tokenizer))
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


_BYTE_TABLES: dict[str, Any] = {}


def _byte_table(tok: LoadedTokenizer) -> tuple[np.ndarray, np.ndarray] | None:
    """For a tokenizer whose decoder is plain ByteLevel: each id's bytes as decoding writes them
    (a special token none, a NUL byte a space), flat with offsets, and a last entry holding one
    NUL byte (the text separator); None for any other decoder (then `decode_batch` serves)."""
    if tok.sha256 in _BYTE_TABLES:
        return _BYTE_TABLES[tok.sha256]  # type: ignore[no-any-return]
    table = None
    if type(tok.tokenizer.decoder).__name__ == "ByteLevel":
        # GPT-2's byte <-> printable character map, inverted (a character outside it: its UTF-8).
        keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
        moved = [b for b in range(256) if b not in set(keep)]
        to_byte = {chr(c): bytes([c]) for c in keep}
        to_byte.update({chr(256 + k): bytes([b]) for k, b in enumerate(moved)})
        special = {i for i, t in tok.tokenizer.get_added_tokens_decoder().items() if t.special}
        size = tok.vocab_size
        parts = [b""] * (size + 1)
        get = to_byte.get
        for text, i in tok.tokenizer.get_vocab(with_added_tokens=True).items():
            if i < size and i not in special:
                parts[i] = b"".join([get(c) or c.encode("utf-8") for c in text])
        parts[size] = b"\0"
        blob = b"".join(parts).replace(b"\0", b" ")[:-1] + b"\0"  # NUL in a token: a space
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        table = (np.frombuffer(blob, dtype=np.uint8), np.concatenate([[0], np.cumsum(lengths)]))
    _BYTE_TABLES[tok.sha256] = table
    return table


def warm(spec: DecontaminateSpec, base_dir: Path, tok: LoadedTokenizer) -> None:
    """Load what decontaminating needs (eval n-grams, the tokenizer's byte table) in this
    process: the driver does before a pool forks, so its workers start with them."""
    eval_ngrams(spec, base_dir)
    _byte_table(tok)


def trained_text(table: pa.Table, schema: ShardSchema, tok: LoadedTokenizer) -> str:
    """Every row's trained text, a NUL after each but the last (none inside a text): the ids
    gathered through the tokenizer's byte table and decoded once (as `decode_batch` with
    special tokens skipped, a NUL written as a space; `decode_batch` itself where the decoder is
    not plain ByteLevel)."""
    bt = _byte_table(tok)
    if bt is None:
        ids, cut = _trained_ids(table, schema)
        rows = ids.tolist()
        texts = tok.tokenizer.decode_batch(
            [rows[a:b] for a, b in zip(cut[:-1], cut[1:], strict=True)], skip_special_tokens=True
        )
        return "\0".join(t.replace("\0", " ") for t in texts)
    data, offsets = bt
    ids, _ = _trained_ids(table, schema, sep=len(offsets) - 2)  # the separator's id
    starts, lengths = offsets[ids], offsets[ids + 1] - offsets[ids]
    at = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    at += np.arange(int(lengths.sum()), dtype=np.int64)
    return data[at].tobytes().decode("utf-8", errors="replace")


def _trained_ids(
    table: pa.Table, schema: ShardSchema, *, sep: int | None = None
) -> tuple[np.ndarray, list[int]]:
    """The token ids each row trains (every sequence's weighted targets, in order; an rl
    prompt's ids), all rows in one array with each row's start (and the end); with `sep`, that
    id between two rows."""
    parts, owners = [], []
    n = table.num_rows
    width = max(len(schema.sequences), 1) + 1  # a row's sequences, then its separator
    for k, prefix in enumerate(schema.sequences or ("",)):
        if schema.sequences:
            targets = table.column(f"{prefix}target_ids").combine_chunks()
            weights = table.column(f"{prefix}weights").combine_chunks()
            w_off = numpy_view(weights.offsets)
            trained = numpy_view(weights.values)[w_off[0] : w_off[-1]] != 0
        else:
            targets = table.column(schema.token_columns[0]).combine_chunks()
            trained = None
        t_off = numpy_view(targets.offsets)
        values = numpy_view(targets.values)[t_off[0] : t_off[-1]].astype(np.int64)
        row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(t_off))
        if trained is not None:
            values, row_of = values[trained], row_of[trained]
        parts.append(values)
        owners.append(row_of * width + k)
    if sep is not None and n > 1:
        parts.append(np.full(n - 1, sep, dtype=np.int64))
        owners.append(np.arange(n - 1, dtype=np.int64) * width + width - 1)
    ids, keys = np.concatenate(parts), np.concatenate(owners)
    order = np.argsort(keys, kind="stable")  # row by row, each row's sequences in order
    counts = np.bincount(keys[order] // width, minlength=n) if sep is None else np.zeros(0)
    return ids[order], [0, *np.cumsum(counts).tolist()]


def find_drops(
    output: Output,
    manifest: dict[str, Any],
    schema: ShardSchema,
    *,
    dedup: bool,
    evals: EvalNgrams | None,
    tokenizer: LoadedTokenizer | None,
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
                facts = RowFacts.of_table(
                    read(output, shard), schema, dedup=dedup, evals=evals, tokenizer=tokenizer
                )
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
            for i in range(len(rows)):
                row = int(rows[i])
                cost = (split, int(tokens[i]), int(trained[i]), int(longest[i]))
                found = contaminated.get(i, 0)
                if found:
                    keep[i] = False
                    names = []
                    for k, ev in enumerate(files):
                        if found >> k & 1:
                            ev.rows += 1
                            names.append(ev.path)
                            if len(ev.samples) < SAMPLES:
                                ev.samples.append({"source": src, "row": row, "split": split})
                    drops.drop(DROP_CONTAMINATED, src, row, *cost, eval_file=names[0])
                    continue
                if dedup:
                    first = seen.setdefault(digests[16 * i : 16 * i + 16], (src, row, split))
                    if first != (src, row, split):
                        keep[i] = False
                        of = {"source": first[0], "row": first[1], "split": first[2]}
                        drops.drop(DROP_DUPLICATE, src, row, *cost, duplicate_of=of)
            if not keep.all():
                drops.keep[shard["path"]] = keep
    return drops


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
