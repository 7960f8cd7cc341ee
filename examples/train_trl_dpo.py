"""TRL's DPO trained straight from a shardprep dpo/1 build: the build's tokens, nothing re-tokenized.

    python examples/train_trl_dpo.py [BUILD] [--steps 10] [--max-len 1024]

BUILD defaults to shards/dpo-qwen3, built from configs/dpo-qwen3.yaml when missing. Needs `trl`
(the `dev` extra). No download: the policy is built at random from a config with the vocabulary of
the build's own tokenizer, and the reference model is its copy (a real run loads both with
`from_pretrained`).

`dpo_dataset(build)` gives each pair as TRL's prompt_ids / chosen_ids / rejected_ids (the
completion is exactly the side's weight > 0 tokens). TRL's own DPOTrainer tokenizes every dataset
it is given, so `PretokenizedDPOTrainer` (DPOTrainer, taking such a dataset as it is) trains it;
`max_length=None` because the build already applied its own.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _demo import ROOT, ensure_build
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback
from trl import DPOConfig

from shardprep.torch import ShardDataset
from shardprep.torch.trl import PretokenizedDPOTrainer, build_tokenizer, dpo_dataset


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "shards" / "dpo-qwen3"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument(
        "--max-len", type=int, default=1024, help="train on pairs whose two sides total less"
    )
    args = ap.parse_args(argv)
    ensure_build(Path(args.build), "dpo-qwen3.yaml")

    rows = ShardDataset(args.build, "train")
    keep = np.flatnonzero(rows.lengths < args.max_len)  # chosen + rejected tokens per pair
    train = dpo_dataset(rows).select(keep)
    tokenizer = build_tokenizer(args.build)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=args.max_len,
        tie_word_embeddings=True,
    )
    policy = LlamaForCausalLM(config)
    reference = copy.deepcopy(policy).eval()
    print(f"{rows}: {len(train)} pairs under {args.max_len} tokens, vocabulary {len(tokenizer)}")
    with tempfile.TemporaryDirectory() as tmp:
        dpo = DPOConfig(
            output_dir=tmp,
            max_length=None,  # the build applied its own max_length
            per_device_train_batch_size=2,
            max_steps=args.steps,
            learning_rate=1e-3,
            beta=0.1,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = PretokenizedDPOTrainer(
            model=policy,
            ref_model=reference,
            args=dpo,
            train_dataset=train,
            processing_class=tokenizer,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    losses = [h["loss"] for h in logs]
    accuracy = float(np.mean([h["rewards/accuracies"] for h in logs[len(logs) // 2 :]]))
    print(
        f"DPO loss {losses[0]:.4f} (log 2 = 0.6931: policy = reference) -> {losses[-1]:.4f} "
        f"over {len(losses)} steps; reward accuracy over the second half {accuracy:.2f}"
    )
    return {"losses": losses, "steps": len(losses), "accuracy": accuracy}


if __name__ == "__main__":
    main()
