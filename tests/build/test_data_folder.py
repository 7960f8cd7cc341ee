"""Generic Parquet readers pointed at a build's data folder (the manifest's `data_dir`), as the README says.

The build folder itself also holds manifest.json, which pyarrow would try to read as Parquet; the data
folder holds only shards, `_units/` (ignored by pyarrow: a leading `_`) and, when rows were skipped,
`skipped.jsonl` (not Parquet: `exclude_invalid_files=True`, or list the shards from the manifest).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
runner = CliRunner()


def _build(tmp: Path, *, bad_rows: int) -> tuple[Path, dict[str, Any]]:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(40)
    ]
    rows += [{"messages": [{"role": "wizard", "content": "x"}]}] * bad_rows  # skipped: bad role
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "folder",
        "output": str(tmp / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"path": "d.jsonl"}],
        "split": {"test_size": 5, "seed": 0},
        "shards": {"max_rows": 8},
        "on_error": "skip",
        "workers": 1,
    }
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = runner.invoke(app, ["build", str(tmp / "r.yaml"), "--quiet"])
    assert res.exit_code == 0, res.output
    out = tmp / "out"
    return out, json.loads((out / "manifest.json").read_text())


def _train_ids(m: dict[str, Any], build: Path) -> list[list[int]]:
    import pyarrow.parquet as pq

    return [
        r
        for s in m["splits"]["train"]["shards"]
        for r in pq.read_table(build / s["path"]).column("input_ids").to_pylist()
    ]


def test_data_folder_reads_with_pyarrow_dataset(tmp_path: Path) -> None:
    build, m = _build(tmp_path, bad_rows=0)
    with pytest.raises(pa.ArrowInvalid):  # the build folder: manifest.json is not Parquet
        ds.dataset(build, format="parquet").count_rows()
    data = build / m["data_dir"]
    both = ds.dataset(data, format="parquet")
    assert both.count_rows() == m["splits"]["train"]["rows"] + m["splits"]["test"]["rows"]
    # One split: its files start with the split's name (or take the list from the manifest).
    train = ds.dataset(sorted(str(p) for p in data.glob("train-*.parquet")), format="parquet")
    assert train.count_rows() == m["splits"]["train"]["rows"] == 35
    assert sorted(train.to_table().column("input_ids").to_pylist()) == sorted(_train_ids(m, build))


def test_skipped_rows_file_needs_exclude_invalid_files(tmp_path: Path) -> None:
    build, m = _build(tmp_path, bad_rows=2)
    data = build / m["data_dir"]
    assert m["skipped_sample"] and (build / m["skipped_sample"]).parent == data
    with pytest.raises(pa.ArrowInvalid):  # skipped.jsonl sits beside the shards
        ds.dataset(data, format="parquet").count_rows()
    both = ds.dataset(data, format="parquet", exclude_invalid_files=True)
    assert both.count_rows() == m["splits"]["train"]["rows"] + m["splits"]["test"]["rows"] == 40
    train = ds.dataset(
        [str(build / s["path"]) for s in m["splits"]["train"]["shards"]], format="parquet"
    )
    assert train.count_rows() == m["splits"]["train"]["rows"]
