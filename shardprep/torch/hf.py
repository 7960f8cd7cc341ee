"""The layout Hugging Face `Trainer`, TRL and axolotl expect: `input_ids` + `labels`, unshifted.

A shard row stores the shifted pair (`input_ids` = tokens[:-1], `target_ids` = tokens[1:]) with a
float loss weight per target. HF causal-LM models shift inside their loss instead, so here a row
becomes the whole sequence once, `input_ids` = tokens, and `labels` = tokens with -100 wherever the
token is not trained (the first token never is: nothing predicts it):

    labels[0] = -100;  labels[j] = tokens[j] if weights[j - 1] > 0 else -100

Fractional weights (`weight_reduction: mean`, or any weight other than 0 and 1) have no place in
`labels`: -100 or not is all it can say. By default such a row is refused (ValueError naming the
row), so a loss weighting cannot vanish unnoticed; `fractional="as_trained"` keeps every token with
a weight > 0 as trained, weighted 1 by the model's mean over trained tokens. Preference pairs
(dpo/1) and RL prompts have no single sequence to label: use PairCollate / the prompt columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from shardprep.torch.collate import IGNORE_INDEX, _allocate, _pad_rows, _round_up

Fractional = Literal["refuse", "as_trained"]
_FRACTIONAL = ("refuse", "as_trained")


def check_fractional(weights: np.ndarray, index: object) -> None:
    """Refuse a row whose loss weights are not all 0 or 1 (HF labels cannot carry them)."""
    if not np.isin(weights, (0.0, 1.0)).all():
        odd = float(weights[~np.isin(weights, (0.0, 1.0))][0])
        raise ValueError(
            f"row {index} has loss weight {odd:g} (not 0 or 1): HF labels can only mark "
            'a token trained or not. Build with `weight_reduction: none`, or pass fractional="as_trained" '
            "to train every token with a weight > 0 at weight 1"
        )


def hf_example(row: dict[str, Any], *, fractional: Fractional = "refuse") -> dict[str, np.ndarray]:
    """One sft/1 or pretrain/1 row -> {"input_ids", "labels"} (int64, equal length, unshifted)."""
    if fractional not in _FRACTIONAL:
        raise ValueError(f"fractional must be one of {_FRACTIONAL}, not {fractional!r}")
    if "target_ids" not in row or "weights" not in row:
        keys = ", ".join(sorted(row))
        raise ValueError(
            f"the HF layout needs rows with target_ids and weights (sft/1, pretrain/1); this row has: {keys}"
        )
    inputs = np.asarray(row["input_ids"])
    targets = np.asarray(row["target_ids"], dtype=np.int64)
    weights = np.asarray(row["weights"])
    if fractional == "refuse":
        check_fractional(weights, row.get("index", "?"))
    tokens = np.empty(len(targets) + 1, dtype=np.int64)
    tokens[:1] = inputs[:1]
    tokens[1:] = targets
    labels = np.full(len(tokens), IGNORE_INDEX, dtype=np.int64)
    trained = weights > 0
    labels[1:][trained] = targets[trained]
    return {"input_ids": tokens, "labels": labels}


class HFLayout(Dataset[dict[str, np.ndarray]]):
    """A ShardDataset (or any dataset of shard rows) seen as HF rows: {"input_ids", "labels"}.

    Only those two keys, so HF Trainer's column filter (which drops keys its model does not take)
    keeps both; pad them with HFCollate.
    """

    def __init__(self, rows: Dataset[dict[str, Any]], *, fractional: Fractional = "refuse") -> None:
        self.rows = rows
        self.fractional: Fractional = fractional
        hf_example(
            {"input_ids": [0], "target_ids": [], "weights": []}, fractional=fractional
        )  # checks the option

    def __len__(self) -> int:
        return len(self.rows)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return hf_example(self.rows[index], fractional=self.fractional)


class HFCollate:
    """HF rows (or raw shard rows, converted on the way) -> padded [B, L] tensors.

    Output: input_ids (pad_id where padded), labels (-100 where padded or untrained), attention_mask.
    """

    def __init__(
        self,
        pad_id: int | None = 0,
        *,
        pad_to_multiple_of: int = 1,
        fractional: Fractional = "refuse",
    ) -> None:
        self.pad_id = 0 if pad_id is None else int(pad_id)
        self.pad_to_multiple_of = max(1, int(pad_to_multiple_of))
        self.fractional: Fractional = fractional

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        hf = [r if "labels" in r else hf_example(r, fractional=self.fractional) for r in rows]
        lengths = np.fromiter((len(r["input_ids"]) for r in hf), dtype=np.int64, count=len(hf))
        width = _round_up(int(lengths.max()) if len(lengths) else 0, self.pad_to_multiple_of)
        b = len(hf)
        batch = _allocate(
            {k: ((b, width), np.int64) for k in ("input_ids", "labels", "attention_mask")}
        )
        _pad_rows(
            [r["input_ids"] for r in hf], width, self.pad_id, np.int64, batch["input_ids"].numpy()
        )
        _pad_rows([r["labels"] for r in hf], width, IGNORE_INDEX, np.int64, batch["labels"].numpy())
        np.less(
            np.arange(width)[None, :],
            lengths[:, None],
            out=batch["attention_mask"].numpy(),
            casting="unsafe",
        )
        return batch


def hf_packed_inputs(batch: dict[str, Any], *, varlen: bool = False) -> dict[str, Any]:
    """A PackedLoader batch -> the keyword arguments of a HF causal LM's forward, padding-free.

    `input_ids`, `labels`, `position_ids` and no attention_mask: transformers then reads the
    sequence boundaries from position_ids restarting at 0 and builds a block-causal mask (sdpa,
    eager, flex; CPU or GPU), so no row attends to another in its pack. `varlen=True` gives the
    flash-attention form instead: the batch flattened to [1, batch x seq_len] (a pack's first label
    is -100, so nothing crosses packs) with `cu_seq_lens_q/k` and `max_length_q/k` for the varlen
    kernels (transformers' names; PackedLoader's cu_seqlens already cover the flattened batch).
    """
    keys = ("input_ids", "labels", "position_ids")
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(
            f"not a PackedLoader batch with labels (missing {missing}); build the loader with "
            "fractional='refuse' or 'as_trained', not None"
        )
    out = {k: batch[k] for k in keys}
    if varlen:
        out = {k: v.reshape(1, -1) for k, v in out.items()}
        out["cu_seq_lens_q"] = out["cu_seq_lens_k"] = batch["cu_seqlens"]
        out["max_length_q"] = out["max_length_k"] = int(batch["max_seqlen"])
    return out


class HFPackedBatches:
    """A PackedLoader as the train dataloader of HF `Trainer` (see `hf_trainer.PackedTrainer`).

    Yields `hf_packed_inputs` of each batch; `len()` is the loader's steps per epoch and `set_epoch`
    is forwarded, as Trainer expects of a dataloader. Trainer resumes mid-epoch by skipping the
    steps already trained: `skip(n)` moves the loader's global position there instead of reading
    them (the stream depends on seed and epoch only, so the position is exact).
    """

    def __init__(self, loader: Any, *, varlen: bool = False) -> None:
        self.loader = loader
        self.varlen = varlen
        self._skip = 0

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        if self._skip:
            state = self.loader.state_dict()
            state["position"] = self._skip * self.loader.global_batch
            self.loader.load_state_dict(state)
            self._skip = 0

    def skip(self, steps: int) -> HFPackedBatches:
        """Start the next epoch `set_epoch` names `steps` steps in (Trainer's mid-epoch resume)."""
        self._skip = int(steps)
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            yield hf_packed_inputs(batch, varlen=self.varlen)
