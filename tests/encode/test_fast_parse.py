"""The early fastokens parse thread and interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("fastokens")

TOKENIZER = Path(__file__).parents[1] / "fixtures" / "tokenizers" / "qwen3" / "tokenizer.json.gz"


def test_an_exit_while_the_parse_runs_keeps_its_exit_code() -> None:
    # `prep build` starts the parse, then may fail on the recipe or data a moment later. A daemon
    # thread that came back from fastokens (Rust) while the interpreter tore down was ended with
    # pthread_exit through the Rust frames: "FATAL: exception not rethrown", SIGABRT, exit 134
    # instead of the build's 2. The script exits once the thread is inside the parse, and a slow
    # __del__ holds teardown open until the parse is over.
    script = textwrap.dedent(
        f"""
        import inspect, sys, threading, time
        from shardprep.encode import fast_parse

        class SlowTeardown:
            def __del__(self):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not all(
                    f.done() for f in list(fast_parse._PARSES.values())
                ):
                    time.sleep(0.05)
                time.sleep(0.5)

        keep = SlowTeardown()
        lines, first = inspect.getsourcelines(fast_parse._parse_fastokens)
        call = first + next(i for i, s in enumerate(lines) if "from_json_str" in s)
        fast_parse.prefetch_fastokens({str(TOKENIZER)!r})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            thread = [t for t in threading.enumerate() if t.name == "shardprep-fastokens-load"]
            frame = sys._current_frames().get(thread[0].ident) if thread else None
            while frame is not None and frame.f_code.co_name != "_parse_fastokens":
                frame = frame.f_back
            if frame is not None and frame.f_lineno == call:
                break
            time.sleep(0.005)
        time.sleep(0.1)  # the bytes are decoded: the thread is in fastokens now
        sys.exit(2)
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert "FATAL" not in r.stderr
