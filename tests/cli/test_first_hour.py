"""What a new user sees in their first hour (issue 28), captured as printed: plain text through a
pipe (CliRunner's stdout is not a terminal) and --json where the command has it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shardprep.cli.app import app

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
# What a pipe or a CI log gets: no COLUMNS, no color, not a terminal.
PIPE_ENV = {"COLUMNS": None, "LINES": None, "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env=PIPE_ENV)


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "shards"
    res = invoke("build", str(DEMO), "--output", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    return out


# --- item 6: a path inside a build points at the build folder --------------------------------


@pytest.mark.parametrize("inside", ["data", "shard"])
@pytest.mark.parametrize("command", ["show", "verify"])
def test_path_inside_build_names_build_folder(demo_build: Path, inside: str, command: str) -> None:
    data = next(demo_build.glob("data-*"))
    path = data if inside == "data" else next(data.glob("train-*.parquet"))
    for extra in ([], ["--json"]):
        res = invoke(command, str(path), *extra)
        assert res.exit_code == 2, res.output
        assert f"is inside the build {demo_build}:" in res.output
        assert f"next: give {demo_build} instead" in res.output
        assert "not a finished build" not in res.output and "rebuild" not in res.output


def test_folder_without_build_says_so(tmp_path: Path) -> None:
    res = invoke("show", str(tmp_path))
    assert res.exit_code == 2
    assert f"{tmp_path} is not a finished build" in res.output
    assert "`prep ls DIR`" in res.output


# --- item 5: piped output is not cut at 80 columns -------------------------------------------


def _tables(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]


def test_piped_show_tables_are_whole(demo_build: Path) -> None:
    res = invoke("show", str(demo_build))
    assert res.exit_code == 0, res.output
    tables = _tables(res.output)
    assert tables and not [line for line in tables if "…" in line]
    for cell in ("trained tokens", "at max_length", "truncated", "glaive_tools", "sharegpt"):
        assert cell in res.output
    assert max(len(line) for line in tables) > 80  # wider than rich's default for a pipe
    # Each source is one table line (no cell wrapped onto a second line).
    report = json.loads(invoke("show", str(demo_build), "--json").output)
    for s in report["sources"]:
        (line,) = [line for line in tables if f"│ {s['name']} " in line]
        assert f"{s['tokens']:,}" in line and s["format"] in line


def test_piped_ls_and_renderers_are_whole(demo_build: Path) -> None:
    for args in (["ls", str(demo_build.parent)], ["renderers"]):
        res = invoke(*args)
        assert res.exit_code == 0, res.output
        assert _tables(res.output) and "…" not in res.output
    assert "Qwen/Qwen3-8B" in invoke("renderers").output  # a model id is never folded


def test_piped_build_progress_is_whole(tmp_path: Path) -> None:
    res = invoke("build", str(DEMO), "--output", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    (bar,) = [line for line in res.output.splitlines() if line.startswith("building")]
    assert "500/500 rows" in bar and "units 5/5" in bar and "…" not in bar


# --- item 4: the DPO length histogram counts pairs by their longer side ---------------------


def test_dpo_histogram_buckets_the_longer_side(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import yaml

    from shardprep.views.show import length_histogram

    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    rows = [
        {
            "prompt": f"Question {i}: " + " ".join(words[: 2 + i % 8]),
            "chosen": " ".join(words * (1 + i % 4)),
            "rejected": " ".join(reversed(words * (1 + (i + 2) % 4))),
        }
        for i in range(24)
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "pairs",
        "output": str(tmp_path / "out"),
        "tokenizer": str(ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"),
        "renderer": "qwen3_disable_thinking",
        "task": "dpo",
        "max_length": 64,
        "sources": [{"name": "pairs", "path": "pairs.jsonl", "format": "text_pair"}],
        "workers": 1,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = invoke("build", str(tmp_path / "recipe.yaml"), "--quiet")
    assert res.exit_code == 0, res.output
    table = pq.read_table(next((tmp_path / "out").glob("data-*/train-*.parquet")))
    chosen, rejected = table["chosen_length"].to_pylist(), table["rejected_length"].to_pylist()
    longest = [max(c, r) for c, r in zip(chosen, rejected, strict=True)]
    assert max(longest) < 64 and max(c + r for c, r in zip(chosen, rejected, strict=True)) > 64

    report = json.loads(invoke("show", str(tmp_path / "out"), "--json").output)
    assert report["length_histogram"] == length_histogram(longest)
    assert max(report["length_histogram"]["edges"]) <= 64
    assert sum(report["length_histogram"]["counts"]) == len(chosen)
    text = invoke("show", str(tmp_path / "out")).output
    assert "33–64" in text and "65–128" not in text


# --- items 2, 3 and 7: the template check shows the real difference and a hint that holds -----


@pytest.fixture(scope="module")
def spaced_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe whose tokenizer's chat_template writes one space the qwen3 renderer does not:
    `<|im_start|>user \\n` (the kind of difference a diff prints as two equal-looking lines)."""
    import shutil

    import yaml

    tmp = tmp_path_factory.mktemp("spaced")
    tok = tmp / "tok"
    shutil.copytree(ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3", tok)
    config = json.loads((tok / "tokenizer_config.json").read_text())
    user_header = "'<|im_start|>' + message.role + '\\n' + message.content"
    assert user_header in config["chat_template"]
    config["chat_template"] = config["chat_template"].replace(
        user_header, user_header.replace("'\\n'", "' \\n'"), 1
    )
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    recipe = {
        "name": "spaced",
        "output": str(tmp / "out"),
        "tokenizer": str(tok),
        "renderer": "qwen3",
        "sources": [
            {
                "name": "alpaca",
                "path": str(ROOT / "demo/data/alpaca_en_demo.slice.json"),
                "format": "alpaca",
            }
        ],
        "workers": 1,
    }
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp / "recipe.yaml"


def test_template_difference_shows_whitespace_and_a_hint_that_holds(spaced_template: Path) -> None:
    res = invoke("preview", str(spaced_template), "-n", "2")
    assert res.exit_code == 0, res.output
    text = res.output
    # The changed lines differ where a reader can see it, and the place is named.
    minus = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("-<|im_start|>user")]
    plus = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("+<|im_start|>user")]
    assert minus and plus and minus[0][1:] != plus[0][1:]
    assert minus[0] == "-<|im_start|>user·"
    flat = " ".join(text.split())
    assert "first difference at line 1, column 17: chat_template '<|im_start|>user \\n" in flat
    assert "No newline" not in text  # the end-of-text whitespace the check ignores is not shown
    # The hint says what hf_template would refuse instead of promising the same rows.
    assert "[template_mismatch]" in flat
    assert "hf_template renders that template itself but refuses each row" in flat
    assert "compare `prep preview` with each renderer before switching" in flat

    report = json.loads(invoke("preview", str(spaced_template), "-n", "2", "--json").output)
    (warning,) = [w for w in report["warnings"] if w["code"] == "template_mismatch"]
    assert "refuses each row it cannot split" in warning["message"]
    diff = report["conformance"]["first_difference"]["diff"]
    assert "-<|im_start|>user·\n" in diff and "\n+<|im_start|>user\n" in diff
    changed = [ln for ln in diff.splitlines()[2:] if ln[:1] in "-+"]
    assert changed == ["-<|im_start|>user·", "+<|im_start|>user"]  # only the line that differs


def test_template_is_told_apart_from_another_with_the_same_tokenizer_json(
    spaced_template: Path,
) -> None:
    # One process, two tokenizers with equal tokenizer.json files and their own templates: the
    # compiled template must be the recipe's (it was cached by the tokenizer.json hash alone).
    for recipe, mismatch in ((DEMO, False), (spaced_template, True), (DEMO, False)):
        res = invoke("preview", str(recipe), "-n", "1", "--json")
        assert res.exit_code == 0, res.output
        codes = [w["code"] for w in json.loads(res.output)["warnings"]]
        assert ("template_mismatch" in codes) is mismatch


def test_html_diff_lines_wrap(spaced_template: Path, tmp_path: Path) -> None:
    from html.parser import HTMLParser

    page = tmp_path / "report.html"
    res = invoke("preview", str(spaced_template), "-n", "2", "--html", str(page))
    assert res.exit_code == 0, res.output
    html = page.read_text()

    class Styles(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.css, self.diff, self._where = "", "", ""

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "style" or (tag == "pre" and ("class", "diff") in attrs):
                self._where = tag

        def handle_endtag(self, tag: str) -> None:
            if tag == self._where:
                self._where = ""

        def handle_data(self, data: str) -> None:
            if self._where == "style":
                self.css += data
            elif self._where == "pre":
                self.diff += data

    parsed = Styles()
    parsed.feed(html)
    rule = parsed.css.split("pre.diff", 1)[1].split("}", 1)[0]
    assert "white-space: pre-wrap" in rule and "overflow-wrap: anywhere" in rule
    assert "overflow-x" not in rule  # a long line wraps instead of running past the edge
    # The long locator line is there whole.
    assert "first difference at line 1, column 17" in parsed.diff


# --- item 2: a conversation in the other turn layout names the format that reads it ----------

_SHAREGPT_TURNS = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]
_MESSAGES_TURNS = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]


@pytest.mark.parametrize(
    ("field", "turns", "fmt", "hint", "fixed"),
    [
        # ShareGPT turns where the messages format reads them ("message has no role" before).
        (
            "messages",
            _SHAREGPT_TURNS,
            "messages",
            "message has no role; its turns have 'from'/'value' keys, the sharegpt layout: "
            "set `format: sharegpt` with `columns: {messages: messages}`",
            {"format": "sharegpt", "columns": {"messages": "messages"}},
        ),
        (
            "conversations",
            _SHAREGPT_TURNS,
            "messages",
            "the row has no 'messages' field; its 'conversations' turns have 'from'/'value' "
            "keys, the sharegpt layout: set `format: sharegpt`",
            {"format": "sharegpt"},
        ),
        # And the other direction.
        (
            "conversations",
            _MESSAGES_TURNS,
            "sharegpt",
            "turn has no 'from'; its turns have 'role'/'content' keys, the messages layout: "
            "set `format: messages` with `columns: {messages: conversations}`",
            {"format": "messages", "columns": {"messages": "conversations"}},
        ),
        (
            "messages",
            _MESSAGES_TURNS,
            "sharegpt",
            "the row has no 'conversations' field; its 'messages' turns have 'role'/'content' "
            "keys, the messages layout: set `format: messages`",
            {"format": "messages"},
        ),
    ],
)
def test_turn_layout_names_the_format_that_reads_it(
    tmp_path: Path, field: str, turns: list[dict[str, str]], fmt: str, hint: str, fixed: dict
) -> None:
    import yaml

    (tmp_path / "rows.jsonl").write_text(json.dumps({field: turns}) + "\n")
    source = {"name": "chat", "path": "rows.jsonl", "format": fmt}
    recipe = {
        "name": "layout",
        "output": str(tmp_path / "out"),
        "tokenizer": str(ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"),
        "renderer": "qwen3",
        "sources": [source],
        "workers": 1,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    res = invoke("validate", str(path))
    assert res.exit_code == 2 and hint in " ".join(res.output.split())
    res = invoke("validate", str(path), "--json")
    assert res.exit_code == 2 and hint in json.loads(res.output)["problems"][0]
    # The change the hint names builds the row.
    recipe["sources"] = [{**source, **fixed}]
    path.write_text(yaml.safe_dump(recipe))
    res = invoke("build", str(path), "--json")
    assert res.exit_code == 0, res.output
    assert (
        json.loads((tmp_path / "out" / "manifest.json").read_text())["splits"]["train"]["rows"] == 1
    )


# --- item 3: quiet when all is well ---------------------------------------------------------


def test_demo_builds_and_shows_without_a_warning(tmp_path: Path) -> None:
    # What `make demo` runs: build, then show row 0.
    out = tmp_path / "demo"
    res = invoke("build", str(DEMO), "--output", str(out))
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output.lower()
    assert (
        json.loads(invoke("build", str(DEMO), "--output", str(out), "--json").output)["warnings"]
        == []
    )
    res = invoke("show", str(out), "--row", "0")
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().endswith("no warnings")
    assert json.loads(invoke("show", str(out), "--json").output)["warnings"] == []


def test_per_turn_single_turn_source_is_not_an_outlier(tmp_path: Path) -> None:
    """per_turn: multi-turn tool data trains ~22% of its tokens (each example repeats its history
    untrained), single-turn alpaca ~86%: both as they should be, neither worth a warning."""
    import yaml

    data = ROOT / "demo" / "data"
    glaive = {"path": str(data / "glaive_toolcall_en_demo.slice.json"), "format": "sharegpt"}
    recipe = {
        "name": "mix",
        "output": str(tmp_path / "out"),
        "tokenizer": str(ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"),
        "renderer": "qwen3",
        "examples": "per_turn",
        "max_length": 4096,
        "sources": [
            {"name": "tools_a", **glaive},
            {"name": "tools_b", **glaive},
            {"name": "alpaca", "path": str(data / "alpaca_en_demo.slice.json"), "format": "alpaca"},
        ],
        "workers": 1,
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    res = invoke("build", str(tmp_path / "recipe.yaml"), "--quiet")
    assert res.exit_code == 0, res.output
    report = json.loads(invoke("show", str(tmp_path / "out"), "--json").output)
    ratio = {s["name"]: s["trained_ratio"] for s in report["sources"]}
    assert ratio["alpaca"] > 3 * ratio["tools_a"]  # what tripped the outlier check before
    assert report["warnings"] == []
    assert invoke("show", str(tmp_path / "out")).output.rstrip().endswith("no warnings")
