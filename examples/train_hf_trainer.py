"""Train a tiny Hugging Face causal LM with `transformers.Trainer` straight from shardprep shards.

    python examples/train_hf_trainer.py [BUILD] [--steps 30] [--max-len 512]

BUILD defaults to shards/demo-qwen3 (`make demo`). Needs `transformers` and `accelerate`
(both in the `dev` extra) and torch. No download: the model is built from a config, at random.

The glue is two objects from shardprep.torch: `HFLayout` turns shard rows into the
`input_ids` + `labels` layout (unshifted, -100 on untrained tokens) that HF models, TRL and
axolotl take, and `HFCollate` pads a batch of them. Everything else is plain `Trainer`.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from _demo import ROOT, loss_went_down
from torch.utils.data import Dataset, Subset
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, Trainer, TrainingArguments

from shardprep.torch import HFCollate, HFLayout, ShardDataset


class CompactIds(Dataset[dict[str, np.ndarray]]):
    """Token ids renumbered to the ids the data uses (the model stays tiny: a 151k-row embedding
    table would be nearly all of its compute). -100 labels stay -100. Not needed with a real model."""

    def __init__(self, rows: Dataset[dict[str, np.ndarray]], used: np.ndarray) -> None:
        self.rows = rows
        self.lookup = np.zeros(int(used.max()) + 1, dtype=np.int64)
        self.lookup[used] = np.arange(len(used))

    def __len__(self) -> int:
        return len(self.rows)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        row = self.rows[i]
        labels = row["labels"]
        return {
            "input_ids": self.lookup[row["input_ids"]],
            "labels": np.where(labels >= 0, self.lookup[np.maximum(labels, 0)], labels),
        }


def train(
    build: str, *, steps: int = 30, max_len: int = 512, output_dir: str | None = None
) -> list[float]:
    """Train for `steps` steps; returns the logged training losses."""
    ds = ShardDataset(build, "train")
    keep = np.flatnonzero(ds.lengths < max_len)  # short rows only: a fast CPU example
    rows: Dataset[dict[str, np.ndarray]] = Subset(HFLayout(ds), keep.tolist())
    used = np.unique(np.concatenate([rows[i]["input_ids"] for i in range(len(keep))]))
    data = CompactIds(rows, used)
    config = LlamaConfig(
        vocab_size=len(used),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_len,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    print(
        f"{ds}: {len(keep)} rows under {max_len} tokens, {len(used)} distinct ids, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params"
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=output_dir or tmp,
            max_steps=steps,
            per_device_train_batch_size=8,
            learning_rate=3e-3,
            warmup_steps=0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
            dataloader_num_workers=0,
        )
        # Padding needs no real pad token: attention_mask hides it and its label is -100.
        trainer = Trainer(
            model=model, args=args, train_dataset=data, data_collator=HFCollate(pad_id=0)
        )
        trainer.remove_callback(PrinterCallback)  # one line per step; the summary is printed below
        trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "shards" / "demo-qwen3"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-len", type=int, default=512, help="train on rows shorter than this")
    args = ap.parse_args(argv)
    return loss_went_down(train(args.build, steps=args.steps, max_len=args.max_len))


if __name__ == "__main__":
    main()
