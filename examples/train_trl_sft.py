"""TRL's `SFTTrainer` trained straight from a shardprep build: the build's tokens, nothing re-tokenized.

    python examples/train_trl_sft.py [BUILD] [--steps 20] [--max-len 512 | --pack 2048]

BUILD defaults to shards/demo-qwen3, built from configs/demo.yaml when missing. Needs `trl` (the
`dev` extra). No download: the model is built at random from a config, with the vocabulary of the
build's own tokenizer (a real run loads its model and tokenizer with `from_pretrained`).

`sft_dataset(build)` is the build's split as SFTTrainer's pre-tokenized `input_ids` + `labels`
(-100 off the trained tokens, so TRL trains exactly the build's weight > 0 tokens);
`skip_prepare_dataset` keeps TRL from re-tokenizing or truncating it, and `padding_free` flattens
each batch into one row whose position_ids restart per sequence (no padding). With `--pack N`
each example is a pack of at most N tokens from the whole-split best-fit plan (TRL's own packed
layout, `seq_lengths` per row), so a step of `--batch` packs is never more than batch x N tokens.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _demo import ROOT, ensure_build, loss_went_down
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback
from trl import SFTConfig, SFTTrainer

from shardprep.torch import ShardDataset
from shardprep.torch.trl import build_tokenizer, sft_dataset


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "shards" / "demo-qwen3"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--max-len", type=int, default=512, help="train on rows shorter than this")
    ap.add_argument("--pack", type=int, help="train on packs of this many tokens (all rows)")
    ap.add_argument("--batch", type=int, default=4, help="rows (or packs) per step")
    args = ap.parse_args(argv)
    ensure_build(Path(args.build))

    rows = ShardDataset(args.build, "train")
    if args.pack:
        train = sft_dataset(rows, seq_len=args.pack)
        what = f"{len(train)} packs of at most {args.pack} tokens"
    else:
        keep = np.flatnonzero(rows.lengths < args.max_len)  # short rows only: a fast CPU example
        train = sft_dataset(rows).select(keep)
        what = f"{len(train)} rows under {args.max_len} tokens"
    tokenizer = build_tokenizer(args.build)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max(args.pack or 0, int(rows.lengths.max()) + 1),
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    print(f"{rows}: {what}, vocabulary {len(tokenizer)}")
    with tempfile.TemporaryDirectory() as tmp:
        sft = SFTConfig(
            output_dir=tmp,
            dataset_kwargs={"skip_prepare_dataset": True},  # the build's tokens, as they are
            padding_free=True,
            max_length=None,  # the build applied its own max_length
            per_device_train_batch_size=args.batch,
            max_steps=args.steps,
            learning_rate=3e-3,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = SFTTrainer(model=model, args=sft, train_dataset=train, processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return loss_went_down([h["loss"] for h in trainer.state.log_history if "loss" in h])


if __name__ == "__main__":
    main()
