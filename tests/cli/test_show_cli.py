"""`prep show` on the demo build: plain-text snapshot, JSON against the manifest, HTML, rows, fsspec."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import fsspec
import pytest
from typer.testing import CliRunner

from shardprep.cli.app import app
from shardprep.tokenizer import load_tokenizer
from shardprep.views.show import length_histogram

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
SNAPSHOTS = Path(__file__).parent / "snapshots"
# A fixed width and no color: the snapshot is the plain text a pipe would get.
PLAIN_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env=PLAIN_ENV)


def _same_length(text: str, value: str) -> str:
    # Same-length placeholders keep table columns where they were.
    return text.replace(value, "#" * len(value))


def mask(text: str, manifest: dict[str, Any] | None, build_dir: Path | None = None) -> str:
    """Hide what varies between machines and runs: times, fingerprints, paths, hashes, file sizes."""
    if build_dir is not None:
        text = text.replace(str(build_dir), "<build>")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+\-]\d\d:\d\d", "<created>", text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "<fingerprint>", text)
    text = re.sub(r"data-[0-9a-f]{12}", "data-<fingerprint>", text)
    if manifest is not None:
        values = set()
        for info in manifest["splits"].values():
            values.add(f"{sum(s['bytes'] for s in info['shards']):,}")
            for s in info["shards"]:
                values.update({s["sha256"][:12], f"{s['bytes']:,}"})
        for v in sorted(values, key=len, reverse=True):
            text = _same_length(text, v)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def check_snapshot(name: str, text: str) -> None:
    """Compare with tests/cli/snapshots/NAME; UPDATE_SNAPSHOTS=1 rewrites it (review the diff)."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} changed; rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    )


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "shards"
    res = runner.invoke(app, ["build", str(DEMO), "--output", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def manifest(demo_build: Path) -> dict[str, Any]:
    return json.loads((demo_build / "manifest.json").read_text())


def test_show_snapshot(demo_build: Path, manifest: dict[str, Any]) -> None:
    res = invoke("show", str(demo_build))
    assert res.exit_code == 0, res.output
    assert "\x1b[" not in res.output  # no color codes in plain output
    check_snapshot("show_demo.txt", mask(res.output, manifest, demo_build))


def test_show_json_matches_manifest(demo_build: Path, manifest: dict[str, Any]) -> None:
    res = invoke("show", str(demo_build), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["fingerprint"] == manifest["fingerprint"]
    assert data["name"] == manifest["recipe"]["name"]
    assert data["renderer"] == manifest["renderer"]["name"]
    assert data["created_at"] == manifest["created_at"]
    for name, split in manifest["splits"].items():
        got = data["splits"][name]
        assert {k: got[k] for k in ("rows", "tokens", "trained_tokens")} == {
            k: split[k] for k in ("rows", "tokens", "trained_tokens")
        }
        assert got["shards"] == len(split["shards"])
        assert got["bytes"] == sum(s["bytes"] for s in split["shards"])
        assert got["rows_checked"] == split["rows"]
    for got, src in zip(data["sources"], manifest["sources"], strict=True):
        for k in ("name", "format", "rows_read", "examples", "tokens", "trained_tokens", "dropped"):
            assert got[k] == src[k]
    assert data["dropped"] == manifest["stats"]["dropped"]
    assert data["truncated"] == manifest["stats"]["truncated"]
    assert data["length_histogram"] == manifest["stats"]["length_histogram"]
    assert [{k: v for k, v in s.items() if k != "split"} for s in data["shards"]] == [
        s for split in manifest["splits"].values() for s in split["shards"]
    ]
    health = data["health"]
    assert health["rows_checked"] == health["rows_total"] == manifest["stats"]["examples"]
    assert health["untrained_rows"] == 0
    (eot,) = health["end_of_turn"]
    assert eot["token"] == "<|im_end|>" and 0 < eot["trained"] < eot["in_targets"]
    # The demo is quiet: its earlier turns carry no reasoning for qwen3's history to drop.
    assert data["warnings"] == []
    (row,) = data["rows"]
    assert row == data["row"]
    assert row["trained"] == sum(1 for w in row["weights"] if w > 0)
    assert sum(s["n_tokens"] for s in row["spans"]) == row["length"] + 1
    assert "pieces" not in row


def test_histogram_recomputed_from_shards_matches_manifest(
    demo_build: Path, manifest: dict[str, Any]
) -> None:
    import pyarrow.parquet as pq

    lengths = [
        n
        for split in manifest["splits"].values()
        for s in split["shards"]
        for n in pq.read_table(demo_build / s["path"], columns=["length"])
        .column("length")
        .to_pylist()
    ]
    assert length_histogram(lengths) == manifest["stats"]["length_histogram"]


def test_rows_sample_and_errors(demo_build: Path) -> None:
    def rows(*args: str) -> list[dict[str, Any]]:
        res = invoke("show", str(demo_build), "--json", *args)
        assert res.exit_code == 0, res.output
        return list(json.loads(res.output)["rows"])

    picked = rows("--split", "test", "--row", "3", "--row", "7")
    assert [(r["split"], r["index"]) for r in picked] == [("test", 3), ("test", 7)]
    a, b, c = (
        rows("--sample", "3", "--seed", "1"),
        rows("--sample", "3", "--seed", "1"),
        rows("--sample", "3", "--seed", "2"),
    )
    assert [r["index"] for r in a] == [r["index"] for r in b] != [r["index"] for r in c]
    assert len(a) == 3
    for args in (["--row", "1", "--sample", "2"], ["--split", "nope"], ["--row", "100000"]):
        res = invoke("show", str(demo_build), *args)
        assert res.exit_code == 2, (args, res.output)


def test_decoded_text_is_exact(demo_build: Path, manifest: dict[str, Any]) -> None:
    res = invoke("show", str(demo_build), "--json", "--sample", "10", "--seed", "4")
    tok = load_tokenizer(manifest["tokenizer"]["path"])
    for row in json.loads(res.output)["rows"]:
        tokens = [row["input_ids"][0], *row["target_ids"]]
        assert "".join(s["text"] for s in row["spans"]) == tok.tokenizer.decode(
            tokens, skip_special_tokens=False
        )
        assert sum(s["n_trained"] for s in row["spans"]) == row["trained"]


class _Page(HTMLParser):
    """Collects what the HTML tests check: tables, histogram bars, token spans, external references."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.bars: list[dict[str, str]] = []
        self.examples: list[dict[str, Any]] = []
        self.external: list[str] = []
        self.scripts = 0
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if key in a:
                self.external.append(a[key])
        if tag == "table":
            self._table = a.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "rect" and "bar" in a.get("class", ""):
            self.bars.append(a)
        elif tag == "section" and a.get("class") == "example":
            self.examples.append(
                {
                    "trained": int(a["data-trained"]),
                    "length": int(a["data-length"]),
                    "n_trained": 0,
                    "n": 0,
                    "special": [],
                }
            )
        elif tag == "span" and a.get("class", "").startswith("t ") and self.examples:
            ex = self.examples[-1]
            n = int(a["data-n"])
            ex["n"] += n
            ex["n_trained"] += int(a["data-trained"])
            if " sp" in a["class"]:
                ex["special"].append(None)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_html_page(demo_build: Path, manifest: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = invoke("show", str(demo_build), "--sample", "3", "--seed", "0", "--html", str(out))
    assert res.exit_code == 0, res.output
    page = parse_page(out)
    assert page.scripts == 0 and page.external == []  # self-contained
    splits = {r[0]: r for r in page.tables["splits"][1:]}
    assert splits["train"][1] == f"{manifest['splits']['train']['rows']:,}"
    assert [r[0] for r in page.tables["sources"][1:]] == [s["name"] for s in manifest["sources"]]
    assert len(page.tables["shards"]) - 1 == sum(
        len(s["shards"]) for s in manifest["splits"].values()
    )
    hist = manifest["stats"]["length_histogram"]
    first = next(i for i, c in enumerate(hist["counts"]) if c)
    assert [int(b["data-count"]) for b in page.bars] == hist["counts"][first:]
    assert [int(b["data-edge"]) for b in page.bars] == hist["edges"][first:]
    assert len(page.examples) == 3
    for ex in page.examples:
        assert ex["n"] == ex["length"] + 1  # every token of the unshifted sequence, once
        assert ex["n_trained"] == ex["trained"]  # token-exact highlighting
        assert ex["special"]  # <|im_start|> / <|im_end|> are marked


def test_show_on_fsspec_url(demo_build: Path, manifest: dict[str, Any]) -> None:
    fs = fsspec.filesystem("memory")
    root = "/shardprep-test/demo"
    for p in demo_build.rglob("*"):
        if p.is_file():
            fs.pipe(f"{root}/{p.relative_to(demo_build).as_posix()}", p.read_bytes())
    try:
        res = invoke("show", f"memory://{root}", "--json", "--split", "test", "--row", "2")
        assert res.exit_code == 0, res.output
        data = json.loads(res.output)
        assert data["fingerprint"] == manifest["fingerprint"]
        assert data["health"]["rows_checked"] == manifest["stats"]["examples"]
        assert data["row"]["split"] == "test" and data["row"]["spans"]
    finally:
        fs.rm(root, recursive=True)


def test_show_missing_build_exit_2(tmp_path: Path) -> None:
    res = invoke("show", str(tmp_path))
    assert res.exit_code == 2
    assert "manifest.json not found" in res.output


def test_help_has_examples_and_completion() -> None:
    res = invoke("--help")
    assert res.exit_code == 0
    for text in ("Examples", "prep preview", "prep show", "--install-completion", "--version"):
        assert text in res.output
    for cmd in ("build", "show", "preview", "validate", "renderers"):
        res = invoke(cmd, "--help")
        assert res.exit_code == 0 and "Examples" in res.output and f"prep {cmd}" in res.output, cmd
