"""Train a tiny causal LM on CPU from shardprep shards, with the shard weights as the loss mask.

    python examples/train_tiny.py [BUILD] [--steps 40]

BUILD defaults to shards/demo-qwen3 (`make demo`); it is built from configs/demo.yaml when missing.
The point is the data path (ShardDataset -> token-budget batches -> padded tensors -> weighted
loss), so the model is as small as will still learn: 2 layers, 64 dims, well under a minute on CPU.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _demo import ROOT, ensure_build
from torch import nn

from shardprep.torch import PadCollate, ResumableLoader, ShardDataset, TokenBudgetBatchSampler


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(b, t, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        # Right padding only, so causal attention alone keeps real tokens from seeing the pads.
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    def __init__(
        self, vocab: int, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 4096
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "shards" / "demo-qwen3"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument(
        "--max-tokens", type=int, default=2048, help="tokens per batch, padding included"
    )
    ap.add_argument(
        "--vocab",
        type=int,
        default=2048,
        help="output classes: most frequent ids + one for the rest",
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    ensure_build(Path(args.build))

    ds = ShardDataset(args.build, "train")
    # A 151k-token output layer would be nearly all of the compute; the tiny model predicts the
    # most frequent ids of the data instead, with one shared class for all the others.
    ids = np.concatenate([ds[i]["target_ids"] for i in range(len(ds))])
    values, counts = np.unique(ids, return_counts=True)
    keep = values[np.argsort(-counts, kind="stable")[: args.vocab - 1]]
    top = max(
        int(values.max()),
        max(int(ds[i]["input_ids"].max()) for i in range(len(ds))),
        ds.pad_id or 0,
    )
    remap = torch.full((top + 1,), args.vocab - 1, dtype=torch.long)
    remap[torch.from_numpy(keep.astype(np.int64))] = torch.arange(len(keep))
    vocab = len(keep) + 1

    sampler = TokenBudgetBatchSampler(ds.lengths, args.max_tokens, pad_to_multiple_of=64, seed=0)
    loader = ResumableLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=PadCollate(ds.pad_id, pad_to_multiple_of=64),
        num_workers=1,
    )
    model = TinyLM(vocab, max_len=-(-int(ds.lengths.max()) // 64) * 64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    print(
        f"{ds}: {len(values)} distinct ids, {vocab} classes, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params"
    )

    step, epoch, started, losses = 0, 0, time.monotonic(), []
    while step < args.steps:
        loader.set_epoch(epoch)
        for batch in loader:
            logits = model(remap[batch["input_ids"]])
            targets = remap[batch["target_ids"].clamp(min=0)]  # padded targets carry weight 0
            weights = batch["weights"]
            per_token = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
            loss = (per_token * weights.flatten()).sum() / weights.sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step == 1 or step % 5 == 0:
                print(
                    f"step {step:3d}  loss {loss.item():.3f}  ({int(batch['lengths'].sum())} tokens)"
                )
            if step >= args.steps:
                break
        epoch += 1
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(
        f"loss {first:.3f} -> {last:.3f} (uniform over the vocabulary: {math.log(vocab):.3f}) "
        f"in {time.monotonic() - started:.1f}s"
    )
    if not last < first:
        raise SystemExit("loss did not go down")


if __name__ == "__main__":
    main()
