"""The report as JSON: what `--json` prints."""

from __future__ import annotations

from typing import Any


def to_json(report: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-token pieces (HTML only; the spans carry the same text)."""
    out = dict(report)
    out["rows"] = [{k: v for k, v in r.items() if k != "pieces"} for r in report.get("rows", [])]
    if len(out["rows"]) == 1:
        out["row"] = out["rows"][0]  # scripts written against 0.1 read a single `row`
    return out
