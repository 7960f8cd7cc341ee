"""Shards for the reader tests: the demo build through the library, and small hand-written builds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from shardprep.build.run import build  # noqa: E402
from shardprep.recipe import load_recipe  # noqa: E402

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
TOY_TOKENIZER = "tests/fixtures/tokenizers/toy"


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo recipe built once for every reader test (480 train rows in 3 shards, 20 test)."""
    out = tmp_path_factory.mktemp("reader") / "demo"
    recipe, base = load_recipe(DEMO)
    build(recipe.model_copy(update={"output": str(out)}), base)
    return out


@pytest.fixture(scope="session")
def toy_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo SFT and DPO recipes built with the toy tokenizer (744 ids): a tiny HF model can use
    the real vocabulary, so TRL and HF Trainer run on CPU in seconds with the build's own ids.
    Keys "sft" (477 train rows) and "dpo" (178 train pairs)."""
    root = tmp_path_factory.mktemp("toy-builds")
    out: dict[str, Path] = {}
    for key, config in (("sft", DEMO), ("dpo", ROOT / "configs" / "dpo-qwen3.yaml")):
        recipe, base = load_recipe(config)
        update = {"output": str(root / key), "tokenizer": str(ROOT / TOY_TOKENIZER)}
        build(recipe.model_copy(update=update), base)
        out[key] = root / key
    return out


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("reader-cache"))


def write_build(
    folder: Path,
    schema: str,
    tables: list[pa.Table],
    *,
    split: str = "train",
    row_group_rows: int = 1024,
) -> Path:
    """A minimal finished build: the given tables as shards plus a manifest (the writer of these
    schemas comes later; this is the layout it will produce)."""
    data = folder / "data-test"
    data.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, table in enumerate(tables):
        rel = f"data-test/{split}-{i:05d}.parquet"
        pq.write_table(table, folder / rel, compression="zstd", row_group_size=row_group_rows)
        digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        shards.append(
            {
                "path": rel,
                "rows": table.num_rows,
                "tokens": 0,
                "trained_tokens": 0,
                "bytes": 0,
                "sha256": digest,
            }
        )
    manifest: dict[str, Any] = {
        "format": "shardprep",
        "format_version": 1,
        "schema": schema,
        "fingerprint": "test",
        "tokenizer": {"pad_id": 0, "eos_id": 1},
        "splits": {
            split: {
                "rows": sum(s["rows"] for s in shards),
                "tokens": 0,
                "trained_tokens": 0,
                "shards": shards,
            }
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def make_build() -> Callable[..., Path]:
    return write_build
