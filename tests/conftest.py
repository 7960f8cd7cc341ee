"""Shared fixtures. Tokenizers are loaded once per session (they are the slow part)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from shardprep.tokenizer import LoadedTokenizer, load_tokenizer

# Tests never reach the network: Hub lookups resolve from the local cache or fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"


@functools.cache
def fixture_tokenizer(name: str) -> LoadedTokenizer:
    """One of tests/fixtures/tokenizers/{llama3,qwen3,deepseek_v3,toy}, cached for the session."""
    return load_tokenizer(str(FIXTURES / "tokenizers" / name))


@pytest.fixture(scope="session")
def tokenizer_for() -> Callable[[str], LoadedTokenizer]:
    return fixture_tokenizer
