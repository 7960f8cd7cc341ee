"""`prep`: the command line's entry point. It stays light: `prep --version` answers without loading
typer, rich or the library; everything else runs the typer application (`typer_app.py`) with the
command it names, and `shardprep.cli.app.app` is the whole application, made on first use
(tests/cli/test_startup.py).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from shardprep import __version__

if TYPE_CHECKING:
    import typer


def version_line() -> str:
    return f"shardprep {__version__}"


def main() -> None:
    # The exact `prep --version` is answered here, a tenth of a second before typer would be
    # loaded; any other use of the flag (`prep --debug --version`) reaches the same eager option.
    if sys.argv[1:] == ["--version"]:
        print(version_line())
        return
    from shardprep.cli.typer_app import app_for

    app_for(sys.argv[1:])()


def run() -> None:
    """The `prep` command: `main`, then, when it succeeded, the process ends without the
    interpreter's teardown, its output flushed. Tearing down what a build loaded (the tokenizers,
    every module, the frozen heap) took 0.14 s of a 2.5 s build, after everything was written
    and closed. Not where something may still need its exit hooks: another thread, a worker
    process, Ray (its hooks stop the instance it started)."""
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    _end_now()


def _end_now() -> None:
    import os
    import threading

    if "ray" in sys.modules or any(
        t is not threading.main_thread() and not t.daemon for t in threading.enumerate()
    ):
        return
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.active_children():
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # a closed or broken pipe: the usual exit reports it
    os._exit(0)


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the whole application, made once on first use (tests, embedding)
        from shardprep.cli.typer_app import make_app

        app = globals()["app"] = make_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
