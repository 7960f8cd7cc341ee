"""The HF layout (input_ids + labels, unshifted, -100 untrained): exact against the shard's own
shifted targets and weights, by row and through a real HF model's loss; the Trainer example trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shardprep.torch import IGNORE_INDEX, HFCollate, HFLayout, PadCollate, ShardDataset, hf_example

from ._examples import load_example
from ._models import tiny_llama


def test_rows_match_the_shifted_shard_columns(demo_shards: Path, cache_dir: str) -> None:
    ds = ShardDataset(str(demo_shards), "train", cache_dir=cache_dir)
    hf = HFLayout(ds)
    assert len(hf) == len(ds)
    for i in (0, 1, len(ds) - 1):
        row, ex = ds[i], hf[i]
        assert set(ex) == {"input_ids", "labels"}
        assert len(ex["input_ids"]) == len(ex["labels"]) == len(row["input_ids"]) + 1
        assert (ex["input_ids"][:-1] == row["input_ids"]).all() and (
            ex["input_ids"][1:] == row["target_ids"]
        ).all()
        trained = row["weights"] > 0
        assert ex["labels"][0] == IGNORE_INDEX  # nothing predicts the first token
        assert (ex["labels"][1:][trained] == row["target_ids"][trained]).all()
        assert (ex["labels"][1:][~trained] == IGNORE_INDEX).all()
        assert trained.any()


def test_fractional_weights_refused_unless_asked() -> None:
    row = {"input_ids": [5, 6, 7], "target_ids": [6, 7, 8], "weights": [0.0, 0.5, 0.25], "index": 3}
    with pytest.raises(ValueError, match=r"row 3 has loss weight 0\.5.*as_trained"):
        hf_example(row)
    ex = hf_example(row, fractional="as_trained")
    assert ex["input_ids"].tolist() == [5, 6, 7, 8]
    assert ex["labels"].tolist() == [IGNORE_INDEX, IGNORE_INDEX, 7, 8]
    with pytest.raises(ValueError, match="fractional must be one of"):
        HFLayout([row], fractional="round")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs rows with target_ids"):
        hf_example({"chosen_input_ids": [1], "rejected_input_ids": [2]})


def test_collate_pads_with_ignored_labels() -> None:
    rows = [
        {"input_ids": [1, 2], "target_ids": [2, 3], "weights": [1.0, 1.0]},
        {"input_ids": [4], "target_ids": [5], "weights": [0.0]},
    ]
    b = HFCollate(pad_id=9, pad_to_multiple_of=4)(rows)
    assert b["input_ids"].tolist() == [[1, 2, 3, 9], [4, 5, 9, 9]]
    assert b["labels"].tolist() == [[-100, 2, 3, -100], [-100, -100, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert HFCollate(pad_id=9)([hf_example(r) for r in rows])["input_ids"].tolist() == [
        [1, 2, 3],
        [4, 5, 9],
    ]


def test_hf_model_loss_equals_the_weighted_shard_loss() -> None:
    """HF shifts labels inside its loss; on the same rows it must equal the mean CE over the
    shard's trained targets (binary weights), so the layout is neither off by one nor leaky."""
    rng = np.random.default_rng(0)
    rows = []
    for n in (12, 7, 20):
        tokens = rng.integers(1, 50, n + 1)
        weights = (rng.random(n) < 0.6).astype(np.float32)
        weights[-1] = 1.0
        rows.append({"input_ids": tokens[:-1], "target_ids": tokens[1:], "weights": weights})
    model = tiny_llama(vocab=50, seq_len=64, layers=1, attn=None).eval()
    with torch.no_grad():
        hf = HFCollate(pad_id=0)(rows)
        hf_loss = model(**hf).loss
        pad = PadCollate(0)(rows)
        logits = model(input_ids=pad["input_ids"], attention_mask=pad["attention_mask"]).logits
        per = F.cross_entropy(
            logits.flatten(0, 1), pad["target_ids"].clamp(min=0).flatten(), reduction="none"
        )
        ours = (per * pad["weights"].flatten()).sum() / pad["weights"].sum()
    assert torch.allclose(hf_loss, ours, atol=1e-5), (hf_loss, ours)


def test_trainer_example_trains(demo_shards: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    result = load_example("train_hf_trainer").main(
        [str(demo_shards), "--steps", "8", "--max-len", "128"]
    )
    assert result["steps"] == 8 and result["last"] < result["first"]
