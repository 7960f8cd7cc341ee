"""PackedLoader: padding-free batches proven on a real HF causal LM, elastic exact resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shardprep.packing import PackingPlan
from shardprep.torch import IGNORE_INDEX, PackedLoader, ShardDataset

from ._models import tiny_llama

SEQ_LEN = 1024
VOCAB = 512  # token ids are folded into a small vocabulary: the model is random anyway


@pytest.fixture(scope="module")
def ds(demo_shards: Path, cache_dir: str) -> ShardDataset:
    return ShardDataset(str(demo_shards), cache_dir=cache_dir)


def _rows_of(batch: dict[str, Any]) -> list[int]:
    return [int(r) for r in batch["sequence_rows"] if r >= 0]


def test_batch_layout_is_the_rows_packed_with_padding_only_at_the_end(ds: ShardDataset) -> None:
    loader = PackedLoader(ds, seq_len=SEQ_LEN, batch_size=3, seed=0)
    batch = next(iter(loader))
    assert batch["input_ids"].shape == (3, SEQ_LEN) and batch["weights"].dtype == torch.float32
    cu = batch["cu_seqlens"]
    assert cu.dtype == torch.int32 and int(cu[0]) == 0 and int(cu[-1]) == 3 * SEQ_LEN
    seg = torch.diff(cu)
    assert batch["max_seqlen"] == int(seg.max())
    flat = {k: batch[k].reshape(-1) for k in ("input_ids", "target_ids", "weights", "labels")}
    pos = batch["position_ids"].reshape(-1)
    seq_ids = batch["sequence_ids"].reshape(-1)
    for s, row in enumerate(batch["sequence_rows"].tolist()):
        a, b = int(cu[s]), int(cu[s + 1])
        assert pos[a:b].tolist() == list(range(b - a))  # restarts at every sequence
        assert (seq_ids[a:b] == s).all()
        if row < 0:  # padding: only at a pack's end, weight 0, target ignored
            assert b % SEQ_LEN == 0
            assert (flat["weights"][a:b] == 0).all()
            assert (flat["target_ids"][a:b] == IGNORE_INDEX).all()
            continue
        want = ds[row]
        n = min(len(want["input_ids"]), SEQ_LEN - 1)
        assert b - a == n
        assert flat["input_ids"][a:b].tolist() == want["input_ids"][:n].tolist()
        assert flat["target_ids"][a:b].tolist() == want["target_ids"][:n].tolist()
        assert np.array_equal(flat["weights"][a:b].numpy(), want["weights"][:n])
    # Every pack ends in padding (its last position is kept free), so HF's shift loses no label.
    assert (batch["weights"][:, -1] == 0).all()
    labels, targets, weights = batch["labels"], batch["target_ids"], batch["weights"]
    assert (labels[:, 0] == IGNORE_INDEX).all()
    expect = torch.where(weights[:, :-1] > 0, targets[:, :-1], IGNORE_INDEX)
    assert torch.equal(labels[:, 1:], expect)


def _block_causal(sequence_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool: a token sees earlier tokens of its own sequence only."""
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    n = sequence_ids.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    return (same & causal)[:, None]


def test_packed_losses_equal_each_sequence_alone_on_a_real_hf_model(ds: ShardDataset) -> None:
    model = tiny_llama(vocab=VOCAB, seq_len=SEQ_LEN, heads=4).eval()
    loader = PackedLoader(ds, seq_len=SEQ_LEN, batch_size=2, seed=0)
    batch = next(iter(loader))
    inputs = batch["input_ids"] % VOCAB
    targets = torch.where(batch["target_ids"] >= 0, batch["target_ids"] % VOCAB, IGNORE_INDEX)
    labels = torch.where(batch["labels"] >= 0, batch["labels"] % VOCAB, IGNORE_INDEX)
    weights = batch["weights"]
    with torch.no_grad():
        logits = model(
            input_ids=inputs,
            position_ids=batch["position_ids"],
            attention_mask=_block_causal(batch["sequence_ids"]),
        ).logits
        packed = torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB), targets.reshape(-1), reduction="none"
        )
        # position_ids alone: transformers finds the sequences from them (no mask, no cache).
        by_positions = model(
            input_ids=inputs, position_ids=batch["position_ids"], use_cache=False
        ).logits
        torch.testing.assert_close(by_positions, logits, atol=1e-5, rtol=0)
        cu = batch["cu_seqlens"].tolist()
        alone_weighted = torch.zeros((), dtype=torch.float64)
        checked = 0
        for s, row in enumerate(batch["sequence_rows"].tolist()):
            if row < 0:
                continue
            a, b = cu[s], cu[s + 1]
            one = model(input_ids=inputs.reshape(-1)[a:b][None]).logits[0]
            alone = torch.nn.functional.cross_entropy(
                one, targets.reshape(-1)[a:b], reduction="none"
            )
            torch.testing.assert_close(packed[a:b], alone, atol=1e-5, rtol=0)
            alone_weighted += (alone.double() * weights.reshape(-1)[a:b].double()).sum()
            checked += 1
        assert checked >= 2
        # The weighted loss of the packed batch is the sum of the rows' weighted losses ...
        packed_weighted = (packed.double() * weights.reshape(-1).double()).sum()
        torch.testing.assert_close(packed_weighted, alone_weighted, atol=1e-6, rtol=1e-7)
        # ... and HF's own loss over `labels` (mean over trained tokens) is the same number.
        hf = model(
            input_ids=inputs,
            position_ids=batch["position_ids"],
            attention_mask=_block_causal(batch["sequence_ids"]),
            labels=labels,
        ).loss
        trained = float(weights.sum())
        torch.testing.assert_close(hf.double() * trained, alone_weighted, atol=1e-4, rtol=1e-6)


def _run(loader: PackedLoader, steps: int | None = None) -> list[dict[str, Any]]:
    out = []
    for i, batch in enumerate(loader):
        out.append(batch)
        if steps is not None and i + 1 == steps:
            break
    return out


def _ranks(ds: ShardDataset, world: int, state: dict[str, Any] | None = None) -> list[PackedLoader]:
    loaders = [
        PackedLoader(ds, seq_len=SEQ_LEN, batch_size=2, seed=7, rank=r, world_size=world)
        for r in range(world)
    ]
    if state is not None:
        for loader in loaders:
            loader.load_state_dict(state)
    return loaders


@pytest.mark.parametrize("then", [4, 1])
def test_saved_on_two_ranks_resumes_on_another_world_size_every_row_once(
    ds: ShardDataset, then: int
) -> None:
    plan_packs = PackedLoader(ds, seq_len=SEQ_LEN, seed=7).plan.packs
    seen: Counter[int] = Counter()
    two = _ranks(ds, 2)
    assert len({len(x) for x in two}) == 1 and len(two[0]) == -(-plan_packs // 4)
    for loader in two:
        for batch in _run(loader, steps=9):
            seen.update(_rows_of(batch))
    states = [x.state_dict() for x in two]
    assert states[0] == states[1] and states[0]["position"] == 9 * 4
    rest = _ranks(ds, then, states[0])
    lens = {x.steps_left for x in rest}
    assert len(lens) == 1  # every rank has as many steps (and packs) left
    # Packs are nearly full, so ranks' tokens within a step differ little (and not at all alone).
    assert 0 <= rest[0].token_balance() < 0.05
    assert then > 1 or rest[0].token_balance() == 0
    repeats = rest[0].repeats
    assert 0 <= repeats < 2 * then
    for loader in rest:
        batches = _run(loader)
        assert len(batches) == lens.pop() if lens else True
        for batch in batches:
            seen.update(_rows_of(batch))
    # Every row once; only the last step's wrap-around packs (the epoch's first) come twice.
    assert set(seen) == set(range(len(ds)))
    extra = sum(c - 1 for c in seen.values())
    plan = rest[0].plan
    order = plan.order(7, 0)
    assert extra == sum(len(plan.pack(int(p))) for p in order[:repeats])
    # Finished: the state names the next epoch's start on every rank.
    assert {str(x.state_dict()) for x in rest} == {str(rest[0].state_dict())}
    assert rest[0].state_dict()["epoch"] == 1 and rest[0].state_dict()["position"] == 0


def test_the_global_stream_does_not_depend_on_world_size_or_workers(ds: ShardDataset) -> None:
    def stream(world: int, workers: int = 0) -> list[int]:
        per_rank = [
            [
                _rows_of(b)
                for b in _run(
                    PackedLoader(
                        ds,
                        seq_len=SEQ_LEN,
                        batch_size=1,
                        seed=3,
                        rank=r,
                        world_size=world,
                        num_workers=workers,
                    ),
                    steps=6 // world,
                )
            ]
            for r in range(world)
        ]
        return [row for step in zip(*per_rank, strict=True) for b in step for row in b]

    one = stream(1)
    assert one == stream(2) == stream(3)
    assert one == stream(1, workers=2)
    other_seed = [
        row for b in _run(PackedLoader(ds, seq_len=SEQ_LEN, seed=4), steps=6) for row in _rows_of(b)
    ]
    assert other_seed != one


def test_epochs_state_and_refusals(ds: ShardDataset) -> None:
    loader = PackedLoader(ds, seq_len=SEQ_LEN, batch_size=4, seed=0)
    first = [_rows_of(b) for b in loader]
    assert len(first) == len(loader) and loader.epoch == 1
    second = [_rows_of(b) for b in loader]  # the next epoch: another order of the same packs
    assert second != first
    assert {r for b in second for r in b} == {r for b in first for r in b} == set(range(len(ds)))
    loader.set_epoch(0)
    assert [_rows_of(b) for b in loader] == first
    other = PackedLoader(ds, seq_len=SEQ_LEN + 1, seed=0)
    with pytest.raises(ValueError, match="seq_len"):
        other.load_state_dict(loader.state_dict())
    with pytest.raises(ValueError, match="missing"):
        loader.load_state_dict({"epoch": 0})
    # A negative seed or epoch is refused where it is given, naming it (numpy's "expected
    # non-negative integer" came at the first batch).
    with pytest.raises(ValueError, match="seed must be >= 0, not -1"):
        PackedLoader(ds, seq_len=SEQ_LEN, seed=-1)
    with pytest.raises(ValueError, match="epoch must be >= 0, not -2"):
        loader.set_epoch(-2)


def test_plan_fills_real_lengths_to_the_bound(ds: ShardDataset) -> None:
    """The demo build's real lengths (480 rows, Qwen3): 99.5 % filled, or as few packs as any plan
    could have (the split is too small for 99.5 % at that seq_len)."""
    for seq_len in (2048, 4096, 8192):
        plan = PackingPlan.build(ds.lengths, seq_len)
        assert plan.efficiency >= 0.995 or plan.packs == plan.packs_lower_bound, plan.summary()


def test_fractional_weights_are_refused_for_labels(make_build: Any, tmp_path: Path) -> None:
    import pyarrow as pa

    from shardprep.tasks.sft import SCHEMA

    table = pa.Table.from_pylist(
        [
            {
                "input_ids": [1, 2, 3],
                "target_ids": [2, 3, 4],
                "weights": [0.0, 0.5, 0.5],
                "length": 3,
                "source": "s",
                "source_row": 0,
            }
        ],
        schema=SCHEMA.arrow(),
    )
    folder = make_build(tmp_path / "frac", "sft/1", [table])
    ds = ShardDataset(str(folder), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="row 0 has loss weight 0.5"):
        next(iter(PackedLoader(ds, seq_len=8)))
    batch = next(iter(PackedLoader(ds, seq_len=8, fractional=None)))
    assert "labels" not in batch and batch["weights"][0, :3].tolist() == [0.0, 0.5, 0.5]


def test_show_reports_the_plan_the_loader_trains(ds: ShardDataset, demo_shards: Path) -> None:
    from shardprep.views.show import inspect_build

    report = inspect_build(str(demo_shards), pack=[SEQ_LEN, 4096], check_rows=1)
    for shown in report["packing"]:
        loader = PackedLoader(ds, seq_len=shown["seq_len"], batch_size=2, world_size=2, rank=1)
        assert shown["plan"] == loader.plan.digest == loader.state_dict()["plan"]
        assert shown["packs"] == loader.plan.packs and len(loader) == -(-shown["packs"] // 4)


def test_no_pack_trains_nothing_where_truncation_cuts_every_trained_position(
    ds: ShardDataset, demo_shards: Path
) -> None:
    """At seq_len 512 some demo rows are cut to 511 positions with every trained one past the cut:
    alone in a pack, each made a step whose loss was 0/0 (NaN in Hugging Face's). They now keep
    no position and are counted; every pack trains something, `prep show --pack` reports the
    same plan, and every other row is still trained once per epoch."""
    from shardprep.views.show import inspect_build

    loader = PackedLoader(ds, seq_len=512, batch_size=1, seed=0)
    plan = loader.plan
    assert plan.rows_trained_away > 0
    trained = []
    for batch in loader:
        assert float(batch["weights"].sum()) > 0  # never a step that trains nothing
        assert int((batch["labels"] != IGNORE_INDEX).sum()) > 0
        trained += _rows_of(batch)
    away = set(np.flatnonzero((plan.kept == 0) & (ds.lengths > plan.capacity)).tolist())
    assert len(away) == plan.rows_trained_away
    assert Counter(trained).keys() | away == set(range(len(ds)))
    shown = inspect_build(str(demo_shards), pack=[512], check_rows=1)["packing"]
    assert shown["plan"] == plan.digest and shown["rows_trained_away"] == plan.rows_trained_away


def test_pretrain_blocks_restart_positions_at_every_document(
    make_build: Any, tmp_path: Path
) -> None:
    import pyarrow as pa

    from shardprep.tasks.pretrain import SCHEMA

    rows = [
        {"input_ids": [1, 2, 3, 4, 5], "doc_offsets": [0, 2]},
        {"input_ids": [6, 7, 8], "doc_offsets": [0]},
        {"input_ids": [9, 10, 11, 12], "doc_offsets": [0, 1, 3]},
    ]
    table = pa.Table.from_pylist(
        [
            {
                **r,
                "target_ids": [t + 100 for t in r["input_ids"]],
                "weights": [1.0] * len(r["input_ids"]),
                "length": len(r["input_ids"]),
                "source": "s",
                "source_row": i,
            }
            for i, r in enumerate(rows)
        ],
        schema=SCHEMA.arrow(),
    )
    ds = ShardDataset(
        str(make_build(tmp_path / "pt", "pretrain/1", [table])), cache_dir=str(tmp_path / "c")
    )
    loader = PackedLoader(ds, seq_len=8, batch_size=2, seed=0)
    assert loader.plan.packs == 2 and len(loader) == 1
    (batch,) = list(loader)
    by_row: dict[int, list[int]] = {}
    cu = batch["cu_seqlens"].tolist()
    for s, row in enumerate(batch["sequence_rows"].tolist()):
        by_row.setdefault(row, []).append(cu[s + 1] - cu[s])
    # Documents are the sequences: row 0 is [2, 3], row 2 is [1, 2, 1]; padding ends each pack.
    assert by_row[0] == [2, 3] and by_row[1] == [3] and by_row[2] == [1, 2, 1]
    assert sum(by_row[-1]) == 2 * 8 - 12
    flat = batch["position_ids"].reshape(-1).tolist()
    for s in range(len(cu) - 1):
        assert flat[cu[s] : cu[s + 1]] == list(range(cu[s + 1] - cu[s]))


def test_pairs_are_refused_by_show_and_the_loader(make_build: Any, tmp_path: Path) -> None:
    import pyarrow as pa

    from shardprep.errors import ShardprepError
    from shardprep.tasks.dpo import SCHEMA
    from shardprep.views.show import inspect_build

    side = {"input_ids": [1, 2], "target_ids": [2, 3], "weights": [0.0, 1.0], "length": 2}
    row = {f"{p}{k}": v for p in ("chosen_", "rejected_") for k, v in side.items()}
    table = pa.Table.from_pylist([{**row, "source": "s", "source_row": 0}], schema=SCHEMA.arrow())
    folder = make_build(tmp_path / "dpo", "dpo/1", [table])
    manifest = json.loads((folder / "manifest.json").read_text())
    for shard in manifest["splits"]["train"]["shards"]:
        shard["bytes"] = (folder / shard["path"]).stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardprepError, match="--pack needs one token sequence per row"):
        inspect_build(str(folder), pack=[64])
    ds = ShardDataset(str(folder), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="packing needs one token sequence per row"):
        PackedLoader(ds, seq_len=64)


def test_resumed_at_the_epoch_end_the_usual_loop_trains_each_epoch_once(ds: ShardDataset) -> None:
    """A checkpoint taken after an epoch's last step, resumed by the usual loop (set_epoch at each
    epoch's top, the resumed one first): the finished epoch yields nothing and the next comes once
    (it used to run the next epoch under the finished one's number, then again)."""
    loader = PackedLoader(ds, seq_len=SEQ_LEN, batch_size=4, seed=0)
    steps = iter(loader)
    for _ in range(len(loader)):
        next(steps)
    state = loader.state_dict()
    assert state["epoch"] == 0 and state["position"] >= loader.plan.packs
    resumed = PackedLoader(ds, seq_len=SEQ_LEN, batch_size=4, seed=0)
    resumed.load_state_dict(state)
    trained: list[tuple[int, list[int]]] = []
    for epoch in range(state["epoch"], 2):
        resumed.set_epoch(epoch)
        assert resumed.steps_left == (0 if epoch == 0 else len(resumed))
        trained += [(epoch, _rows_of(b)) for b in resumed]
    assert [e for e, _ in trained] == [1] * len(loader)
    fresh = PackedLoader(ds, seq_len=SEQ_LEN, batch_size=4, seed=0)
    fresh.set_epoch(1)
    assert [rows for _, rows in trained] == [_rows_of(b) for b in fresh]
    # Without set_epoch, iterating a finished epoch's state goes on with the next one.
    plain = PackedLoader(ds, seq_len=SEQ_LEN, batch_size=4, seed=0)
    plain.load_state_dict(state)
    assert [_rows_of(b) for b in plain] == [rows for _, rows in trained]
    with pytest.raises(ValueError, match="position"):
        plain.load_state_dict({**state, "position": -1})


def test_workers_read_a_split_larger_than_the_cache_limit(
    ds: ShardDataset, demo_shards: Path, tmp_path: Path
) -> None:
    """With num_workers > 0 the loader decodes every shard up front only when the split fits the
    cache; a split larger than cache_limit is read by the workers shard by shard (it used to be
    refused, pointing at ResumableLoader, which cannot pack)."""
    largest = max(
        s["estimate"] for s in ShardDataset(str(demo_shards), cache_dir=str(tmp_path)).shards
    )
    small = ShardDataset(str(demo_shards), cache_dir=str(tmp_path / "small"), cache_limit=largest)
    assert small.needed_bytes() > small.cache_limit
    got = [_rows_of(b) for b in PackedLoader(small, seq_len=SEQ_LEN, batch_size=8, num_workers=2)]
    assert got == [_rows_of(b) for b in PackedLoader(ds, seq_len=SEQ_LEN, batch_size=8)]


def test_a_plan_made_from_other_lengths_is_refused(ds: ShardDataset) -> None:
    """plan= with as many rows but other lengths (another split's, another build's) failed only
    while batching, in numpy ('could not broadcast'), or packed rows past their capacity."""
    other = PackingPlan.build(ds.lengths[::-1].copy(), SEQ_LEN)
    with pytest.raises(ValueError, match="not made for this dataset"):
        PackedLoader(ds, seq_len=SEQ_LEN, plan=other)
    own = PackingPlan.build(ds.lengths, SEQ_LEN)
    assert PackedLoader(ds, seq_len=SEQ_LEN, plan=own).plan is own
