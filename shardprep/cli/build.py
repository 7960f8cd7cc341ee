"""`prep build RECIPE`."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
import typer

from shardprep.cli.errors import handle_errors
from shardprep.cli.state import debug

if TYPE_CHECKING:
    from shardprep.build.reuse import BuildResult

# As shardprep.encode.backends names them (kept here so `prep --help` imports no tokenizer).
ENCODERS = ("auto", "fastokens", "tokenizers")
ENCODER_ENV = "SHARDPREP_ENCODER"


@handle_errors(debug)
def build(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild even when the output is up to date."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as JSON (no progress bar)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    output: str = typer.Option(
        None, "--output", "-o", help="Write here instead of the recipe's `output:`."
    ),
    workers: str = typer.Option(
        None,
        "--workers",
        "-w",
        help="Worker processes: a number or 'auto' (default: the recipe's `workers`).",
    ),
    wait: float = typer.Option(
        0.0, "--wait", help="Seconds to wait for another build of the same output to finish."
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="Where units run: 'local' (processes here) or 'ray' (needs shardprep[ray]).",
    ),
    address: str = typer.Option(
        None,
        "--address",
        help=(
            "Ray cluster to join with --engine ray: 'auto' or ray://host:port (default: a local "
            "Ray instance, or $RAY_ADDRESS)."
        ),
    ),
    encoder: str = typer.Option(
        None,
        "--encoder",
        click_type=click.Choice(ENCODERS),
        help=(
            "Token encoder: 'auto' (fastokens where its probe ids equal tokenizers', else "
            "tokenizers), 'fastokens' or 'tokenizers' (default: $SHARDPREP_ENCODER, else auto). "
            "Not part of the fingerprint: the ids are the same."
        ),
    ),
) -> None:
    """Build shards and manifest.json from a recipe.

    Example: prep build configs/demo.yaml
    On a Ray cluster: prep build recipe.yaml --engine ray --address auto
    """
    if workers is not None and workers != "auto" and not workers.isdigit():
        raise typer.BadParameter("--workers takes a number or 'auto'")
    if engine not in ("local", "ray"):
        raise typer.BadParameter("--engine takes 'local' or 'ray'")
    if address is not None and engine != "ray":
        raise typer.BadParameter("--address needs --engine ray")
    if output is not None and "://" not in output:
        output = str(Path(output).resolve())
    from shardprep.build.reuse import from_recipe_file, recipe_file_digest

    digest = recipe_file_digest(recipe, output)
    if not force and engine == "local" and digest is not None:
        # Up to date from the recipe file and file stats alone: no recipe model, tokenizer or
        # task machinery loads (a no-op build in a fraction of a second).
        reused = from_recipe_file(recipe, output=output, digest=digest)
        if reused is not None:
            _report(reused, as_json=as_json)
            return

    from shardprep.build.early import start_encoder_parse

    start_encoder_parse(recipe, encoder=encoder, output=output, force=force)
    # No cyclic collection while the build's modules load and it plans (they make few cycles);
    # the build turns it back on, tuned, when it starts working (shardprep/build/runtime.py).
    gc.disable()

    from shardprep.build.run import build as run_build
    from shardprep.recipe import load_recipe

    parsed, base_dir = load_recipe(recipe)
    if output is not None:
        parsed = parsed.model_copy(update={"output": output})
    progress = None
    if not (as_json or quiet):
        from rich.console import Console

        from shardprep.cli.progress import RichProgress

        progress = RichProgress(Console(stderr=True))
    if encoder is not None:  # checked by click.Choice while parsing (exit 2)
        # Through the environment, so that pool workers (spawned) make the same choice.
        os.environ[ENCODER_ENV] = encoder
    result = run_build(
        parsed,
        base_dir,
        force=force,
        workers=workers,
        progress=progress,
        lock_wait_s=wait,
        engine=engine,
        address=address,
        recipe_file=digest,
    )
    _report(result, as_json=as_json)


def _report(result: BuildResult, *, as_json: bool) -> None:
    m = result.manifest
    st = m["stats"]
    warnings = m.get("warnings", [])  # the build's own list (template check, task counters)
    # What a build read, kept and dropped, per source and reason (with sample rows): the same
    # report `prep show` renders, from the manifest just written. Not for an up-to-date answer
    # (it reads no more than the manifest's JSON, and loads nothing else).
    report = None
    if result.status == "built":
        from shardprep.views.show import summary

        report = summary(m)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "status": result.status,
                    "output": result.output,
                    "fingerprint": m["fingerprint"],
                    **(
                        {
                            "rows_read": report["rows_read"],
                            "dropped": report["dropped"],
                            "sources": report["sources"],
                            "decontamination": report["decontamination"],
                            "special_tokens": report["special_tokens"],
                        }
                        if report is not None
                        else {}
                    ),
                    "task_counters": st.get("task_counters", {}),
                    **({"task_summary": st["task_summary"]} if st.get("task_summary") else {}),
                    "warnings": warnings,
                }
            )
        )
        return  # rich loads for the terminal only: a --json answer needs none of it
    from rich.console import Console
    from rich.markup import escape

    # emoji=False: paths and names are data, a ":fire:" in one prints as written (and rich's emoji
    # table, a large module, stays unloaded).
    out = Console(highlight=False, soft_wrap=True, emoji=False)
    if result.status == "up_to_date":
        out.print(
            f"[green]up to date[/]: {escape(result.output)} (fingerprint {m['fingerprint'][:12]})"
        )
        return
    used = (m.get("tokenizer") or {}).get("encoder")
    out.print(
        f"[green]built[/] {escape(result.output)}: "
        + ", ".join(
            f"{k} {v['rows']:,} rows / {v['tokens']:,} tokens" for k, v in m["splits"].items()
        )
        + f"; dropped {sum(st['dropped'].values()):,}; {st['elapsed_s']:.1f}s, {st['tokens_per_s'] or 0:,.0f} tokens/s"
        + (f"; encoder {used['name']}" if isinstance(used, dict) and used.get("name") else "")
    )
    task_summary = st.get("task_summary") or {}
    if task_summary:
        out.print(
            ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in task_summary.items()), markup=False
        )
    if report is not None:
        from shardprep.report.text import (
            decontamination_text,
            drop_samples_text,
            print_fitted,
            source_table,
            special_tokens_text,
        )

        print_fitted(out, source_table(report))
        samples = drop_samples_text(report)
        if samples is not None:
            out.print(samples)
        evals = decontamination_text(report)  # rows dropped per eval file
        if evals is not None:
            out.print(evals)
        special = special_tokens_text(report)  # control tokens spelled in message text
        if special is not None:
            out.print(special, end="")
    for w in warnings:
        out.print(f"warning: {w['message']} [{w['code']}]", markup=False, style="yellow")
