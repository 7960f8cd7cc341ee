"""Training-side reader of shardprep builds (needs the `torch` extra: pip install 'shardprep[torch]').

torch is imported only inside this package, so the CLI and pipeline work without it.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("shardprep.torch needs PyTorch: pip install 'shardprep[torch]'") from exc

from shardprep.torch.collate import IGNORE_INDEX, PackCollate, PadCollate, PairCollate
from shardprep.torch.dataset import ShardDataset
from shardprep.torch.hf import HFCollate, HFLayout, hf_example
from shardprep.torch.loader import ResumableLoader
from shardprep.torch.packed import PackedLoader, collate_packs
from shardprep.torch.prefetch import Prefetcher
from shardprep.torch.samplers import EpochSampler, TokenBudgetBatchSampler
from shardprep.torch.tinker_datum import tinker_available, to_tinker_datum

__all__ = [
    "IGNORE_INDEX",
    "EpochSampler",
    "HFCollate",
    "HFLayout",
    "PackCollate",
    "PackedLoader",
    "PadCollate",
    "PairCollate",
    "Prefetcher",
    "ResumableLoader",
    "ShardDataset",
    "TokenBudgetBatchSampler",
    "collate_packs",
    "hf_example",
    "tinker_available",
    "to_tinker_datum",
]
