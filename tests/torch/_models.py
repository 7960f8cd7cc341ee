"""The tiny random-weight Llama the reader's loss tests run real HF code on (CPU, no download)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

TOY_VOCAB = 744  # the toy tokenizer's ids: builds of tests/fixtures/tokenizers/toy fit it


def tiny_llama(
    *,
    vocab: int = TOY_VOCAB,
    seq_len: int = 2048,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    attn: str | None = "sdpa",
) -> Any:
    """A 32-wide LlamaForCausalLM seeded with `seed` (2 key/value heads), in training mode as
    built (TRL logs a step's metrics under "train" only then); `.eval()` it for plain forwards."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=seq_len,
        **({"attn_implementation": attn} if attn is not None else {}),
    )
    return transformers.LlamaForCausalLM(config).to(dtype)
