"""Every command's plain-terminal output (not only --json), with `[` `]` in paths, names and row text.

rich reads `[x]` / `[/x]` as markup: a Mistral description (`[INST] … [/INST]`), a file named
`rows [1].jsonl` or a message ending in `[reason]` must print as written, never crash or vanish.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shardprep.cli.app import app
from shardprep.cli.errors import handle_errors

ROOT = Path(__file__).parents[2]
QWEN3 = ROOT / "tests" / "fixtures" / "tokenizers" / "qwen3"
PLAIN_ENV = {"COLUMNS": "120", "NO_COLOR": "1", "FORCE_COLOR": None, "TERM": "dumb"}
SOURCE = "[/src] [bold]x"
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env=PLAIN_ENV)


def ok(res: Any) -> str:
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert "\x1b[" not in res.output
    return str(res.output)


def _chat(user: str, assistant: str) -> str:
    return json.dumps(
        {
            "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
        }
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("plain")
    cfg = tmp / "cfg [x]"
    cfg.mkdir()
    # Source paths are globs ("[1]" is a character class), so the data lives outside "cfg [x]".
    data = tmp / "data"
    data.mkdir()
    rows = [_chat(f"[INST] question {i} [/INST]", f"answer [/red] {i} [bold]") for i in range(6)]
    rows.append(
        json.dumps({"messages": [{"role": "wizard", "content": "[/x]"}]})
    )  # skipped: bad role
    (data / "rows-1.jsonl").write_text("\n".join(rows) + "\n")
    recipe = {
        "name": "plain",
        "output": str(tmp / "out [1] :fire:"),  # rich would make ":fire:" an emoji
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"name": SOURCE, "path": str(data / "rows-1.jsonl"), "format": "messages"}],
        "split": {"test_size": 1, "seed": 0},
        "on_error": "skip",
        "workers": 1,
    }
    (cfg / "recipe [v1].yaml").write_text(yaml.safe_dump(recipe))
    return {"tmp": tmp, "recipe": cfg / "recipe [v1].yaml", "out": tmp / "out [1] :fire:"}


def test_renderers_table_prints_template_syntax() -> None:
    out = ok(invoke("renderers"))
    assert "[INST]" in out and "[/INST]" in out
    for name in ("mistral", "qwen3_disable_thinking", "deepseekv4_1_preserve_thinking"):
        assert name in out  # names are never cut short: users copy them into recipes


def test_validate_preview_build_show_verify_ls(setup: dict[str, Path]) -> None:
    recipe, out_dir = setup["recipe"], setup["out"]
    out = ok(invoke("validate", str(recipe)))
    assert "ok" in out and "recipe [v1].yaml" in out

    out = ok(invoke("preview", str(recipe), "-n", "10"))
    assert SOURCE in out and "[INST] question 0 [/INST]" in out and "answer [/red] 0 [bold]" in out
    assert "rows-1.jsonl" in out  # the skipped row names its file

    out = ok(invoke("build", str(recipe)))
    assert f"built {out_dir}" in " ".join(out.split())
    out = ok(invoke("build", str(recipe)))
    assert f"up to date: {out_dir}" in " ".join(out.split())

    html = setup["tmp"] / "page [1].html"
    out = ok(invoke("show", str(out_dir), "--html", str(html)))
    assert SOURCE in out and "[/INST]" in out and "[/red]" in out and "[bold]" in out
    assert f"wrote {html}" in " ".join(out.split()) and html.exists()
    assert "sample of skipped rows" in out

    out = ok(invoke("verify", str(out_dir)))
    assert "ok" in out and "out [1]" in out

    out = ok(invoke("ls", str(setup["tmp"])))
    assert "out [1]" in out and "plain" in out


def test_errors_print_brackets(setup: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "no [such]" / "recipe [2].yaml"
    res = invoke("build", str(missing))
    assert res.exit_code == 2 and "no [such]" in res.output and "recipe [2].yaml" in res.output
    bad = tmp_path / "bad [3].yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "output": "o",
                "tokenizer": str(QWEN3),
                "renderer": "[/INST]",
                "sources": [],
            }
        )
    )
    res = invoke("validate", str(bad))
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "bad [3].yaml" in res.output


def test_internal_error_printer_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    @handle_errors(lambda: False)
    def boom() -> None:
        raise RuntimeError("closing [/INST] tag")

    with pytest.raises(SystemExit) as exc:
        boom()
    assert exc.value.code == 1
    assert "RuntimeError: closing [/INST] tag" in capsys.readouterr().err


def test_output_under_a_file_is_exit_2_with_path_and_cause(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "out"
    res = invoke("build", str(setup["recipe"]), "-o", str(target), "--quiet")
    assert res.exit_code == 2, res.output
    assert f"cannot write {target}" in res.output and "is a file, not a folder" in res.output
    assert "internal error" not in res.output
    # validate finds it too, before any build
    data = yaml.safe_load(setup["recipe"].read_text())
    bad = tmp_path / "bad-output.yaml"
    bad.write_text(yaml.safe_dump({**data, "output": str(target)}))
    res = invoke("validate", str(bad))
    assert res.exit_code == 2 and f"output: cannot write {target}" in res.output, res.output


def test_os_errors_about_a_path_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """What preflight cannot foresee (a full disk, a mount refusing writes) still names path and cause."""

    @handle_errors(lambda: False)
    def write() -> None:
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro [1]/out")

    with pytest.raises(SystemExit) as exc:
        write()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cannot use /mnt/ro [1]/out: Read-only file system" in err and "read-only" in err


def test_read_only_output_is_exit_2_with_path_and_cause(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("permissions are not enforced for this user (root)")
        res = invoke("build", str(setup["recipe"]), "-o", str(ro / "out"), "--quiet")
        assert res.exit_code == 2, res.output
        assert f"cannot write {ro / 'out'}: no permission to write in {ro}" in res.output
    finally:
        ro.chmod(0o755)


def test_misspelt_names_get_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("")
    recipe = {
        "name": "x",
        "output": str(tmp_path / "o"),
        "tokenzier": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"path": "a.jsonl", "colums": {}, "format": "sharegtp"}],
        "split": {"test_fration": 0.1},
        "tye": "drop",
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = invoke("validate", str(tmp_path / "r.yaml"))
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    for line in (
        "tokenzier: unknown key; did you mean 'tokenizer'?",
        "sources[0].colums: unknown key; did you mean 'columns'?",
        "sources[0].format: unknown format 'sharegtp'; did you mean 'sharegpt'?",
        "split.test_fration: unknown key; did you mean 'test_fraction'?",
        "tye: unknown key; did you mean 'tie'?",
    ):
        assert line in out, out
    del recipe["tokenzier"], recipe["tye"], recipe["split"]
    recipe.update(
        tokenizer=str(QWEN3), renderer="qwen3_disable_thinkng", sources=[{"path": "a.jsonl"}]
    )
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = invoke("validate", str(tmp_path / "r.yaml"))
    assert res.exit_code == 2
    assert (
        "unknown renderer 'qwen3_disable_thinkng'; did you mean 'qwen3_disable_thinking'?"
        in " ".join(res.output.split())
    )


def test_formats_command() -> None:
    out = ok(invoke("formats"))
    for name in (
        "messages",
        "sharegpt",
        "alpaca",
        "prompt_completion",
        "messages_pair",
        "text_pair",
        "text",
    ):
        assert name in out
    assert '{"conversations": [{"from": "human"' in out  # example rows print as written
    assert "columns: {messages: my_messages}" in out
    one = ok(invoke("formats", "alpaca"))
    assert "instruction" in one and "sharegpt" not in one
    js = json.loads(invoke("formats", "--json").output)
    assert js[0]["name"] == "messages" and js[0]["required"] == {"messages": "messages"}
    res = invoke("formats", "sharegtp")
    assert res.exit_code == 2 and "did you mean 'sharegpt'?" in res.output


def test_validate_reads_the_first_rows(tmp_path: Path) -> None:
    """Format and column mapping are checked on real rows, by the task code the build runs."""
    rows = [
        {"chat": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(4)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"chat": 5}\n')
    base = {
        "name": "x",
        "output": str(tmp_path / "o"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
    }

    def validate(source: dict[str, Any], **extra: Any) -> Any:
        (tmp_path / "r.yaml").write_text(
            yaml.safe_dump({**base, **extra, "sources": [{"path": "d.jsonl", **source}]})
        )
        return invoke("validate", str(tmp_path / "r.yaml"))

    res = validate({})  # no mapping: no row has `messages`
    out = " ".join(res.output.split())
    assert res.exit_code == 2, out
    assert "sources[0] (d, format messages): none of its first 5 rows fit" in out
    assert (
        "the row has no 'messages' field (it has 'chat')" in out
        and "`columns: {messages: chat}`" in out
    )
    res = validate({"format": "alpaca"})  # wrong format
    assert res.exit_code == 2 and "no 'instruction' field (it has 'chat')" in " ".join(
        res.output.split()
    )
    res = validate(
        {"columns": {"messages": "chat"}}
    )  # right mapping; row 5 is bad and the build would stop
    assert res.exit_code == 2 and "line 5" in res.output
    out = ok(validate({"columns": {"messages": "chat"}}, on_error="skip"))
    assert "note" in out and "1 of its first 5 rows would be skipped" in " ".join(out.split())
    out = ok(invoke("validate", str(tmp_path / "r.yaml"), "--rows", "0"))
    assert "rows of each source converted" not in out


def _write_empty(path: Path) -> None:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"messages": pa.array([], type=pa.string())}), path)
    else:
        path.write_text("\n  \n" if path.suffix == ".jsonl" else "")


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv", "e.parquet"])
def test_an_empty_source_fails_validate_as_it_fails_build(tmp_path: Path, name: str) -> None:
    # validate said ok and preview "no warnings" while build stopped with exit 2.
    _write_empty(tmp_path / name)
    recipe = {
        "name": "x",
        "output": str(tmp_path / "o"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"path": name, "format": "alpaca" if name.endswith(".csv") else "messages"}],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    r = str(tmp_path / "r.yaml")
    res = invoke("validate", r)
    out = " ".join(res.output.split())
    assert res.exit_code == 2, out
    assert "sources[0] (e, format" in out and "gives no rows" in out and "empty" in out
    res = invoke("build", r)
    assert res.exit_code == 2 and "gives no rows" in res.output
    out = ok(invoke("preview", r))
    assert "source 'e' gives no rows" in " ".join(out.split()) and "[source_no_rows]" in out
    js = json.loads(invoke("preview", r, "--json").output)
    assert [w["code"] for w in js["warnings"]] == ["source_no_rows"]


def test_a_bad_row_is_located_by_its_files_own_unit(tmp_path: Path) -> None:
    # A JSON array's element 2 and a Parquet row 3 were both called "line": a user opened the
    # file at line 2 (the array's opening lines) or looked for lines in a Parquet file.
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad = {"messages": [{"role": "wizard", "content": "x"}]}
    (tmp_path / "a.json").write_text(json.dumps([good, good, bad, good], indent=1))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [good, good, bad]))
    msgs = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    rows = [good["messages"], good["messages"], good["messages"], None]
    pq.write_table(pa.table({"messages": pa.array(rows, type=msgs)}), tmp_path / "c.parquet")
    for name, where in (
        ("a.json", "a.json, element 2, field 'messages[0].role'"),
        ("b.jsonl", "b.jsonl, line 3, field 'messages[0].role'"),
        ("c.parquet", "c.parquet, row 3, field 'messages': 'messages' is null"),
    ):
        recipe = {
            "name": "x",
            "output": str(tmp_path / "o"),
            "tokenizer": str(QWEN3),
            "renderer": "qwen3",
            "sources": [{"path": name}],
        }
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        for cmd in ("validate", "build"):
            res = invoke(cmd, str(tmp_path / "r.yaml"))
            assert res.exit_code == 2, res.output
            assert where in " ".join(res.output.split()), (cmd, res.output)


def test_validate_json(tmp_path: Path) -> None:
    # Every other command takes --json; validate refused it ("No such option"), exit 2 either way.
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    (tmp_path / "d.jsonl").write_text(json.dumps(good) + "\n" + '{"chat": 1}\n')
    recipe = {
        "name": "x",
        "output": str(tmp_path / "o"),
        "tokenizer": str(QWEN3),
        "renderer": "qwen3",
        "sources": [{"path": "d.jsonl"}],
    }
    r = tmp_path / "r.yaml"
    r.write_text(yaml.safe_dump({**recipe, "on_error": "skip"}))
    res = invoke("validate", str(r), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["ok"] is True and data["problems"] == [] and "line 2" in data["notes"][0]
    r.write_text(yaml.safe_dump(recipe))  # on_error: fail: the build would stop at line 2
    res = invoke("validate", str(r), "--json")
    assert res.exit_code == 2
    data = json.loads(res.output)
    assert data["ok"] is False and "d.jsonl, line 2" in data["problems"][0]
    r.write_text("name: [\n")
    res = invoke("validate", str(r), "--json")
    assert res.exit_code == 2 and "not valid YAML" in json.loads(res.output)["problems"][0]
    (tmp_path / "d.jsonl").write_text(json.dumps([good]))  # a JSON array in a .jsonl file
    r.write_text(yaml.safe_dump(recipe))
    res = invoke("validate", str(r), "--json")
    assert res.exit_code == 2 and "holds a JSON array" in json.loads(res.output)["problems"][0]


def test_html_into_a_missing_folder_is_exit_2_naming_it(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    # Was "internal error: FileNotFoundError" (exit 1) for show and preview alike.
    page = tmp_path / "no-such-folder" / "page.html"
    for args in (["preview", str(setup["recipe"])], ["show", str(setup["out"])]):
        if args[0] == "show" and not setup["out"].exists():
            assert ok(invoke("build", str(setup["recipe"])))
        res = invoke(*args, "--html", str(page))
        out = " ".join(res.output.split())
        assert res.exit_code == 2, out
        assert f"cannot write {page}: the folder {page.parent} does not exist" in out
