"""build/engines/local.py: a forked pool inherits the driver's loaded tokenizer, renderer and encoder."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from shardprep.build.engines import local
from shardprep.build.run import plan_build
from shardprep.build.units import UnitContext, plan_units, unit_encoder
from shardprep.encode import fast_parse
from tests.build.test_reuse import project, recipe_at  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="fork is Linux's"
)


def _worker_state() -> tuple[int, bool, list[str]]:
    """In a pool worker: its pid, whether its context came loaded, the fastokens parses it holds."""
    ctx = local._CTX
    assert ctx is not None
    done = [p for p, fut in fast_parse._PARSES.items() if fut.done()]
    return os.getpid(), ctx._loaded is not None, done


def test_forked_workers_start_with_the_encoder_loaded(project: Path) -> None:  # noqa: F811
    recipe, base = recipe_at(project, work_unit_rows=4)
    plan = plan_build(recipe, base)
    units = plan_units(recipe, plan.sources)
    ctx = UnitContext(
        recipe=recipe,
        base_dir=base,
        output_url=plan.output.url,
        data_dir=plan.data_dir,
        test_ordinals=frozenset(),
    )
    ctx._loaded = (plan.renderer, unit_encoder(recipe, plan.tokenizer, plan.renderer), plan.output)
    engine = local.LocalEngine(workers=2)
    engine.start(ctx, units)
    pool = engine._pool
    assert pool is not None
    try:
        pid, loaded, parsed = pool.submit(_worker_state).result()
    finally:
        pool.shutdown(wait=True)
    assert pid != os.getpid() and loaded
    # The driver parsed the tokenizer with fastokens (and probed it) before the fork: the worker
    # has the finished parse without parsing again.
    assert parsed and all(p in fast_parse._PARSES for p in parsed)


def test_prefetch_parses_once_and_notices_a_changed_file(tmp_path: Path) -> None:
    toy = Path(__file__).resolve().parents[1] / "fixtures" / "tokenizers" / "toy"
    path = tmp_path / "tokenizer.json.gz"
    path.write_bytes((toy / "tokenizer.json.gz").read_bytes())
    fast_parse.prefetch_fastokens(path)
    fast_parse.prefetch_fastokens(path)  # no second parse
    digest, first = fast_parse._parse(str(path)).result()
    assert fast_parse._load_fastokens(str(path), digest) is first
    # Another file at the same path: the recorded digest no longer matches, so it is parsed again.
    import gzip
    import json

    data = json.loads(gzip.decompress(path.read_bytes()))
    data["added_tokens"] = data.get("added_tokens", [])
    path.write_bytes(gzip.compress(json.dumps(data, indent=1).encode()))
    digest2, _ = fast_parse._parse_fastokens(str(path))
    assert digest2 != digest
    assert fast_parse._load_fastokens(str(path), digest2) is not first


@pytest.mark.parametrize("workers", [1, 2])
def test_units_run_while_fastokens_parses_write_the_same_shards(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the parse is pending, the driver runs the first units itself with `tokenizers`
    (then forks the pool, or goes on in-process): the shards are byte for byte those of a build
    that waited for fastokens, and each unit records the encoder it used."""
    import json

    import yaml

    from shardprep.build import run
    from shardprep.recipe import load_recipe

    monkeypatch.setattr(run, "_MIN_ROWS_FOR_POOL", 0)
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i} <think> " * (1 + i % 7)},
                {"role": "assistant", "content": f"answer {i} " * (1 + i % 5)},
            ]
        }
        for i in range(200)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "tokenizer": str(Path(__file__).parents[1] / "fixtures" / "tokenizers" / "qwen3"),
        "renderer": "qwen3",
        "sources": [{"path": "d.jsonl"}],
        "work_unit_rows": 16,
        "shards": {"max_bytes": 4000},
    }
    built = {}
    for name, pending in (("waited", 0), ("early", 3)):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump({**recipe, "name": name, "output": str(tmp_path / name)})
        )
        calls = iter(range(1 << 20))

        def still_parsing(path: str, calls: Any = calls, pending: int = pending) -> bool:
            return bool(next(calls) < pending)  # the first `pending` units find it running

        monkeypatch.setattr(fast_parse, "parse_pending", still_parsing)
        built[name] = run.build(*load_recipe(tmp_path / f"{name}.yaml"), workers=workers).manifest
    waited, early = built["waited"], built["early"]
    assert [s["sha256"] for s in early["splits"]["train"]["shards"]] == [
        s["sha256"] for s in waited["splits"]["train"]["shards"]
    ]
    assert len(waited["splits"]["train"]["shards"]) >= 2
    assert waited["tokenizer"]["encoder"]["name"] == "fastokens"
    assert early["tokenizer"]["encoder"]["name"] == "fastokens+tokenizers"
    assert early["tokenizer"]["encoder"]["reason"] == waited["tokenizer"]["encoder"]["reason"]
    markers = sorted((tmp_path / "early" / early["data_dir"] / "_units").glob("*.json"))
    used = [json.loads(m.read_text())["extras"]["encoder"] for m in markers]
    assert [e["name"] for e in used[:4]] == ["tokenizers"] * 3 + ["fastokens"]
    assert "while fastokens was still loading" in used[0]["reason"]
    assert {e["requested"] for e in used} == {"auto"}


def test_a_unit_failing_while_fastokens_parses_fails_the_build_as_any_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`on_error: fail` and a bad row in a unit the driver runs during the parse: the build
    fails with that row's error from the engine's run (where it checks its inputs), as it does
    when the unit runs in a worker."""
    import json

    import yaml

    from shardprep.build import run
    from shardprep.errors import ShardprepError
    from shardprep.recipe import load_recipe

    monkeypatch.setattr(run, "_MIN_ROWS_FOR_POOL", 0)
    checked: list[bool] = []
    real_check = run._InputCheck.check_all
    monkeypatch.setattr(
        run._InputCheck, "check_all", lambda self: checked.append(True) or real_check(self)
    )
    monkeypatch.setattr(fast_parse, "parse_pending", lambda path: True)
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": f"a{i}"},
                ]
            }
        )
        for i in range(64)
    ]
    lines[20] = "{broken"
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "f",
                "output": str(tmp_path / "out"),
                "tokenizer": str(Path(__file__).parents[1] / "fixtures" / "tokenizers" / "qwen3"),
                "renderer": "qwen3",
                "sources": [{"path": "d.jsonl"}],
                "work_unit_rows": 16,
                "on_error": "fail",
            }
        )
    )
    with pytest.raises(ShardprepError, match="line 21"):
        run.build(*load_recipe(tmp_path / "r.yaml"), workers=2)
    assert checked  # raised inside the engine's run, after the input check
