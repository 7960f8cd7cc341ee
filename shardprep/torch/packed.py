"""PackedLoader: fixed-shape, padding-free batches from one global packing plan, elastic resume.

The plan (`shardprep.packing.PackingPlan`, the one `prep show --pack` prints) puts the split's rows
into packs of `seq_len` positions by best-fit decreasing over the whole split. An epoch is the
plan's packs in an order drawn from (seed, epoch) only, read as one global stream: global step s
is stream packs [s x G, (s + 1) x G) with G = batch_size x world_size, and rank r takes the
batch_size packs starting at s x G + r x batch_size. So the stream never depends on the world
size or the worker count, and the state is one number, the global position (packs the whole job
has consumed), the same on every rank: saved on 2 ranks it resumes on 4 or 1 exactly where it
stopped, and each row is trained once per epoch. The last step wraps around to the epoch's first
packs so every rank gets batch_size packs (`repeats`: how many; at most G - 1). Steps are known
before the first: `len(loader)` for a whole epoch, `steps_left` from the current position.

A batch is [batch_size, seq_len] (one pack per row):

    input_ids, target_ids, weights   the rows' shifted tokens and loss weights, pack by pack;
                                     padding (pad_id / -100 / 0) only after a pack's last row
    labels                           Hugging Face's unshifted form of the same targets:
                                     labels[:, t] = target_ids[:, t - 1] where weights > 0, else -100
                                     (a HF causal LM scores position t against labels[t + 1]); the
                                     plan keeps every pack's last position free, so none is lost
    position_ids                     0.. restarting at every row (every document of a pretrain block)
    sequence_ids                     per token, its sequence's number in the flattened batch
                                     (padding is a sequence of its own): a block-causal mask is
                                     sequence_ids[q] == sequence_ids[k] and k <= q
    cu_seqlens, max_seqlen           int32 cumulative sequence ends over the flattened batch
                                     (batch_size x seq_len), as flash-attention's varlen kernels take
    sequence_rows                    the dataset row of each sequence (-1 for padding)

With 0/1 weights (`weight_reduction: none`) a HF loss over `labels` equals the weighted loss over
`target_ids`; other weights are refused by default (`fractional`, as in `hf.py`), or `fractional=None`
leaves `labels` out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shardprep.packing import PackingPlan, first_trained
from shardprep.torch.collate import IGNORE_INDEX, _allocate, document_segments, segment_positions
from shardprep.torch.hf import _FRACTIONAL, Fractional, check_fractional
from shardprep.torch.samplers import _rank_world

_STATE_KEYS = ("epoch", "position", "seed", "seq_len", "plan")


def row_trained_prefix(dataset: Any) -> Callable[[np.ndarray, int], np.ndarray]:
    """PackingPlan.build's `trained_prefix` over a dataset's rows (their `weights`)."""

    def check(rows: np.ndarray, n: int) -> np.ndarray:
        found = np.zeros(len(rows), dtype=bool)
        for j, i in enumerate(rows.tolist()):
            w = np.asarray(dataset[i]["weights"])
            found[j] = first_trained(w, np.array([0, len(w)]))[0] < n
        return found

    return check


def _kept_matches(plan: PackingPlan, lengths: np.ndarray) -> bool:
    """Whether each row keeps what this dataset's row would: its length up to the capacity, or
    nothing where it is truncated (and so may have been trained away)."""
    cut = np.minimum(lengths, plan.capacity)
    return bool(np.all((plan.kept == cut) | ((plan.kept == 0) & (lengths > plan.capacity))))


def _identity(batch: Any) -> Any:
    return batch


class PackBatches(Dataset[dict[str, Any]]):
    """Packs of a plan -> [len(packs), seq_len] batches (map-style: item = one list of packs).

    Picklable (the dataset re-opens its shards in each worker), so DataLoader workers build whole
    batches.
    """

    def __init__(
        self,
        dataset: Dataset[dict[str, Any]],
        plan: PackingPlan,
        steps: list[np.ndarray],
        *,
        pad_id: int,
        fractional: Fractional | None,
    ) -> None:
        self.dataset = dataset
        self.plan = plan
        self.steps = steps
        self.pad_id = pad_id
        self.fractional = fractional

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, step: int) -> dict[str, Any]:
        rows = [self.plan.pack(int(p)) for p in self.steps[step]]
        return collate_packs(
            [[self.dataset[int(i)] for i in pack] for pack in rows],
            self.plan.seq_len,
            self.plan.capacity,
            pad_id=self.pad_id,
            fractional=self.fractional,
            kept=[self.plan.kept[pack].tolist() for pack in rows],
        )


def collate_packs(
    packs: Sequence[Sequence[dict[str, Any]]],
    seq_len: int,
    capacity: int,
    *,
    pad_id: int = 0,
    fractional: Fractional | None = "refuse",
    kept: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Packs of shard rows (sft/1 or pretrain/1) -> one [len(packs), seq_len] batch (see module).

    `kept`: the positions each row keeps (the plan's: a row truncated with no trained position
    left keeps none); by default its length up to `capacity`."""
    b = len(packs)
    specs: dict[str, tuple[tuple[int, ...], Any]] = {
        "input_ids": ((b, seq_len), np.int64),
        "target_ids": ((b, seq_len), np.int64),
        "weights": ((b, seq_len), np.float32),
        "position_ids": ((b, seq_len), np.int64),
        "sequence_ids": ((b, seq_len), np.int64),
    }
    if fractional is not None:
        specs["labels"] = ((b, seq_len), np.int64)
    batch = _allocate(specs)
    inputs, targets = batch["input_ids"].numpy(), batch["target_ids"].numpy()
    weights = batch["weights"].numpy()
    inputs.fill(pad_id)
    targets.fill(IGNORE_INDEX)
    weights.fill(0.0)
    segments: list[np.ndarray] = []
    seg_rows: list[np.ndarray] = []
    for p, rows in enumerate(packs):
        at = 0
        for j, row in enumerate(rows):
            n = min(len(row["input_ids"]), capacity) if kept is None else kept[p][j]
            w = np.asarray(row["weights"])[:n]
            if fractional == "refuse":
                check_fractional(w, row.get("index", "?"))
            inputs[p, at : at + n] = row["input_ids"][:n]
            targets[p, at : at + n] = row["target_ids"][:n]
            weights[p, at : at + n] = w
            docs = document_segments(n, row.get("doc_offsets"))
            segments.append(docs)
            seg_rows.append(np.full(len(docs), int(row.get("index", -1)), dtype=np.int64))
            at += n
        if at > capacity:
            raise ValueError(f"a pack holds {at} positions, more than its capacity {capacity}")
        segments.append(np.array([seq_len - at], dtype=np.int64))  # padding: never empty
        seg_rows.append(np.array([-1], dtype=np.int64))
    seg = np.concatenate(segments) if segments else np.zeros(0, dtype=np.int64)
    batch["position_ids"].numpy()[:] = segment_positions(seg).reshape(b, seq_len)
    batch["sequence_ids"].numpy()[:] = np.repeat(np.arange(len(seg)), seg).reshape(b, seq_len)
    if fractional is not None:
        labels = batch["labels"].numpy()
        labels[:, 0] = IGNORE_INDEX
        labels[:, 1:] = np.where(weights[:, :-1] > 0, targets[:, :-1], IGNORE_INDEX)
    cu = np.zeros(len(seg) + 1, dtype=np.int32)
    np.cumsum(seg, out=cu[1:])
    out: dict[str, Any] = dict(batch)
    out["cu_seqlens"] = torch.from_numpy(cu)
    out["max_seqlen"] = int(seg.max()) if len(seg) else 0
    out["sequence_rows"] = torch.from_numpy(
        np.concatenate(seg_rows) if seg_rows else np.zeros(0, dtype=np.int64)
    )
    return out


class PackedLoader:
    """Batches of `batch_size` packs of `seq_len` positions for this rank (see the module docstring).

    `dataset` is a ShardDataset of an sft/1 or pretrain/1 build (anything with `lengths` and
    row access). rank / world_size default to torch.distributed's when it is initialized.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        seq_len: int,
        batch_size: int = 1,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 0,
        pad_id: int | None = None,
        fractional: Fractional | None = "refuse",
        prepare: bool = True,
        plan: PackingPlan | None = None,
        **dataloader_kwargs: Any,
    ) -> None:
        schema = getattr(dataset, "shard_schema", None)
        if schema is not None and schema.sequences != ("",):
            raise ValueError(
                f"packing needs one token sequence per row (sft/1, pretrain/1); "
                f"this build's schema is {dataset.schema}"
            )
        if fractional is not None and fractional not in _FRACTIONAL:
            raise ValueError(f"fractional must be one of {_FRACTIONAL} or None, not {fractional!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, not {seed}")
        if prepare and num_workers > 0 and hasattr(dataset, "prepare"):
            # Decode shards once here, not once per worker; a split larger than the cache limit
            # cannot be held at once: the workers then decode shards as packs need them.
            limit = getattr(dataset, "cache_limit", None)
            if limit is None or dataset.needed_bytes() <= limit:
                dataset.prepare()
        self.dataset = dataset
        self.plan = (
            plan
            if plan is not None
            else PackingPlan.build(dataset.lengths, seq_len, row_trained_prefix(dataset))
        )
        if (
            self.plan.seq_len != seq_len
            or self.plan.row_count != len(dataset)
            or (plan is not None and not _kept_matches(self.plan, np.asarray(dataset.lengths)))
        ):
            raise ValueError("the plan given was not made for this dataset and seq_len")
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.num_workers = num_workers
        ds_pad = getattr(dataset, "pad_id", None)
        self.pad_id = int(pad_id if pad_id is not None else (ds_pad if ds_pad is not None else 0))
        self.fractional: Fractional | None = fractional
        self.dataloader_kwargs = dataloader_kwargs
        self.epoch = 0
        self.position = 0  # packs of this epoch's stream the whole job has consumed
        # set_epoch(e) named a finished epoch e (a state saved after its last step): the next
        # iteration is that epoch's (nothing left), not the next epoch's.
        self._held = False

    # -- sizes ---------------------------------------------------------------------------------

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Steps in a whole epoch (the same on every rank)."""
        return -(-self.plan.packs // self.global_batch)

    def _finished(self) -> bool:
        """The epoch's stream is consumed and the next iteration goes on with the next epoch."""
        return self.position >= self.plan.packs > 0 and not self._held

    def _start(self) -> int:
        if self.position < self.plan.packs:
            return self.position
        return self.plan.packs if self._held else 0

    @property
    def steps_left(self) -> int:
        """Steps the next iteration yields (a whole epoch once the current one is done)."""
        return -(-(self.plan.packs - self._start()) // self.global_batch)

    @property
    def repeats(self) -> int:
        """Packs the next iteration's last step repeats from the epoch's start (ranks' equal shares)."""
        return self.steps_left * self.global_batch - (self.plan.packs - self._start())

    # -- order ---------------------------------------------------------------------------------

    def rank_steps(self, rank: int | None = None) -> list[np.ndarray]:
        """The packs (plan indices) a rank gets at each remaining step of the next iteration."""
        rank = self.rank if rank is None else rank
        grid = self.plan.steps(self.seed, self._epoch_of_next(), self.global_batch, self._start())
        return list(grid[:, rank * self.batch_size : (rank + 1) * self.batch_size])

    def _epoch_of_next(self) -> int:
        return self.epoch + 1 if self._finished() else self.epoch

    def token_balance(self) -> float:
        """Over the next iteration's steps, the mean of (max - min) / max row positions across ranks."""
        return self.plan.balance(
            self.seed, self._epoch_of_next(), self.batch_size, self.world_size, self._start()
        )

    # -- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._finished():  # the epoch was finished: go on with the next
            self.epoch += 1
            self.position = 0
        steps = self.rank_steps()
        self._held = False
        start = self.position
        source = PackBatches(
            self.dataset, self.plan, steps, pad_id=self.pad_id, fractional=self.fractional
        )
        loader = DataLoader(
            source,
            batch_size=None,
            shuffle=False,
            collate_fn=_identity,
            num_workers=self.num_workers,
            **self.dataloader_kwargs,
        )
        for i, batch in enumerate(loader):
            # Counted as handed out: the DataLoader's prefetching never moves the position.
            self.position = start + (i + 1) * self.global_batch
            yield batch
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Training loops call it at each epoch's top, the resumed one too: a loaded position stays."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, not {epoch}")
        if epoch != self.epoch:
            self.position = 0
        self.epoch = int(epoch)
        # The epoch named is the one to iterate next, even when a loaded state finished it.
        self._held = self.position >= self.plan.packs > 0

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The global position, the same on every rank: load it into any world size."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "plan": self.plan.digest,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"not a PackedLoader state: missing {missing}")
        for key, mine in (
            ("seed", self.seed),
            ("seq_len", self.seq_len),
            ("plan", self.plan.digest),
        ):
            if state[key] != mine:
                raise ValueError(
                    f"loader state has {key}={state[key]!r}, this loader {mine!r}: "
                    "it was saved for another plan"
                )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or position < 0:
            raise ValueError(
                f"loader state has epoch={epoch}, position={position}: both must be >= 0"
            )
        self.epoch, self.position, self._held = epoch, position, False
