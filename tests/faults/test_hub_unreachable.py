"""No network and no HF_HUB_OFFLINE: a Hub id fails at once, says the Hub cannot be reached, and
says how to use the cache (issue 28 item 1).

"No network" is a closed port on the loopback interface given as HF_ENDPOINT (nothing leaves the
machine). Before, huggingface_hub retried it for 26 s (95 s without DNS) and the error named
neither the network nor the cache; each command here runs in its own process, as a user's would.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
DATA = ROOT / "demo" / "data" / "kto_en_demo.slice.jsonl"
# Far under what the Hub libraries' retries took (26 s on a refused port), far over a CLI start.
FAST_S = 20


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prep(
    tmp: Path, *args: str, offline: bool = False
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "COLUMNS"))}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        HF_HOME=str(tmp / "hf"),
        HF_HUB_CACHE=str(tmp / "hf" / "hub"),
        NO_COLOR="1",
    )
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    start = time.monotonic()
    res = subprocess.run(
        [str(Path(sys.executable).parent / "prep"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return res, time.monotonic() - start


def _recipe(tmp: Path, **fields: object) -> Path:
    recipe = {
        "name": "hub",
        "output": str(tmp / "out"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"name": "kto", "path": str(DATA), "format": "messages"}],
        "workers": 1,
        **fields,
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _cache_model(tmp: Path, repo: str) -> None:
    """A model's tokenizer.json in the Hub cache layout, as huggingface_hub writes it."""
    folder = tmp / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "tokenizer.json").write_bytes(
        gzip.decompress((QWEN3 / "tokenizer.json.gz").read_bytes())
    )
    (snap / "tokenizer_config.json").write_text((QWEN3 / "tokenizer_config.json").read_text())
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_hub_tokenizer_not_cached_fails_fast_naming_the_network(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, tokenizer="acme/tiny-chat")
    for args in (["validate", str(recipe)], ["build", str(recipe)]):
        res, took = _prep(tmp_path, *args)
        out = _one_line(res.stderr + res.stdout)
        assert res.returncode == 2, out
        assert took < FAST_S, (took, out)
        assert "Retrying" not in out and "Traceback" not in out
        assert "tokenizer 'acme/tiny-chat': the Hugging Face Hub (http://127.0.0.1:" in out
        assert "cannot be reached" in out and "Connection refused" in out
        assert "the huggingface_hub cache does not hold it" in out
    res, took = _prep(tmp_path, "validate", str(recipe), "--json")
    assert res.returncode == 2 and took < FAST_S
    (problem,) = json.loads(res.stdout)["problems"]
    assert "cannot be reached" in problem and "does not hold it" in problem


def test_hub_tokenizer_in_cache_names_hf_hub_offline_which_then_works(tmp_path: Path) -> None:
    _cache_model(tmp_path, "acme/tiny-chat")
    recipe = _recipe(tmp_path, tokenizer="acme/tiny-chat")
    res, took = _prep(tmp_path, "validate", str(recipe))
    out = _one_line(res.stderr + res.stdout)
    assert res.returncode == 2 and took < FAST_S, out
    assert "cannot be reached" in out and "the huggingface_hub cache holds it" in out
    assert "set HF_HUB_OFFLINE=1" in out
    # Following the hint: the same command, the variable set, passes from the cache.
    res, _ = _prep(tmp_path, "validate", str(recipe), offline=True)
    assert res.returncode == 0, res.stderr + res.stdout


@pytest.mark.parametrize("cached", [False, True])
def test_hub_dataset_fails_fast_naming_the_network_and_the_cache(
    tmp_path: Path, cached: bool
) -> None:
    repo = "acme/chats"
    if cached:
        refs = tmp_path / "hf" / "hub" / "datasets--acme--chats" / "refs"
        refs.mkdir(parents=True)
        (refs / "main").write_text("f" * 40)
    source = {"name": "chats", "hf": repo, "split": "train", "format": "messages"}
    recipe = _recipe(tmp_path, sources=[source])
    commands = [["validate", str(recipe)]] + ([] if cached else [["build", str(recipe)]])
    for args in commands:
        res, took = _prep(tmp_path, *args)
        out = _one_line(res.stderr + res.stdout)
        assert res.returncode == 2, out
        assert took < FAST_S, (took, out)
        assert "Retrying" not in out and "ConnectError" not in out
        assert "hf: acme/chats: the Hugging Face Hub (http://127.0.0.1:" in out
        assert "cannot be reached" in out
        assert "check the source `path:`" not in out  # the hint for files, not for hf: sources
        if cached:
            assert f"the Hub cache holds acme/chats@main (commit {'f' * 40})" in out
            assert "set HF_HUB_OFFLINE=1" in out
        else:
            assert "the Hub cache holds no acme/chats@main" in out
