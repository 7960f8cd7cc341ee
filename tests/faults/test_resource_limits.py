"""Item 6: a hostile recipe or chat template ends in a clear error, never in gigabytes or a hang.

YAML alias bombs and repeated keys are refused when the recipe is read; a chat template gets a
time and an output-size bound per render, and breaking it is a row error naming the template."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from shardprep.errors import RecipeError, RendererError
from shardprep.recipe import load_recipe
from shardprep.renderers import jinja_limits
from shardprep.renderers.jinja_template import ChatTemplate

from ._project import PEAK_MB, TOY, chat_row, prep

BASE = """\
name: hostile
output: out
tokenizer: {tok}
sources: [{{path: rows.jsonl}}]
"""

BOMB = """\
renderer:
  name: hf_template
  template_kwargs:
    a: &a [x, x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _recipe(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "rows.jsonl").write_text(json.dumps(chat_row(0)) + "\n")
    p = tmp_path / "recipe.yaml"
    p.write_text(BASE.format(tok=TOY) + extra)
    return p


def test_alias_bomb_is_refused_at_once(tmp_path: Path, faults) -> None:
    p = _recipe(tmp_path, BOMB)
    faults.bad_input()
    # Refused before it is expanded or walked (10**9 items): bounded in memory and in this
    # thread's CPU time, not by the wall clock, which a loaded machine can run past.
    tracemalloc.start()
    t0 = time.thread_time()
    try:
        with pytest.raises(RecipeError, match="alias"):
            load_recipe(p)
        cpu, peak = time.thread_time() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cpu < 2 and peak < 64 << 20, (cpu, peak)
    code, out = prep("validate", str(p))
    assert code == 2 and "alias" in out and "recipe.yaml" in out, out


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    p = _recipe(tmp_path, "renderer: {name: hf_template, template_kwargs: {a: &a [1, 2], b: *a}}\n")
    recipe, _ = load_recipe(p)
    assert recipe.renderer.options["template_kwargs"] == {"a": [1, 2], "b": [1, 2]}


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    p = tmp_path / "recipe.yaml"
    (tmp_path / "rows.jsonl").write_text(json.dumps(chat_row(0)) + "\n")
    p.write_text(
        BASE.format(tok=TOY) + "renderer: qwen3\nsplit:\n  <<: {test_size: 0, seed: 1}\n  seed: 2\n"
    )
    recipe, _ = load_recipe(p)
    assert recipe.split.seed == 2


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("renderer: qwen3\nrenderer: llama3\n", 6),
        ("renderer: qwen3\nshards:\n  max_rows: 10\n  max_rows: 20\n", 8),
    ],
    ids=["top_level", "nested"],
)
def test_duplicate_key_is_refused_with_both_lines(
    tmp_path: Path, extra: str, line: int, faults
) -> None:
    p = _recipe(tmp_path, extra)
    faults.bad_input()
    with pytest.raises(RecipeError, match=f"line {line}: key .* given twice"):
        load_recipe(p)
    code, out = prep("validate", str(p))
    assert code == 2 and "given twice" in out, out


def test_recursive_alias_and_deep_nesting_are_refused(tmp_path: Path, faults) -> None:
    faults.bad_input(2)
    with pytest.raises(RecipeError):
        load_recipe(_recipe(tmp_path, "renderer: &r [*r]\n"))
    with pytest.raises(RecipeError):
        load_recipe(_recipe(tmp_path, "renderer: " + "[" * 3000 + "]" * 3000 + "\n"))


HOSTILE_TEMPLATES = {
    "nested_loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested_loops_writing": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "huge_product": "{{ 'A' * 2000000000 }}",
    "doubling_concat": (
        "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s }}"
    ),
    "doubling_plus": (
        "{% set ns = namespace(s=['a']) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s }}"
    ),
    "center_filter": "{{ 'a'|center(2000000000) }}",
    "str_method": "{{ 'a'.ljust(2000000000) }}",
    "replace_growth": "{{ ('a' * 1000)|replace('a', 'b' * 100000) }}",
    "power": "{{ 7 ** 100000000 }}",
    "recursive_macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
}


@pytest.fixture
def short_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jinja_limits, "MAX_RENDER_S", 0.3)


@pytest.mark.parametrize("name", list(HOSTILE_TEMPLATES))
def test_template_render_is_bounded(name: str, short_limit: None, faults) -> None:
    faults.bad_input()
    # This thread's CPU time, not the wall clock: the render's own limit is 0.3 s of wall time,
    # so a loaded machine gives it less CPU, never more; elapsed time could run past a bound.
    t0 = time.thread_time()
    with pytest.raises(
        RendererError, match=r"chat template \(test\) (took longer|output would exceed)"
    ):
        ChatTemplate(HOSTILE_TEMPLATES[name], label="chat template (test)").render(
            [{"role": "user", "content": "hi"}]
        )
    assert time.thread_time() - t0 < 3


# Issue 23 item 5: each renders in a child process with 1 GiB of address space and a 0.3 s render
# limit. Before the fix the loop over a string's characters ran on (no call, filter or range
# step to check the clock at), and each width, precision or indent below was built (3-5 GB) before
# the output-size check ran: MemoryError under this limit.
UNBOUNDED_BEFORE = {
    "loops_over_a_string": (
        "{% set s = 'x' * 100000 %}{% for c in s %}{% for d in s %}{% endfor %}{% endfor %}"
    ),
    "loops_over_a_list_with_loop_var": (
        "{% set s = range(100000)|list %}{% for c in s %}{% for d in s %}{{ loop.index }}"
        "{% endfor %}{% endfor %}"
    ),
    "percent_width": "{{ '%3000000000d' % 1 }}",
    "percent_precision": "{{ '%.2000000000f' % 1.5 }}",
    "percent_star_width": "{{ '%*d' % (3000000000, 1) }}",
    "percent_named_width": "{{ '%(a)3000000000s' % {'a': 1} }}",
    "format_filter_width": "{{ '%3000000000d'|format(1) }}",
    "str_format_width": "{{ '{:>3000000000}'.format(1) }}",
    "str_format_map_width": "{{ '{a:>3000000000}'.format_map({'a': 1}) }}",
    "tojson_indent": "{{ messages|tojson(indent=200000000) }}",
    "indent_filter": "{{ ('a\\n' * 1000)|indent(60000000) }}",
    "join_separator": "{{ ('x' * 60000000).join(['a'] * 100) }}",
    "join_filter_separator": "{{ (['a'] * 100)|join('x' * 60000000) }}",
    "join_characters": "{{ ('x' * 1000)|join('y' * 60000000) }}",
    "split_on_whitespace": "{{ ('ab ' * 20000000).split()|length }}",
    "expandtabs": "{{ ('\\t' * 1000).expandtabs(60000000) }}",
    "wordwrap_wrapstring": "{{ ('a ' * 1000)|wordwrap(1, wrapstring='y' * 60000000) }}",
}

_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from shardprep.errors import RendererError
from shardprep.renderers import jinja_limits
from shardprep.renderers.jinja_template import ChatTemplate
jinja_limits.MAX_RENDER_S = 0.3
try:
    ChatTemplate(sys.argv[1], label="chat template (test)").render([{"role": "user", "content": "hi"}])
except RendererError as exc:
    print(exc)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS bounds memory on Linux")
@pytest.mark.parametrize("name", list(UNBOUNDED_BEFORE))
def test_template_bound_is_checked_before_building(name: str, faults) -> None:
    faults.bad_input()
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, UNBOUNDED_BEFORE[name]],
        capture_output=True,
        text=True,
        timeout=60,  # generous: the fixed render stops at 0.3 s; before, the loops ran for hours
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "MemoryError" not in res.stdout
    assert "chat template (test) took longer" in res.stdout or (
        "chat template (test) output would exceed" in res.stdout
    ), res.stdout


def test_bounds_leave_ordinary_formatting_alone() -> None:
    t = ChatTemplate(
        "{{ '%5d|%-3s|%.2f|%%' % (7, 'a', 1.5) }}{{ '{:>4}{}'.format('b', 2) }}{{ '%s'|format('c') }}"
        "{{ messages|tojson(indent=2) }}{{ 'x\\ny'|indent(2) }}{{ ['p', 'q']|join(', ') }}"
        "{% for ch in 'ab' %}{{ loop.index }}{{ ch }}{% endfor %}{{ 'a\\tb'.expandtabs(2) }}"
        "{% for ch in 'xyz' %}{{ loop.length }}{{ loop.revindex }}{% endfor %}"
        "{{ 'a b'.split()|join('+') }}{{ 'k\\nl'.splitlines()|length }}{{ 'ab'|list|join('-') }}"
    )
    msgs = [{"role": "user", "content": "hi"}]
    assert t.render(msgs) == (
        "    7|a  |1.50|%   b2c"
        + json.dumps(msgs, indent=2)
        + "x\n  yp, q1a2ba b"
        + "333231a+b2a-b"
    )


def test_ordinary_template_is_untouched() -> None:
    t = ChatTemplate(
        "{% for m in messages %}<{{ m.role }}>{{ m.content|trim }}{{ '%s' % '!' }}{% endfor %}"
        "{{ [1, 2]|join(',') }}{{ 'ab'|replace('a', 'c') }}{{ '-' * 3 }}"
    )
    assert t.render([{"role": "user", "content": " hi "}]) == "<user>hi!1,2cb---"


class _StepClock:
    """jinja_limits' clock for a whole build: 1 ms per reading. The 0.3 s limit then counts the
    template's own steps (a reading every 256 loop items): the runaway row reaches it after 300
    readings, an ordinary row takes a few, and no stall of this process (a loaded machine, a
    garbage collection) can push an ordinary row past the limit and drop it too."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 0.001
        return self.now


LOOP_ON_ROW = (
    "{% for m in messages %}{% if m.content == 'loop' %}"
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}"
    "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_build_with_runaway_template_names_it(
    tmp_path: Path, on_error: str, short_limit: None, monkeypatch: pytest.MonkeyPatch, faults
) -> None:
    monkeypatch.setattr(jinja_limits, "time", _StepClock())
    tok = tmp_path / "tok"
    shutil.copytree(TOY, tok)
    config = json.loads((tok / "tokenizer_config.json").read_text())
    config["chat_template"] = LOOP_ON_ROW
    (tok / "tokenizer_config.json").write_text(json.dumps(config))
    rows = [chat_row(i) for i in range(6)]
    rows[2]["messages"][0]["content"] = "loop"
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = tmp_path / "recipe.yaml"
    p.write_text(
        BASE.format(tok=tok)
        + f"renderer: hf_template\non_error: {on_error}\nworkers: 1\nconformance_rows: 0\n"
    )
    faults.bad_input()
    code, out = prep("build", str(p), "--quiet")
    if on_error == "fail":
        assert code == 2, out
        assert "rows.jsonl, line 3" in out and "chat_template took longer" in out, out
        return
    assert code == 0, out
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    assert m["stats"]["dropped"] == {"renderer_error": 1}
    assert m["splits"]["train"]["rows"] == 5
    faults.rows_lost(5 - m["splits"]["train"]["rows"])


# Issue 23 item 5: a 200 MB JSON Lines line (JSON array element, CSV line) from a 200 KB .gz (gzip
# members of 1 MiB of 'a' each, concatenated: made at once). Counting joined each block to the
# line carried so far (26 s for 200 MB, 400 s and more for 1.5 GB: quadratic), and the readers
# held the whole row (0.8 GB peak).
_GIANT_ROW = """
import gzip, json, sys
from shardprep.sources.files import count_rows, iter_source_rows

path, mb = sys.argv[1], int(sys.argv[2])
head, tail = {
    "jsonl": (b'{"n": 1}\\n{"messages": "', b'"}\\n{"n": 3}\\n'),
    "json": (b'[{"n": 1},\\n{"messages": "', b'"},\\n{"n": 3}]\\n'),
    "csv": (b"n,text\\n1,one\\n2,", b"\\n3,three\\n"),
}[path.split(".")[-2]]
member = gzip.compress(b"a" * (1 << 20))
with open(path, "wb") as f:
    f.write(gzip.compress(head))
    f.writelines(member for _ in range(mb))
    f.write(gzip.compress(tail))
rows = [(r.line, r.data, r.error and r.error.reason) for r in iter_source_rows(path)]
print(json.dumps({"count": count_rows(path), "rows": rows, "peak_mb": peak_mb()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc (Linux)")
@pytest.mark.parametrize(
    ("name", "first", "good"),
    [
        ("giant.jsonl.gz", 1, [{"n": 1}, {"n": 3}]),
        ("giant.json.gz", 0, [{"n": 1}, {"n": 3}]),
        ("giant.csv.gz", 2, [{"n": "1", "text": "one"}, {"n": "3", "text": "three"}]),
    ],
)
def test_giant_row_is_a_bad_row_in_linear_time_and_bounded_memory(
    tmp_path: Path, name: str, first: int, good: list[dict[str, str]], faults
) -> None:
    faults.bad_input()
    res = subprocess.run(
        [sys.executable, "-c", PEAK_MB + _GIANT_ROW, str(tmp_path / name), "200"],
        capture_output=True,
        text=True,
        timeout=300,  # generous for a loaded CI box: a few seconds here
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["count"] == 3
    assert out["rows"] == [
        [first, good[0], None],
        [first + 1, None, "row_too_large"],
        [first + 2, good[1], None],
    ]
    # Up to the default max_row_bytes (64 MiB) is held, never the row's 200 MB.
    assert out["peak_mb"] < 600, out  # 160 MB (JSON Lines), 350 MB (JSON) here


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_row_past_max_row_bytes_is_a_counted_bad_row(tmp_path: Path, on_error: str, faults) -> None:
    rows = [json.dumps(chat_row(i)) for i in range(6)]
    long = chat_row(99)
    long["messages"][0]["content"] = "z" * 5000
    rows.insert(3, json.dumps(long))
    (tmp_path / "rows.jsonl").write_text("\n".join(rows) + "\n")
    p = tmp_path / "recipe.yaml"
    p.write_text(
        BASE.format(tok=TOY)
        + f"renderer: qwen3\non_error: {on_error}\nmax_row_bytes: 4KiB\nworkers: 1\n"
        + "conformance_rows: 0\n"
    )
    faults.bad_input()
    code, out = prep("build", str(p), "--quiet")
    if on_error == "fail":
        assert code == 2, out
        assert "rows.jsonl, line 4: the line is longer than max_row_bytes (4,096 bytes)" in out
        assert "[row_too_large]" in out
        return
    assert code == 0, out
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    assert m["splits"]["train"]["rows"] == 6
    assert m["recipe"]["max_row_bytes"] == 4096
    faults.rows_lost(6 - m["splits"]["train"]["rows"])
    assert m["stats"]["dropped"] == {"row_too_large": 1}
    sample = (tmp_path / "out" / m["skipped_sample"]).read_text().splitlines()
    assert [(s["reason"], s["line"]) for s in map(json.loads, sample)] == [("row_too_large", 4)]


def test_max_row_bytes_is_validated(tmp_path: Path) -> None:
    p = _recipe(tmp_path, "renderer: qwen3\nmax_row_bytes: 10\n")
    with pytest.raises(RecipeError, match="max_row_bytes must be at least 1KB"):
        load_recipe(p)
    recipe, _ = load_recipe(_recipe(tmp_path, "renderer: qwen3\nmax_row_bytes: 1GiB\n"))
    assert recipe.max_row_bytes == 1 << 30
    recipe, _ = load_recipe(_recipe(tmp_path, "renderer: qwen3\n"))
    assert recipe.max_row_bytes == 64 << 20
