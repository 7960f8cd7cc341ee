"""A build loads no pandas: pyarrow's `to_numpy()`, `pa.array` and `ListArray.flatten()` pull it
(or pyarrow.compute) in, over half a CPU-second per process, for nothing a build needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"


def test_a_build_that_merges_its_unit_shards_imports_no_pandas(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i} " * (1 + i % 5)},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(120)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "imports",
        "output": str(tmp_path / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"path": "d.jsonl"}],
        "split": {"test_size": 10, "seed": 0},
        "work_unit_rows": 16,  # several units per split, merged at commit
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shardprep import build, load_recipe\n"
        f"recipe, base = load_recipe({str(tmp_path / 'r.yaml')!r})\n"
        "res = build(recipe, base, workers=1)\n"
        "shards = {k: len(v['shards']) for k, v in res.manifest['splits'].items()}\n"
        "heavy = ['pandas', 'pyarrow.compute', 'pyarrow.dataset']\n"
        "print(json.dumps([res.status, shards, [m for m in heavy if m in sys.modules]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    status, shards, loaded = json.loads(out.stdout.splitlines()[-1])
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert status == "built" and m["stats"]["units"] > 2
    assert shards == {"train": 1, "test": 1}  # the units' shards were read back and merged
    assert loaded == []
