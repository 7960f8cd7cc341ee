"""`prep --version` and `prep --help` start fast: the CLI imports the library only inside commands."""

from __future__ import annotations

import json
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
