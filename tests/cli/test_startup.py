"""`prep --version` and `prep --help` start fast: `--version` loads neither typer nor the library,
and the typer application imports the library only inside commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    "numpy",
    "fsspec",
    "pydantic",
    "yaml",
)
# What `prep --version` does without: the command line's own machinery too.
CLI = ("typer", "click", "rich")


def _loaded(code: str, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Run `code` in a fresh interpreter; its stdout lines, and which of `names` it loaded."""
    probe = (
        f"\nimport json, sys\nprint(json.dumps([m for m in {list(names)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code + probe], capture_output=True, text=True, check=True
    )
    *lines, loaded = out.stdout.splitlines()
    return lines, json.loads(loaded)


def test_version_loads_no_cli_machinery_and_no_library() -> None:
    code = (
        "import sys; from shardprep.cli.app import main; sys.argv = ['prep', '--version']; main()\n"
        "print(sorted(m for m in sys.modules if m.startswith('shardprep')))"
    )
    lines, loaded = _loaded(code, HEAVY + CLI)
    assert lines == [
        f"shardprep {__version__}",
        str(["shardprep", "shardprep.cli", "shardprep.cli.app"]),
    ]
    assert loaded == []


def test_version_flag_through_typer_prints_the_same() -> None:
    """Any other use of the flag goes through typer's eager option, with the same line."""
    code = (
        "import sys; from shardprep.cli.app import main; sys.argv = ['prep', '--debug', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    lines, loaded = _loaded(code, HEAVY)
    assert lines == [f"shardprep {__version__}"]
    assert loaded == []


def test_typer_app_imports_no_heavy_module() -> None:
    """What `prep --help` loads: typer, rich and the command modules, none of the library."""
    code = "from shardprep.cli.typer_app import make_app; make_app()"
    lines, loaded = _loaded(code, HEAVY + ("rich.progress", "rich.table"))
    assert lines == [] and loaded == []


def test_a_command_loads_only_its_own_module() -> None:
    code = (
        "import sys\nfrom shardprep.cli.typer_app import app_for\n"
        "app = app_for(['--debug', 'build', 'recipe.yaml', '--force'])\n"
        "print([c.name for c in app.registered_commands])\n"
        "print(sorted(m for m in sys.modules if m.startswith('shardprep.cli.')))"
    )
    lines, _ = _loaded(code, ())
    assert lines == [
        "['build']",
        str(sorted(f"shardprep.cli.{m}" for m in ("app", "build", "errors", "state", "typer_app"))),
    ]


def test_help_and_unknown_words_get_every_command() -> None:
    from shardprep.cli.typer_app import COMMANDS, app_for

    for args in (["--help", "build"], ["biuld"], [], ["--install-completion"], ["x", "build"]):
        assert [c.name for c in app_for(args).registered_commands] == list(COMMANDS), args


def test_app_attribute_is_the_whole_application() -> None:
    from shardprep.cli import app
    from shardprep.cli.typer_app import COMMANDS

    assert [c.name for c in app.app.registered_commands] == list(COMMANDS)
    assert app.app is app.app  # made once


LAZY = ("pyarrow", "numpy", "tokenizers", "jinja2", "fsspec", "asyncio", "multiprocessing")
LAZY += ("shardprep.sources.readers", "shardprep.sources.hub", "shardprep.build.lock")


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo recipe, built once: (recipe, output)."""
    from shardprep.build.run import build
    from shardprep.recipe import load_recipe

    recipe = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    parsed, base_dir = load_recipe(recipe)
    out = tmp_path_factory.mktemp("startup") / "out"
    assert build(parsed.model_copy(update={"output": str(out)}), base_dir).status == "built"
    return recipe, out


def test_up_to_date_build_loads_no_row_machinery(demo_build: tuple[Path, Path]) -> None:
    """Loading a recipe and the quick up-to-date check (a no-op `prep build`) import neither
    pyarrow, numpy, tokenizers, jinja2 nor any renderer family: those load where rows are made;
    nor fsspec (and asyncio), for a local output and local files; nor the file readers, the Hub,
    the output lock or multiprocessing."""
    recipe, out = demo_build
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


def test_up_to_date_build_as_json_loads_no_rich(demo_build: tuple[Path, Path]) -> None:
    """`prep build --json` of an up-to-date build: rich loads for terminal output only; and once
    the manifest records the recipe file (the first no-op after a library build does), neither
    the recipe model nor the task or source machinery loads, nor pydantic (the manifest is trusted
    by its sealed quick key, not validated again)."""
    recipe, out = demo_build
    code = (
        "import sys; from shardprep.cli.app import main\n"
        f"sys.argv = ['prep', 'build', {str(recipe)!r}, '-o', {str(out)!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    first, _ = _loaded(code, ())
    assert json.loads(first[0])["status"] == "up_to_date"
    model = (
        "shardprep.recipe",
        "shardprep.tasks",
        "shardprep.sources.source",
        "shardprep.tokenizer",
    )
    lines, loaded = _loaded(code, ("rich", *LAZY, *model))
    assert json.loads(lines[0])["status"] == "up_to_date"
    assert loaded == []
