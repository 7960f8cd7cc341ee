"""`prep --version` and `prep --help` start fast: the CLI imports the library only inside commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from shardprep import __version__

HEAVY = (
    "datasets",
    "torch",
    "ray",
    "s3fs",
    "gcsfs",
    "transformers",
    "jinja2",
    "pandas",
    "huggingface_hub",
    "tokenizers",
    "fastokens",
    "pyarrow",
)


def test_cli_app_imports_no_heavy_module() -> None:
    code = (
        "import json, sys; import shardprep.cli.app; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_version_runs_without_the_library() -> None:
    code = (
        "import sys; from shardprep.cli.app import main; sys.argv = ['prep', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {list(HEAVY)!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"shardprep {__version__}", "[]"]


LAZY = ("pyarrow", "numpy", "tokenizers", "jinja2")


def test_up_to_date_build_loads_no_row_machinery(tmp_path) -> None:
    """Loading a recipe and the quick up-to-date check (a no-op `prep build`) import neither
    pyarrow, numpy, tokenizers, jinja2 nor any renderer family: those load where rows are made."""
    from pathlib import Path

    from shardprep.build.run import build
    from shardprep.recipe import load_recipe

    recipe = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    parsed, base_dir = load_recipe(recipe)
    out = tmp_path / "out"
    assert build(parsed.model_copy(update={"output": str(out)}), base_dir).status == "built"
    code = (
        "import json, sys\nfrom pathlib import Path\n"
        "from shardprep.build.run import build\nfrom shardprep.recipe import load_recipe\n"
        f"r, b = load_recipe(Path({str(recipe)!r}))\n"
        f"res = build(r.model_copy(update={{'output': {str(out)!r}}}), b)\n"
        "families = sorted(m for m in sys.modules if m.startswith('shardprep.renderers.')\n"
        "    and m.split('.')[-1] not in ('base', 'chunks', 'content', 'tools'))\n"
        f"print(json.dumps([res.status, [m for m in {list(LAZY)!r} if m in sys.modules], families]))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(run.stdout) == ["up_to_date", [], []]
