"""Client side of the tinker-cookbook oracle (`oracle_worker.py`, run in `.venv-ref`)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("oracle_worker.py")
DEFAULT_PYTHON = ROOT / ".venv-ref" / "bin" / "python"


class OracleError(RuntimeError):
    pass


def reference_python() -> Path | None:
    """The oracle's interpreter: $SHARDPREP_REF_PYTHON, else .venv-ref/bin/python if present."""
    env = os.environ.get("SHARDPREP_REF_PYTHON")
    if env:
        return Path(env)
    return DEFAULT_PYTHON if DEFAULT_PYTHON.exists() else None


class Oracle:
    """One long-lived worker process; `call` sends one request and waits for its answer."""

    def __init__(self, python: Path) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (lives as long as the worker)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("PYTHONPATH", None)  # never let shardprep's environment leak into the oracle's
        self.proc = subprocess.Popen(
            [str(python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=str(ROOT),
        )
        self.info = self.call({"op": "hello"})

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.receive()

    def send(self, request: dict[str, Any]) -> None:
        """Send a request without waiting (the worker computes while the caller does its part)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise OracleError(f"oracle died: {exc}; stderr:\n{self.stderr()}") from exc

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = self.proc.stdout.readline()
        except OSError as exc:
            raise OracleError(f"oracle died: {exc}; stderr:\n{self.stderr()}") from exc
        if not line:
            raise OracleError(f"oracle exited ({self.proc.poll()}); stderr:\n{self.stderr()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise OracleError(f"{answer.get('error')}\n{answer.get('traceback', '')}")
        return answer

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._stderr.close()
