"""HF Trainer on PackedLoader batches (shardprep.torch.hf_trainer): the loss Trainer computes on a
packed, padding-free batch is the weighted loss of its rows each run alone, and a resume from a
checkpoint continues with exactly the batches the uninterrupted run had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from shardprep.torch import PackedLoader, ShardDataset  # noqa: E402
from shardprep.torch.hf import HFPackedBatches, hf_packed_inputs  # noqa: E402
from shardprep.torch.hf_trainer import PackedTrainer  # noqa: E402

from ._models import tiny_llama  # noqa: E402

SEQ_LEN = 2048  # every toy row fits (max_length 2048): none is cut by the pack


def _args(tmp_path: Path, **over: Any) -> Any:
    base: dict[str, Any] = {
        "output_dir": str(tmp_path),
        "learning_rate": 1e-3,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "seed": 0,
    }
    return transformers.TrainingArguments(**{**base, **over})


@pytest.fixture(scope="module")
def rows(toy_builds: dict[str, Path], cache_dir: str) -> ShardDataset:
    return ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir)


@pytest.mark.parametrize("varlen", [False, True])
def test_trainer_loss_on_a_packed_batch_is_the_rows_weighted_loss(
    rows: ShardDataset, tmp_path: Path, varlen: bool
) -> None:
    model = tiny_llama(seq_len=SEQ_LEN, dtype=torch.float64)
    loader = PackedLoader(rows, seq_len=SEQ_LEN, batch_size=2, seed=3)
    trainer = PackedTrainer(model=model, args=_args(tmp_path), train_loader=loader, varlen=varlen)
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) >= {"input_ids", "labels", "position_ids"}
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape == ((1, 2 * SEQ_LEN) if varlen else (2, SEQ_LEN))
    with torch.no_grad():
        hf_loss = float(trainer.compute_loss(trainer.model, batch))

    raw = next(iter(PackedLoader(rows, seq_len=SEQ_LEN, batch_size=2, seed=3)))
    picked = [int(r) for r in raw["sequence_rows"] if r >= 0]
    assert len(picked) >= 4  # several rows share each pack
    total, trained = 0.0, 0.0
    with torch.no_grad():
        for i in picked:
            row = rows[i]
            ids = torch.tensor(np.asarray(row["input_ids"]), dtype=torch.long)[None]
            targets = torch.tensor(np.asarray(row["target_ids"]), dtype=torch.long)
            weights = torch.tensor(np.asarray(row["weights"]), dtype=torch.float64)
            ce = F.cross_entropy(model(input_ids=ids).logits[0], targets, reduction="none")
            total += float((ce * weights).sum())
            trained += float(weights.sum())
    assert int((batch["labels"] != -100).sum()) == trained
    # HF's loss casts the logits to float32 (~1e-7 relative); one token trained or left out among
    # the ~thousand here would move it by ~1e-4
    assert hf_loss == pytest.approx(total / trained, rel=1e-6)


def test_resumed_trainer_sees_the_batches_the_uninterrupted_run_had(
    rows: ShardDataset, tmp_path: Path
) -> None:
    def run(out: Path, resume: str | None) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        model = tiny_llama(seq_len=SEQ_LEN)
        model.register_forward_pre_hook(
            lambda _m, _a, kw: seen.append(kw["input_ids"].clone()), with_kwargs=True
        )
        loader = PackedLoader(rows, seq_len=512, batch_size=2, seed=5)
        args = _args(out, max_steps=4, save_strategy="steps", save_steps=2, logging_steps=1)
        trainer = PackedTrainer(model=model, args=args, train_loader=loader)
        trainer.train(resume_from_checkpoint=resume)
        assert len(loader) > 4  # the resume lands mid-epoch
        return seen

    whole = run(tmp_path / "a", None)
    assert len(whole) == 4
    resumed = run(tmp_path / "a", str(tmp_path / "a" / "checkpoint-2"))
    assert len(resumed) == 2
    for got, want in zip(resumed, whole[2:], strict=True):
        assert torch.equal(got, want)


def test_skip_moves_the_position_without_reading(rows: ShardDataset) -> None:
    whole = [b["input_ids"] for b in HFPackedBatches(PackedLoader(rows, seq_len=512, seed=1))]
    batches = HFPackedBatches(PackedLoader(rows, seq_len=512, seed=1)).skip(len(whole) - 2)
    batches.set_epoch(0)
    tail = [b["input_ids"] for b in batches]
    assert len(tail) == 2 and all(torch.equal(a, b) for a, b in zip(tail, whole[-2:], strict=True))


def test_packed_inputs_need_labels(rows: ShardDataset) -> None:
    batch = next(iter(PackedLoader(rows, seq_len=512, fractional=None)))
    with pytest.raises(ValueError, match="missing \\['labels'\\]"):
        hf_packed_inputs(batch)
    with pytest.raises(ValueError, match="train_loader or train_dataset"):
        PackedTrainer(
            model=tiny_llama(seq_len=SEQ_LEN),
            args=_args(Path("unused")),
            train_loader=PackedLoader(rows, seq_len=512),
            train_dataset=rows,
        )
