"""`prep show BUILD --pack SEQ_LEN`: the packing plan in the terminal and in --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from shardprep.cli.app import app
from shardprep.packing import PackingPlan

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
PLAIN_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env=PLAIN_ENV)


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-pack") / "shards"
    res = runner.invoke(app, ["build", str(DEMO), "--output", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    return out


def _lengths(build: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    manifest = json.loads((build / "manifest.json").read_text())
    return np.concatenate(
        [
            pq.read_table(build / s["path"], columns=["length"])["length"].to_numpy()
            for s in manifest["splits"]["train"]["shards"]
        ]
    )


def _plan(build: Path, seq_len: int) -> PackingPlan:
    """The plan of the length column, each truncated row asked whether a trained position is left
    (a plain reading of its weights, not shardprep's)."""
    import pyarrow.parquet as pq

    manifest = json.loads((build / "manifest.json").read_text())
    weights = [
        w
        for s in manifest["splits"]["train"]["shards"]
        for w in pq.read_table(build / s["path"], columns=["weights"])["weights"].to_pylist()
    ]

    def trained_prefix(rows: np.ndarray, n: int) -> np.ndarray:
        return np.array([any(x > 0 for x in weights[i][:n]) for i in rows], dtype=bool)

    return PackingPlan.build(_lengths(build), seq_len, trained_prefix)


def test_pack_json_is_the_plan_of_the_length_column(demo_build: Path) -> None:
    res = invoke("show", str(demo_build), "--pack", "2048", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)["packing"]
    plan = _plan(demo_build, 2048)
    assert got == {"split": "train", **plan.summary()}
    assert got["seq_len"] == 2048 and got["packs"] == plan.packs and got["rows"] == 480
    assert got["packs"] >= got["packs_lower_bound"]
    assert got["rows_over_length"] == 0  # the demo's max_length is 2048: every row fits

    res = invoke("show", str(demo_build), "--pack", "512", "--pack", "4096", "--json")
    assert res.exit_code == 0, res.output
    several = json.loads(res.output)["packing"]
    assert [p["seq_len"] for p in several] == [512, 4096]
    assert several[0]["rows_over_length"] > 0 and several[0]["positions_truncated"] > 0
    # Rows cut at 511 positions with every trained one past the cut: a pack of their own would
    # train nothing (a NaN loss); they keep no position and are counted.
    assert several[0] == {"split": "train", **_plan(demo_build, 512).summary()}
    assert 0 < several[0]["rows_trained_away"] < several[0]["rows_over_length"]


def test_pack_terminal_table(demo_build: Path) -> None:
    res = invoke("show", str(demo_build), "--pack", "512", "--pack", "2048")
    assert res.exit_code == 0, res.output
    plans = [_plan(demo_build, s) for s in (512, 2048)]
    text = res.output
    assert "packing train (best-fit decreasing" in text
    for plan in plans:
        rows = [ln.replace("│", " ").split() for ln in text.splitlines()]
        cells = next(r for r in rows if r and r[0] == f"{plan.seq_len:,}")
        assert cells[1] == f"{plan.packs:,}" and cells[2] == f"{plan.packs_lower_bound:,}"
        assert cells[3] == f"{100 * plan.efficiency:.2f}%"
        assert cells[4] == f"{plan.rows_over_length:,}"
        assert cells[7] == f"{plan.rows_trained_away:,}"
    assert "packing" not in invoke("show", str(demo_build)).output


def test_pack_refusals_exit_2(demo_build: Path) -> None:
    res = invoke("show", str(demo_build), "--pack", "1")
    assert res.exit_code == 2 and "--pack 1" in res.output
    res = invoke("show", str(demo_build), "--pack", "1024", "--split", "nope", "--json")
    assert res.exit_code == 2 and "split 'nope'" in res.output
    # The packing order's seed (was an internal error, exit 1: numpy's "expected non-negative
    # integer").
    res = invoke("show", str(demo_build), "--pack", "1024", "--seed", "-1")
    assert res.exit_code == 2 and "--seed -1" in res.output and "internal" not in res.output


def test_pack_html_table(demo_build: Path, tmp_path: Path) -> None:
    page = tmp_path / "show.html"
    res = invoke("show", str(demo_build), "--pack", "2048", "--html", str(page))
    assert res.exit_code == 0, res.output
    html = page.read_text()
    plan = _plan(demo_build, 2048)
    table = html[html.index('<table class="packing">') :]
    table = table[: table.index("</table>")]
    assert f"<td>{plan.packs:,}</td>" in table.replace(' class="num"', "")
    assert f"{100 * plan.efficiency:.2f}%" in table
