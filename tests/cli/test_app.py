"""cli/app.py's `run` (the `prep` command): after a command that succeeded the process ends without
the interpreter's teardown, its output whole; a failure, or a process that still has a thread or
a worker, exits the usual way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# An exit hook the interpreter's own teardown would run: printed only by an ordinary exit.
HOOK = "import atexit, sys\natexit.register(lambda: print('teardown ran', file=sys.stderr))\n"


def _prep(args: list[str], before: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{HOOK}{before}import sys\nsys.argv = ['prep', *{args!r}]\nfrom shardprep.cli.app import run\nrun()\n"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )


def test_a_build_that_succeeds_ends_without_teardown_its_output_whole(tmp_path: Path) -> None:
    done = _prep(["build", "configs/demo.yaml", "-o", str(tmp_path / "out"), "--json"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "built"  # flushed before the end
    assert "teardown ran" not in done.stderr
    assert (tmp_path / "out" / "manifest.json").exists()


def test_a_failure_exits_the_usual_way_with_its_code(tmp_path: Path) -> None:
    done = _prep(["build", str(tmp_path / "missing.yaml")])
    assert done.returncode == 2
    assert "teardown ran" in done.stderr


def test_a_thread_still_running_is_waited_for() -> None:
    # Alive until the interpreter starts its shutdown (it joins the main thread), however slow
    # the command: a sleep could end before `run` looks, under load.
    thread = (
        "import threading\n"
        "threading.Thread(target=lambda: (threading.main_thread().join(), print('thread done')), "
        "daemon=False).start()\n"
    )
    done = _prep(["--help"], before=thread)
    assert done.returncode == 0
    assert "thread done" in done.stdout and "teardown ran" in done.stderr
