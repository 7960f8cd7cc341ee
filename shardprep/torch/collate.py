"""Collate functions: rows of a ShardDataset into padded, packed or paired tensors.

Each is a small class rather than a closure so DataLoader workers can pickle it. Work is done in
numpy on whole rows (one slice copy per row, never a Python loop over tokens), then wrapped with
torch.from_numpy without another copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

# Targets at padded positions: cross_entropy's default ignore_index, so an unweighted loss ignores
# them too. Their weight is 0 either way.
IGNORE_INDEX = -100


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def _pad_rows(
    rows: Sequence[np.ndarray], width: int, fill: float, dtype: Any, out: np.ndarray | None = None
) -> np.ndarray:
    if out is None:
        out = np.empty((len(rows), width), dtype=dtype)
    out.fill(fill)
    for r, values in enumerate(rows):
        out[r, : len(values)] = values
    return out


_TORCH_DTYPES = {
    np.dtype(np.int64): torch.int64,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.int32): torch.int32,
}


def _allocate(specs: dict[str, tuple[tuple[int, ...], Any]]) -> dict[str, torch.Tensor]:
    """All of a batch's tensors as views of one buffer, in shared memory inside a worker.

    A worker's batch reaches the main process as one shared-memory segment per storage, and each
    segment costs a file, a descriptor and fresh page faults: one buffer instead of five or six
    made worker throughput about 1.5x in bench/bench_reader.py.
    """
    sizes = {k: int(np.prod(shape)) * np.dtype(dt).itemsize for k, (shape, dt) in specs.items()}
    total = sum(-(-n // 8) * 8 for n in sizes.values())  # 8-byte aligned views
    buf = torch.empty(total, dtype=torch.uint8)
    if total and get_worker_info() is not None:
        buf.share_memory_()
    out, offset = {}, 0
    for k, (shape, dt) in specs.items():
        out[k] = buf[offset : offset + sizes[k]].view(_TORCH_DTYPES[np.dtype(dt)]).view(shape)
        offset += -(-sizes[k] // 8) * 8
    return out


def segment_positions(segment_lengths: np.ndarray) -> np.ndarray:
    """0..len-1 for each segment, concatenated: arange minus each token's segment start."""
    segment_lengths = np.asarray(segment_lengths, dtype=np.int64)
    total = int(segment_lengths.sum())
    starts = np.concatenate([[0], np.cumsum(segment_lengths)[:-1]]).astype(np.int64)
    return np.arange(total, dtype=np.int64) - np.repeat(starts, segment_lengths)


def document_segments(length: int, doc_offsets: np.ndarray | None) -> np.ndarray:
    """Lengths of the documents inside one row (the whole row when it has no doc_offsets)."""
    if doc_offsets is None or len(doc_offsets) == 0:
        return np.array([length], dtype=np.int64)
    starts = np.asarray(doc_offsets, dtype=np.int64)
    starts = starts[(starts > 0) & (starts < length)]
    bounds = np.concatenate([[0], starts, [length]])
    return np.diff(bounds)


def _index_tensor(rows: Sequence[dict[str, Any]]) -> torch.Tensor:
    return torch.tensor([int(r.get("index", -1)) for r in rows], dtype=torch.long)


class PadCollate:
    """Rows -> [B, L] tensors, L = longest row rounded up to `pad_to_multiple_of` (or `fixed_length`).

    Output: input_ids, target_ids (IGNORE_INDEX where padded), weights (0 where padded),
    attention_mask (1 on real tokens), lengths, index; plus position_ids restarting per document
    when rows carry doc_offsets (pretrain/1 blocks).
    """

    def __init__(
        self,
        pad_id: int | None = 0,
        *,
        pad_to_multiple_of: int = 1,
        fixed_length: int | None = None,
        target_pad_id: int = IGNORE_INDEX,
    ) -> None:
        self.pad_id = 0 if pad_id is None else int(pad_id)
        self.pad_to_multiple_of = max(1, int(pad_to_multiple_of))
        self.fixed_length = fixed_length
        self.target_pad_id = target_pad_id

    def _width(self, longest: int) -> int:
        if self.fixed_length is not None:
            if longest > self.fixed_length:
                raise ValueError(
                    f"a row of {longest} tokens does not fit fixed_length={self.fixed_length}"
                )
            return self.fixed_length
        return _round_up(longest, self.pad_to_multiple_of)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [r["input_ids"] for r in rows]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        width = self._width(int(lengths.max()) if len(lengths) else 0)
        docs = bool(rows) and "doc_offsets" in rows[0]
        b = len(rows)
        specs: dict[str, tuple[tuple[int, ...], Any]] = {
            "input_ids": ((b, width), np.int64),
            "target_ids": ((b, width), np.int64),
            "weights": ((b, width), np.float32),
            "attention_mask": ((b, width), np.int64),
            "lengths": ((b,), np.int64),
            "index": ((b,), np.int64),
        }
        if docs:
            specs["position_ids"] = ((b, width), np.int64)
        batch = _allocate(specs)
        _pad_rows(ids, width, self.pad_id, np.int64, batch["input_ids"].numpy())
        _pad_rows(
            [r["target_ids"] for r in rows],
            width,
            self.target_pad_id,
            np.int64,
            batch["target_ids"].numpy(),
        )
        _pad_rows([r["weights"] for r in rows], width, 0.0, np.float32, batch["weights"].numpy())
        np.less(
            np.arange(width)[None, :],
            lengths[:, None],
            out=batch["attention_mask"].numpy(),
            casting="unsafe",
        )
        batch["lengths"].numpy()[:] = lengths
        batch["index"].numpy()[:] = [int(r.get("index", -1)) for r in rows]
        if docs:
            positions = [
                segment_positions(document_segments(len(x), r["doc_offsets"]))
                for x, r in zip(ids, rows, strict=True)
            ]
            _pad_rows(positions, width, 0, np.int64, batch["position_ids"].numpy())
        return batch


class PackCollate:
    """All rows of the batch concatenated into one [1, T] row for varlen (flash-attention) kernels.

    position_ids restart at 0 for every example, and for every document inside a pretrain/1 block;
    cu_seqlens (int32, cumulative segment ends starting at 0) and max_seqlen describe the segments.
    weights stay exactly as each example had them; `example_ids` maps each token to its row in the
    batch (-1 on padding) for per-example loss normalisation. When `pad_to_multiple_of` adds
    padding, it is one extra segment (weight 0) so cu_seqlens still ends at T.
    """

    def __init__(
        self,
        pad_id: int | None = 0,
        *,
        pad_to_multiple_of: int = 1,
        target_pad_id: int = IGNORE_INDEX,
    ) -> None:
        self.pad_id = 0 if pad_id is None else int(pad_id)
        self.pad_to_multiple_of = max(1, int(pad_to_multiple_of))
        self.target_pad_id = target_pad_id

    def __call__(
        self, rows: Sequence[dict[str, Any]]
    ) -> dict[str, Any]:  # tensors + max_seqlen: int
        lengths = np.fromiter((len(r["input_ids"]) for r in rows), dtype=np.int64, count=len(rows))
        used = int(lengths.sum())
        total = _round_up(used, self.pad_to_multiple_of)
        pad = total - used
        segments = [
            document_segments(int(n), r.get("doc_offsets"))
            for n, r in zip(lengths, rows, strict=True)
        ]
        if pad:
            segments.append(np.array([pad], dtype=np.int64))
        seg = np.concatenate(segments) if segments else np.zeros(0, dtype=np.int64)

        def cat(key: str, fill: float, dtype: Any) -> np.ndarray:
            parts = [np.asarray(r[key]) for r in rows]
            if pad:
                parts.append(np.full(pad, fill))
            return (
                np.concatenate(parts).astype(dtype, copy=False)[None, :]
                if parts
                else np.zeros((1, 0), dtype)
            )

        cu = np.zeros(len(seg) + 1, dtype=np.int32)
        np.cumsum(seg, out=cu[1:])
        example_ids = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        if pad:
            example_ids = np.concatenate([example_ids, np.full(pad, -1, dtype=np.int64)])
        return {
            "input_ids": torch.from_numpy(cat("input_ids", self.pad_id, np.int64)),
            "target_ids": torch.from_numpy(cat("target_ids", self.target_pad_id, np.int64)),
            "weights": torch.from_numpy(cat("weights", 0.0, np.float32)),
            "position_ids": torch.from_numpy(segment_positions(seg)[None, :]),
            "example_ids": torch.from_numpy(example_ids[None, :]),
            "cu_seqlens": torch.from_numpy(cu),
            "max_seqlen": int(seg.max()) if len(seg) else 0,
            "lengths": torch.from_numpy(lengths),
            "index": _index_tensor(rows),
        }


class PairCollate:
    """Preference pairs (dpo/1 rows) -> one [2B, L] batch: rows 0..B-1 chosen, B..2B-1 rejected.

    Row i and row i + B are always the two sides of the same pair, so one forward pass scores both
    and `logp[:B] - logp[B:]` is per pair. Keys as PadCollate, plus `pairs` = B.
    """

    def __init__(
        self,
        pad_id: int | None = 0,
        *,
        pad_to_multiple_of: int = 1,
        target_pad_id: int = IGNORE_INDEX,
    ) -> None:
        self.pad = PadCollate(
            pad_id, pad_to_multiple_of=pad_to_multiple_of, target_pad_id=target_pad_id
        )

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sides = [
            {
                "input_ids": r[f"{side}_input_ids"],
                "target_ids": r[f"{side}_target_ids"],
                "weights": r[f"{side}_weights"],
                "index": r.get("index", -1),
            }
            for side in ("chosen", "rejected")
            for r in rows
        ]
        batch = self.pad(sides)
        batch["pairs"] = torch.tensor(len(rows))
        return batch
