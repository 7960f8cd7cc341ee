"""The typer application: commands registered, options parsed (`shardprep.cli.app.main` runs it).

Loaded only when a command runs or `--help` is asked for: `prep --version` answers without typer.
"""

from __future__ import annotations

import importlib

import typer

from shardprep.cli.app import version_line
from shardprep.cli.state import STATE

# Command name -> its --help panel. A command is the function of its name in shardprep.cli.<name>;
# command modules import the library inside their functions, so that `--help` loads no
# tokenizer, Arrow or template engine (tests/cli/test_startup.py).
COMMANDS: dict[str, str] = {
    "validate": "Prepare",
    "preview": "Prepare",
    "build": "Prepare",
    "show": "Inspect",
    "verify": "Inspect",
    "ls": "Inspect",
    "renderers": "Reference",
    "formats": "Reference",
}


def _examples(*items: tuple[str, str]) -> str:
    """An examples block for --help (rich markup; blank lines keep typer from joining the lines)."""
    width = max(len(cmd) for cmd, _ in items)
    lines = [f"  [cyan]{cmd.ljust(width)}[/]  [dim]# {what}[/]" for cmd, what in items]
    return "[bold]Examples[/]\n\n" + "\n\n".join(lines)


# Examples shown under each command's --help; the docstrings say what the command does.
_EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "build": (
        ("prep build configs/demo.yaml", "build into the recipe's output:"),
        ("prep build configs/demo.yaml -o s3://bucket/demo", "build to an object store"),
        ("prep build configs/demo.yaml --force --json", "rebuild even if up to date; JSON result"),
    ),
    "validate": (("prep validate configs/demo.yaml", "keys, tokenizer, renderer and inputs"),),
    "preview": (
        ("prep preview configs/demo.yaml", "first 5 rows of every source"),
        ("prep preview configs/demo.yaml -n 1 --source alpaca", "one row of one source"),
        ("prep preview configs/demo.yaml --html preview.html", "a page to share"),
    ),
    "show": (
        ("prep show shards/demo-qwen3", "summary, row 0 and mask health"),
        (
            "prep show shards/demo-qwen3 --split test --row 3 --row 7",
            "decode rows 3 and 7 of the test split",
        ),
        (
            "prep show shards/demo-qwen3 --sample 5 --seed 1",
            "five random rows, the same for the same seed",
        ),
        ("prep show s3://bucket/demo --json", "a build on an object store, as JSON"),
        ("prep show shards/demo-qwen3 --html report.html", "a self-contained page to share"),
    ),
    "verify": (("prep verify shards/demo-qwen3", "re-hash every shard against the manifest"),),
    "ls": (("prep ls shards/", "every build under a folder"),),
    "renderers": (("prep renderers --json", "renderer names and model families as JSON"),),
    "formats": (
        ("prep formats", "every source format: fields, an example row, the columns: mapping"),
        ("prep formats sharegpt", "one format"),
    ),
}


def _version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    STATE.debug = debug


def make_app(only: str | None = None) -> typer.Typer:
    """The application with every command, or with the one named `only` (all a run of that
    command needs: the other command modules stay unloaded and typer builds one command)."""
    app = typer.Typer(
        name="prep",
        help="Prepare tokenized training shards for chat-model fine-tuning.",
        epilog=_examples(
            ("prep validate configs/demo.yaml", "check a recipe without reading data"),
            (
                "prep preview configs/demo.yaml -n 3",
                "see what the first rows train on, writing nothing",
            ),
            ("prep build configs/demo.yaml", "build shards + manifest.json"),
            (
                "prep show shards/demo-qwen3",
                "inspect a build: tables, histogram, rows, mask health",
            ),
            ("prep --install-completion", "shell completion for bash, zsh, fish or PowerShell"),
        ),
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for name, panel in COMMANDS.items():
        if only in (None, name):
            fn = getattr(importlib.import_module(f"shardprep.cli.{name}"), name)
            app.command(name, epilog=_examples(*_EXAMPLES[name]), rich_help_panel=panel)(fn)
    return app


def app_for(args: list[str]) -> typer.Typer:
    """The application `prep ARGS` runs: the named command's alone when only `--debug` comes
    before its name, else every command (`--help`, completion, a misspelt name)."""
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            plain = arg in COMMANDS and all(a == "--debug" for a in args[:i])
            return make_app(arg if plain else None)
    return make_app()
