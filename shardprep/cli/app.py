"""`prep`: the typer application. Commands parse options, call the library, print."""

from __future__ import annotations

import typer

from shardprep import __version__
from shardprep.cli import build as build_cmd
from shardprep.cli import renderers as renderers_cmd
from shardprep.cli import show as show_cmd
from shardprep.cli import validate as validate_cmd
from shardprep.cli.state import STATE

app = typer.Typer(
    name="prep",
    help="Prepare tokenized training shards for chat-model fine-tuning.\n\n"
    "  prep build recipe.yaml      build shards + manifest.json\n\n"
    "  prep show shards/NAME       inspect a build",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shardprep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    STATE.debug = debug


app.command("build")(build_cmd.build)
app.command("validate")(validate_cmd.validate)
app.command("show")(show_cmd.show)
app.command("renderers")(renderers_cmd.renderers)


def main() -> None:
    app()
