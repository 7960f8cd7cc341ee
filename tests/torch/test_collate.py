"""Pad, pack and pair collates keep every token, weight and position where it belongs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from shardprep.torch import IGNORE_INDEX, PackCollate, PadCollate, PairCollate, ShardDataset


def test_pad_collate(demo_shards: Path, cache_dir: str) -> None:
    ds = ShardDataset(str(demo_shards), cache_dir=cache_dir)
    rows = [ds[i] for i in (3, 0, 17, 250)]
    batch = PadCollate(ds.pad_id, pad_to_multiple_of=64)(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    width = batch["input_ids"].shape[1]
    assert width % 64 == 0 and max(lengths) <= width < max(lengths) + 64
    assert batch["input_ids"].dtype == torch.long and batch["weights"].dtype == torch.float32
    for b, (r, n) in enumerate(zip(rows, lengths, strict=True)):
        assert batch["input_ids"][b, :n].tolist() == r["input_ids"].tolist()
        assert batch["target_ids"][b, :n].tolist() == r["target_ids"].tolist()
        assert batch["weights"][b, :n].tolist() == r["weights"].tolist()
        assert batch["attention_mask"][b].tolist() == [1] * n + [0] * (width - n)
        assert (batch["input_ids"][b, n:] == int(ds.pad_id or 0)).all()
        assert (batch["target_ids"][b, n:] == IGNORE_INDEX).all()
        assert (batch["weights"][b, n:] == 0).all()
    assert batch["index"].tolist() == [3, 0, 17, 250]
    assert PadCollate(0)(rows)["input_ids"].shape[1] == max(lengths)


def test_pack_collate_positions_and_weights(demo_shards: Path, cache_dir: str) -> None:
    ds = ShardDataset(str(demo_shards), cache_dir=cache_dir)
    rows = [ds[i] for i in (5, 6, 7)]
    batch = PackCollate(ds.pad_id, pad_to_multiple_of=128)(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    total = batch["input_ids"].shape[1]
    assert total % 128 == 0 and batch["input_ids"].shape[0] == 1
    cu = batch["cu_seqlens"].tolist()
    assert batch["cu_seqlens"].dtype == torch.int32
    assert cu[: len(rows) + 1] == [0, *np.cumsum(lengths).tolist()] and cu[-1] == total
    assert batch["max_seqlen"] == max(np.diff(cu))
    for i, r in enumerate(rows):
        s, e = cu[i], cu[i + 1]
        assert batch["position_ids"][0, s:e].tolist() == list(range(lengths[i]))
        assert batch["input_ids"][0, s:e].tolist() == r["input_ids"].tolist()
        assert batch["target_ids"][0, s:e].tolist() == r["target_ids"].tolist()
        assert batch["weights"][0, s:e].tolist() == r["weights"].tolist()
        assert (batch["example_ids"][0, s:e] == i).all()
    tail = slice(sum(lengths), total)
    assert (batch["weights"][0, tail] == 0).all() and (batch["example_ids"][0, tail] == -1).all()


def _pretrain_table() -> pa.Table:
    # Two 12-token blocks: documents start at 0, 5, 9 in the first and 0, 4 in the second.
    tokens = np.arange(26, dtype=np.int32)
    blocks = [tokens[:13], tokens[13:]]
    return pa.table(
        {
            "input_ids": pa.array([b[:-1] for b in blocks], type=pa.list_(pa.int32())),
            "target_ids": pa.array([b[1:] for b in blocks], type=pa.list_(pa.int32())),
            "weights": pa.array([np.ones(12, np.float32)] * 2, type=pa.list_(pa.float32())),
            "length": pa.array([12, 12], type=pa.int32()),
            "doc_offsets": pa.array([[0, 5, 9], [0, 4]], type=pa.list_(pa.int32())),
            "source": pa.array(["web", "web"]).dictionary_encode(),
            "source_row": pa.array([0, 1], type=pa.int64()),
        }
    )


def test_pretrain_positions_restart_per_document(
    tmp_path: Path, make_build: Callable[..., Path], cache_dir: str
) -> None:
    ds = ShardDataset(
        str(make_build(tmp_path / "pt", "pretrain/1", [_pretrain_table()])), cache_dir=cache_dir
    )
    assert ds.schema == "pretrain/1" and ds[0]["doc_offsets"].tolist() == [0, 5, 9]
    packed = PackCollate(0)([ds[0], ds[1]])
    assert packed["cu_seqlens"].tolist() == [0, 5, 9, 12, 16, 24]
    assert packed["max_seqlen"] == 8
    want = [*range(5), *range(4), *range(3), *range(4), *range(8)]
    assert packed["position_ids"][0].tolist() == want
    assert packed["example_ids"][0].tolist() == [0] * 12 + [1] * 12
    padded = PadCollate(0)([ds[0], ds[1]])
    assert padded["position_ids"].tolist() == [want[:12], want[12:]]


def _dpo_table(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    cols: dict[str, list] = {k: [] for k in ("c_in", "c_t", "c_w", "r_in", "r_t", "r_w")}
    clen, rlen = rng.integers(3, 20, n), rng.integers(3, 20, n)
    for i in range(n):
        for side, length in (("c", clen[i]), ("r", rlen[i])):
            toks = rng.integers(2, 1000, length + 1).astype(np.int32)
            cols[f"{side}_in"].append(toks[:-1])
            cols[f"{side}_t"].append(toks[1:])
            cols[f"{side}_w"].append((np.arange(length) >= length // 2).astype(np.float32))
    ints, floats = pa.list_(pa.int32()), pa.list_(pa.float32())
    return pa.table(
        {
            "chosen_input_ids": pa.array(cols["c_in"], type=ints),
            "chosen_target_ids": pa.array(cols["c_t"], type=ints),
            "chosen_weights": pa.array(cols["c_w"], type=floats),
            "rejected_input_ids": pa.array(cols["r_in"], type=ints),
            "rejected_target_ids": pa.array(cols["r_t"], type=ints),
            "rejected_weights": pa.array(cols["r_w"], type=floats),
            "chosen_length": pa.array(clen, type=pa.int32()),
            "rejected_length": pa.array(rlen, type=pa.int32()),
            "source": pa.array(["prefs"] * n).dictionary_encode(),
            "source_row": pa.array(np.arange(n), type=pa.int64()),
        }
    )


def test_preference_pairs_stay_together(
    tmp_path: Path, make_build: Callable[..., Path], cache_dir: str
) -> None:
    table = _dpo_table(40)
    build = make_build(
        tmp_path / "dpo", "dpo/1", [table.slice(0, 25), table.slice(25)], row_group_rows=8
    )
    ds = ShardDataset(str(build), cache_dir=cache_dir)
    assert ds.schema == "dpo/1" and len(ds) == 40
    want = table.to_pylist()
    for i in range(40):
        row = ds[i]
        for key, value in want[i].items():
            got = row[key]
            assert (got.tolist() if isinstance(got, np.ndarray) else got) == pytest.approx(value), (
                key
            )
    assert ds.lengths.tolist() == [r["chosen_length"] + r["rejected_length"] for r in want]

    picks = [7, 30, 2]
    batch = PairCollate(0, pad_to_multiple_of=8)([ds[i] for i in picks])
    assert int(batch["pairs"]) == 3 and batch["input_ids"].shape[0] == 6
    for b, i in enumerate(picks):
        for side, r in (("chosen", b), ("rejected", b + 3)):
            n = want[i][f"{side}_length"]
            assert batch["input_ids"][r, :n].tolist() == want[i][f"{side}_input_ids"]
            assert batch["weights"][r, :n].tolist() == want[i][f"{side}_weights"]
            assert batch["attention_mask"][r].sum() == n
        assert batch["index"][b] == batch["index"][b + 3] == i
