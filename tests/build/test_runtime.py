"""build/runtime.py: a build runs on jemalloc with a frozen, tuned collector, and puts both back."""

from __future__ import annotations

import gc
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from shardprep.build import runtime, units
from shardprep.build.run import build
from tests.build.test_reuse import project, recipe_at  # noqa: F401 - the fixture


def _has_jemalloc() -> bool:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True


needs_jemalloc = pytest.mark.skipif(not _has_jemalloc(), reason="pyarrow built without jemalloc")


@needs_jemalloc
def test_settings_hold_inside_and_are_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.ARROW_POOL_ENV, raising=False)
    pool, threshold = pa.default_memory_pool().backend_name, gc.get_threshold()
    gc.disable()  # as `prep build` leaves it while it starts
    try:
        with runtime.build_runtime():
            assert pa.default_memory_pool().backend_name == "jemalloc"
            assert gc.get_threshold() == runtime.GC_THRESHOLD
            assert gc.isenabled()
            assert gc.get_freeze_count() > 0
            made = pa.array(list(range(1000)))  # a buffer from jemalloc
        assert pa.default_memory_pool().backend_name == pool
        assert gc.get_threshold() == threshold
        assert not gc.isenabled()
        assert gc.get_freeze_count() == 0
        assert made.sum().as_py() == sum(range(1000))  # still valid after the pool changed back
    finally:
        gc.enable()


def test_a_pool_the_user_chose_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.ARROW_POOL_ENV, "system")
    before = pa.default_memory_pool().backend_name
    with runtime.build_runtime():
        assert pa.default_memory_pool().backend_name == before


def test_settings_are_put_back_when_the_build_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.ARROW_POOL_ENV, raising=False)
    pool, threshold = pa.default_memory_pool().backend_name, gc.get_threshold()
    with pytest.raises(RuntimeError), runtime.build_runtime():
        raise RuntimeError("a unit failed")
    assert pa.default_memory_pool().backend_name == pool
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0


def _seen(seen: list[Any], inner: Any) -> Any:
    def run_unit(ctx: Any, unit: Any) -> Any:
        seen.append((pa.default_memory_pool().backend_name, gc.get_threshold(), os.getpid()))
        return inner(ctx, unit)

    return run_unit


@needs_jemalloc
def test_units_run_under_it_in_this_process(
    project: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(runtime.ARROW_POOL_ENV, raising=False)
    seen: list[Any] = []
    monkeypatch.setattr(units, "run_unit", _seen(seen, units.run_unit))
    before = pa.default_memory_pool().backend_name, gc.get_threshold()
    result = build(*recipe_at(project, work_unit_rows=10), force=True, workers=1)
    assert result.status == "built"
    assert len(seen) == 3 and all(s[:2] == ("jemalloc", runtime.GC_THRESHOLD) for s in seen)
    assert (pa.default_memory_pool().backend_name, gc.get_threshold()) == before


def _worker_settings() -> tuple[str, tuple[int, int, int]]:
    return pa.default_memory_pool().backend_name, gc.get_threshold()


@needs_jemalloc
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="fork is Linux's")
def test_forked_workers_inherit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.ARROW_POOL_ENV, raising=False)
    ctx = multiprocessing.get_context("fork")
    with runtime.build_runtime(), ctx.Pool(1) as pool:
        assert pool.apply(_worker_settings) == ("jemalloc", runtime.GC_THRESHOLD)
