"""HF `Trainer` on packed, padding-free batches from a shardprep build (no padding but a pack's tail).

    python examples/train_hf_packed.py [BUILD] [--steps 20] [--seq-len 1024] [--batch 2]

BUILD defaults to shards/demo-qwen3, built from configs/demo.yaml when missing. Needs
`transformers` and `accelerate` (the `dev` extra). No download: the model is built at random from a
config, with the vocabulary of the build's own tokenizer (a real run loads its model with
`from_pretrained`).

The glue is two library objects: `PackedLoader` plans the whole split into packs of `--seq-len`
positions once (best-fit decreasing; `prep show BUILD --pack SEQ_LEN` prints the same plan) and
yields fixed-shape [batch, seq_len] batches whose position_ids restart at every row, and
`PackedTrainer` is `Trainer` reading them: transformers turns the restarting position_ids into a
block-causal mask (sdpa here; pass varlen=True with flash attention), so no row attends to another.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _demo import ROOT, ensure_build, loss_went_down
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, TrainingArguments

from shardprep.torch import PackedLoader, ShardDataset
from shardprep.torch.hf_trainer import PackedTrainer
from shardprep.torch.trl import build_tokenizer


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "shards" / "demo-qwen3"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2, help="packs per step")
    args = ap.parse_args(argv)
    ensure_build(Path(args.build))

    ds = ShardDataset(args.build, "train")
    loader = PackedLoader(ds, seq_len=args.seq_len, batch_size=args.batch, seed=0)
    plan = loader.plan
    print(
        f"{ds}: {plan.packs} packs of {args.seq_len}, {plan.efficiency:.1%} filled, "
        f"{len(loader)} steps an epoch, {plan.rows_over_length} rows cut to fit"
    )
    vocab = len(build_tokenizer(args.build))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=args.seq_len,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config)
    with tempfile.TemporaryDirectory() as tmp:
        training = TrainingArguments(
            output_dir=tmp,
            max_steps=args.steps,
            learning_rate=3e-3,
            warmup_steps=0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = PackedTrainer(model=model, args=training, train_loader=loader)
        trainer.remove_callback(PrinterCallback)  # one line per step; the summary is printed below
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = loss_went_down(losses, f"; loader at {loader.state_dict()}")
    return {**summary, "state": loader.state_dict()}


if __name__ == "__main__":
    main()
