"""Which trained shares are worth a warning: a source far below the others (its turns may be
lost in the mapping), never one far above them (single-turn data), nor any under per_turn."""

from __future__ import annotations

from typing import Any

from shardprep.views.health import ratio_warnings


def _source(name: str, share: float) -> dict[str, Any]:
    return {
        "name": name,
        "rows_read": 10,
        "examples": 10,
        "tokens": 1000,
        "trained_tokens": int(share * 1000),
    }


def _codes(sources: list[dict[str, Any]], **kw: Any) -> dict[str, str]:
    return {w["source"]: w["code"] for w in ratio_warnings(sources, "all_assistant_messages", **kw)}


def test_far_below_the_others_is_an_outlier() -> None:
    sources = [_source("a", 0.5), _source("b", 0.55), _source("lost", 0.1)]
    assert _codes(sources) == {"lost": "trained_ratio_outlier"}
    (w,) = ratio_warnings(sources, "all_assistant_messages")
    assert "far below the other sources" in w["message"] and "mapped" in w["message"]


def test_far_above_the_others_is_not() -> None:
    # Tool conversations with long system prompts train little; alpaca trains most of its text.
    assert _codes([_source("tools", 0.2), _source("tools2", 0.22), _source("alpaca", 0.86)]) == {}


def test_per_turn_compares_no_source_with_the_others() -> None:
    sources = [_source("single", 0.86), _source("single2", 0.85), _source("multi", 0.2)]
    assert _codes(sources) == {"multi": "trained_ratio_outlier"}
    assert _codes(sources, compare=False) == {}
    # The absolute marks still hold.
    assert _codes([_source("x", 0.01), _source("y", 0.5)], compare=False) == {
        "x": "trained_ratio_low"
    }
