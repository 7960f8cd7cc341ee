"""HF `Trainer` on packed, padding-free batches from a PackedLoader (needs `transformers`).

    from shardprep.torch import PackedLoader, ShardDataset
    from shardprep.torch.hf_trainer import PackedTrainer

    loader = PackedLoader(ShardDataset("shards/my-sft"), seq_len=4096, batch_size=4, seed=0)
    PackedTrainer(model=model, args=TrainingArguments(...), train_loader=loader).train()

Trainer has no argument for a dataloader of its own, so this subclass's `get_train_dataloader`
returns the loader's batches as model inputs (`hf.HFPackedBatches`: input_ids, labels,
position_ids; `varlen=True` adds the flash-attention kwargs), and a mid-epoch resume from a
checkpoint moves the loader to the step reached instead of reading the batches before it. The
loader's batch_size and num_workers are the per-device batch and its workers (TrainingArguments'
per_device_train_batch_size and dataloader_num_workers are not used for training); under torchrun
each process's loader takes its rank's share of every global step. Trainer counts the trained
labels of each step (across devices too) and divides the summed loss by it, so a step's loss is
the mean over its trained tokens however they were packed.
Kept out of `shardprep.torch` so importing the reader never imports transformers.
"""

from __future__ import annotations

from typing import Any

from transformers import Trainer

from shardprep.torch.hf import HFPackedBatches
from shardprep.torch.packed import PackedLoader


class PackedTrainer(Trainer):
    def __init__(
        self, *args: Any, train_loader: PackedLoader, varlen: bool = False, **kwargs: Any
    ) -> None:
        if kwargs.get("train_dataset") is not None:
            raise ValueError("give train_loader or train_dataset, not both")
        super().__init__(*args, **kwargs)
        self.train_batches = HFPackedBatches(train_loader, varlen=varlen)

    def get_train_dataloader(self) -> Any:
        return self.train_batches

    def get_resumed_dataloader(self, dataloader: Any, num_batches: int) -> Any:
        return self.train_batches.skip(num_batches)
