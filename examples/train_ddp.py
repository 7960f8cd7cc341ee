"""A plain torch training loop with DistributedDataParallel on packed batches from a shardprep build.

    python examples/train_ddp.py [BUILD] [--steps 10] [--world 2] [--seq-len 1024]
    torchrun --nproc-per-node 2 examples/train_ddp.py [BUILD] ...   (the same, launched by torchrun)

BUILD defaults to shards/demo-qwen3, built from configs/demo.yaml when missing. Runs on CPU (gloo);
with GPUs use the nccl backend and move the model and batches to the device. No download: the model
is built at random from a config with the vocabulary of the build's own tokenizer.

Every rank builds the same `PackedLoader` (the plan depends on the build and seq_len only) and takes
its share of each global step (rank / world_size come from torch.distributed). The loss is the
shard's own weighted loss over target_ids, normalised by the trained weight of the whole global
step (all ranks), so the DDP-averaged gradient is the gradient of one big batch's mean loss. The
loader's state_dict is the global position, the same on every rank: save it with the model and
load it into any world size to resume exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from _demo import ROOT, ensure_build
from torch.nn.parallel import DistributedDataParallel

from shardprep.torch import PackedLoader, ShardDataset
from shardprep.torch.trl import build_tokenizer


def train(args: argparse.Namespace) -> dict[str, Any]:
    """One rank's loop (torch.distributed already initialised)."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
    )  # in the ranks only: the launcher needs none

    rank, world = dist.get_rank(), dist.get_world_size()
    ds = ShardDataset(args.build, "train")
    loader = PackedLoader(ds, seq_len=args.seq_len, batch_size=args.batch, seed=0)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    config = LlamaConfig(
        vocab_size=len(build_tokenizer(args.build)),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=args.seq_len,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    model = DistributedDataParallel(LlamaForCausalLM(config))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses: list[float] = []
    rows: list[int] = []
    step = 0
    while step < args.steps:
        loader.set_epoch(loader.epoch)
        for batch in loader:
            # Position_ids restarting at every row, no attention_mask: a block-causal mask.
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
            weights = batch["weights"]
            per_token = F.cross_entropy(
                logits.flatten(0, 1), batch["target_ids"].clamp(min=0).flatten(), reduction="none"
            )
            step_weight = weights.sum()
            dist.all_reduce(step_weight)  # the trained weight of the global step
            # DDP averages gradients over ranks: x world makes it the global step's weighted mean.
            loss = (per_token * weights.flatten()).sum() * world / step_weight.clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item() / world)
            rows += [int(r) for r in batch["sequence_rows"] if r >= 0]
            step += 1
            if step >= args.steps:
                break
    totals = torch.tensor(losses, dtype=torch.float64)
    dist.all_reduce(totals)  # the global step's loss is the sum of the ranks' shares
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, {"rows": rows, "state": loader.state_dict()})
    return {
        "rank": rank,
        "losses": totals.tolist(),
        "rows": [g["rows"] for g in gathered],
        "states": [g["state"] for g in gathered],
        "steps_per_epoch": len(loader),
    }


def _worker(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    torch.set_num_threads(
        max(1, (os.cpu_count() or 1) // world)
    )  # as torchrun does: no oversubscription
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        result = train(args)
        if rank == 0 and args.result:
            Path(args.result).write_text(json.dumps(result))
        # Every rank done before any closes its connections: a rank that tears down gloo while
        # its peer still reads from it can abort that peer (seen on a loaded 2-core machine).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "shards" / "demo-qwen3"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--world", type=int, default=2, help="processes (ignored under torchrun)")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1, help="packs per rank per step")
    ap.add_argument("--result", help=argparse.SUPPRESS)  # where rank 0 writes its summary (JSON)
    args = ap.parse_args(argv)
    ensure_build(Path(args.build))

    with tempfile.TemporaryDirectory() as tmp:
        args.result = args.result or os.path.join(tmp, "result.json")
        if "RANK" in os.environ:  # launched by torchrun: this process is one rank
            dist.init_process_group("gloo")
            try:
                result = train(args)
                dist.barrier()
            finally:
                dist.destroy_process_group()
            if result["rank"] != 0:
                return result
        else:
            mp.spawn(_worker, args=(args.world, _free_port(), args), nprocs=args.world, join=True)
            result = json.loads(Path(args.result).read_text())
    losses = result["losses"]
    per_rank = [len(r) for r in result["rows"]]
    overlap = sum(per_rank) - len(set().union(*map(set, result["rows"])))  # rows on two ranks
    print(
        f"{len(result['rows'])} ranks, {len(losses)} steps of {result['steps_per_epoch']} an epoch: "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; rows per rank {per_rank}, shared {overlap}; "
        f"loader state {result['states'][0]}"
    )
    return result


if __name__ == "__main__":
    main()
