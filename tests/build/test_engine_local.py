"""build/engines/local.py: a forked pool inherits the driver's loaded tokenizer, renderer and encoder."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

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
