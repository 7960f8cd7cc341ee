"""to_tinker_datum, only where the tinker SDK is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardprep.torch import ShardDataset, to_tinker_datum

pytest.importorskip("tinker")


def test_row_to_tinker_datum(demo_shards: Path, cache_dir: str) -> None:
    row = ShardDataset(str(demo_shards), cache_dir=cache_dir)[0]
    datum = to_tinker_datum(row)
    assert datum.model_input.to_ints() == row["input_ids"].tolist()
    assert set(datum.loss_fn_inputs) == {"target_tokens", "weights"}
