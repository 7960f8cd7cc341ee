"""Issue 23 item 6 (and item 5's tokenizer bound): the user's own files, endpoints and disks end
in one line naming the path and the cause, exit 2 — never an "internal error" (exit 1).

Each case was an internal error before: a truncated or non-gzip tokenizer.json.gz (EOFError,
BadGzipFile), a tokenizer_config.json that is not UTF-8 (UnicodeDecodeError) or is a JSON list
(AttributeError), a recipe that is not UTF-8, an S3 endpoint on a closed port
(EndpointConnectionError), an output under /proc (the mount table, before any write); a full disk said "No space
left on device" without the file; a tokenizer.json.gz that expands to gigabytes was expanded."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shardprep.store.storage import Output

from ._project import PEAK_MB, TOY, jsonl_bytes, prep, write_recipe


def _project(tmp_path: Path, **overrides: object) -> tuple[Path, Path]:
    """(recipe, tokenizer folder): ten chat rows and a copy of the toy tokenizer to damage."""
    (tmp_path / "rows.jsonl").write_bytes(jsonl_bytes(10))
    tok = tmp_path / "tok"
    shutil.copytree(TOY, tok)
    return write_recipe(tmp_path, "rows.jsonl", tokenizer=str(tok), **overrides), tok


def _one_error(out: str) -> str:
    """The `error:` line; no internal error, no traceback."""
    assert "internal error" not in out and "Traceback" not in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


def _gzip_bomb(path: Path, mib: int) -> None:
    """`mib` MiB of zeros as concatenated gzip members of 1 MiB each (about 1 KB apiece)."""
    member = gzip.compress(bytes(1 << 20))
    with open(path, "wb") as f:
        f.writelines(member for _ in range(mib))


TOKENIZER_DAMAGE = {
    "truncated_gz": lambda raw: raw[: len(raw) // 2],
    "not_gzip": gzip.decompress,
}


@pytest.mark.parametrize("damage", list(TOKENIZER_DAMAGE))
@pytest.mark.parametrize("command", ["build", "validate", "preview"])
def test_damaged_tokenizer_gz(tmp_path: Path, damage: str, command: str, faults) -> None:
    recipe, tok = _project(tmp_path)
    gz = tok / "tokenizer.json.gz"
    gz.write_bytes(TOKENIZER_DAMAGE[damage](gz.read_bytes()))
    faults.bad_input()
    code, out = prep(command, str(recipe), *(["--quiet"] if command == "build" else []))
    assert code == 2, out
    line = _one_error(out)
    if command == "validate":  # every problem listed under the recipe's name, one a line
        line = next(ln for ln in out.splitlines() if ln.startswith("  - tokenizer"))
    cause = "truncated" if damage == "truncated_gz" else "not a valid gzip file"
    assert f"cannot read {gz}: " in line and cause in line, line


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b'{"chat_template": "\xff\xfe"}', "not UTF-8 text (byte 0xff at offset 19)"),
        (b'[{"chat_template": "x"}]', "holds a JSON list, not an object"),
        (b'"just a string"', "holds a JSON str, not an object"),
    ],
    ids=["not_utf8", "list", "string"],
)
def test_bad_tokenizer_config(tmp_path: Path, content: bytes, cause: str, faults) -> None:
    recipe, tok = _project(tmp_path)
    (tok / "tokenizer_config.json").write_bytes(content)
    faults.bad_input()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    line = _one_error(out)
    assert str(tok / "tokenizer_config.json") in line and cause in line, line


def test_tokenizer_gz_bomb_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    from shardprep import tokenizer

    monkeypatch.setattr(tokenizer, "MAX_TOKENIZER_BYTES", 1 << 20)
    recipe, tok = _project(tmp_path)
    _gzip_bomb(tok / "tokenizer.json.gz", 3)
    faults.bad_input()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    line = _one_error(out)
    assert str(tok / "tokenizer.json.gz") in line and "decompresses to more than 1 MiB" in line


def test_huge_tokenizer_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    from shardprep import tokenizer

    monkeypatch.setattr(tokenizer, "MAX_TOKENIZER_BYTES", 1 << 20)
    recipe, tok = _project(tmp_path)
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config["padding"] = "x" * (2 << 20)
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    faults.bad_input()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    line = _one_error(out)
    assert f"{tok / 'tokenizer_config.json'} is more than 1 MiB" in line, line


_BOMB_CHILD = """
import json, sys
from pathlib import Path
from shardprep import tokenizer
tokenizer.MAX_TOKENIZER_BYTES = 16 << 20
try:
    tokenizer.load_tokenizer(sys.argv[1])
    said = "loaded"
except Exception as exc:
    said = f"{type(exc).__name__}: {exc}"
print(json.dumps({"said": said, "peak_mb": peak_mb()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc (Linux)")
def test_tokenizer_gz_bomb_is_refused_in_bounded_memory(tmp_path: Path, faults) -> None:
    """600 MiB from a 600 KB file (3 GB from 6 MB is the same with more members): expanded whole
    before, read up to the bound now."""
    tok = tmp_path / "tok"
    tok.mkdir()
    _gzip_bomb(tok / "tokenizer.json.gz", 600)
    faults.bad_input()
    res = subprocess.run(
        [sys.executable, "-c", PEAK_MB + _BOMB_CHILD, str(tok)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["said"].startswith("TokenizerError"), out
    assert "decompresses to more than 16 MiB" in out["said"], out
    assert out["peak_mb"] < 300, out


def test_recipe_not_utf8(tmp_path: Path, faults) -> None:
    recipe, _ = _project(tmp_path)
    recipe.write_bytes(recipe.read_bytes() + b"# caf\xe9\n")
    faults.bad_input()
    for command in ("build", "validate", "preview"):
        code, out = prep(command, str(recipe))
        assert code == 2, out
        assert "internal error" not in out, out
        assert f"{recipe}: 1 problem(s) in recipe" in out, out
        n = recipe.read_bytes().count(b"\n")
        assert f"line {n}: not UTF-8 text (byte 0xe9)" in out, out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_s3_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries only make the test slower
    port = _closed_port()
    opts = {"key": "k", "secret": "s", "endpoint_url": f"http://127.0.0.1:{port}"}
    recipe, _ = _project(tmp_path, output="s3://bucket/out", output_storage_options=opts)
    faults.fault()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    line = _one_error(out)
    assert "cannot reach storage" in line and f"127.0.0.1:{port}/bucket/out" in line, line
    assert "endpoint_url" in out  # the next step says where the endpoint is set


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_output_under_proc(tmp_path: Path, faults) -> None:
    recipe, _ = _project(tmp_path, output="/proc/shardprep-out")
    faults.fault()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    line = _one_error(out)
    # Found before any write, from the mount table (as root, os.access passes there), by the
    # build's preflight and prep validate alike.
    assert "cannot write /proc/shardprep-out: /proc is the kernel's proc filesystem" in line, line
    code, out = prep("validate", str(recipe))
    assert code == 2, out
    assert "cannot write /proc/shardprep-out: /proc is the kernel's proc filesystem" in out, out


needs_dev_full = pytest.mark.skipif(
    not os.path.exists("/dev/full"), reason="needs /dev/full (writes fail with ENOSPC)"
)


@needs_dev_full
def test_disk_full_while_writing_a_shard_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    """The shard's temporary file is a link to /dev/full: a real ENOSPC from the kernel, through
    pyarrow's writer (its error names no file)."""
    recipe, _ = _project(tmp_path)
    full = tmp_path / "full"
    full.mkdir()
    made = Output.local_tempfile

    def on_full_disk(self: Output, name: str) -> str:
        if not name.endswith(".arrow"):
            return made(self, name)
        link = full / name
        link.symlink_to("/dev/full")
        return str(link)

    monkeypatch.setattr(Output, "local_tempfile", on_full_disk)
    faults.fault()
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 2, out
    line = _one_error(out)
    assert f"cannot use {full}/" in line and ".arrow: No space left on device" in line, line
    assert "the disk is full" in out
    assert os.path.exists("/dev/full")  # the link was removed, never the device


@needs_dev_full
def test_disk_full_while_writing_html_names_the_file(tmp_path: Path, faults) -> None:
    recipe, _ = _project(tmp_path)
    code, out = prep("build", str(recipe), "--quiet")
    assert code == 0, out
    page = tmp_path / "show.html"
    page.symlink_to("/dev/full")
    faults.fault()
    code, out = prep("show", str(tmp_path / "out"), "--html", str(page))
    assert code == 2, out
    line = _one_error(out)
    assert f"cannot use {page}: No space left on device" in line, line
