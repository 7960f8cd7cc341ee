"""Shrink a failing generated conversation to a minimal one that fails the same way.

    .venv/bin/python tests/reference/shrink.py RENDERER SEED MODE [--save ID --note TEXT]

Greedy: drop messages, parts, tool calls and keys, then shorten strings, while the same class of
mismatch (first words of the detail) remains. `--save` appends the result to `cases.json`
(`record.py` turns that into the regression fixture replayed by tests/renderers).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference import harness  # noqa: E402
from reference.oracle import Oracle, reference_python  # noqa: E402

CASES = Path(__file__).with_name("cases.json")


def _class(detail: str) -> str:
    return " ".join(detail.split()[:2])


def _variants(msgs: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(len(msgs)):
        yield msgs[:i] + msgs[i + 1 :]
    for i, m in enumerate(msgs):

        def put(new: dict[str, Any], i: int = i) -> list[dict[str, Any]]:
            return msgs[:i] + [new] + msgs[i + 1 :]

        for key in ("tool_call_id", "name", "tool_calls"):
            if key in m:
                yield put({k: v for k, v in m.items() if k != key})
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            for j in range(len(calls)):
                yield put({**m, "tool_calls": calls[:j] + calls[j + 1 :]})
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if (
                    isinstance(fn, dict)
                    and isinstance(fn.get("arguments"), str)
                    and fn["arguments"] != "{}"
                ):
                    c2 = copy.deepcopy(c)
                    c2["function"]["arguments"] = "{}"
                    yield put({**m, "tool_calls": calls[:j] + [c2] + calls[j + 1 :]})
        c = m.get("content")
        if isinstance(c, list):
            for j in range(len(c)):
                yield put({**m, "content": c[:j] + c[j + 1 :]})
            for j, part in enumerate(c):
                for key in ("text", "thinking"):
                    if isinstance(part, dict) and isinstance(part.get(key), str):
                        for short in _shorter(part[key]):
                            yield put({**m, "content": c[:j] + [{**part, key: short}] + c[j + 1 :]})
            if len(c) == 1 and isinstance(c[0], dict) and isinstance(c[0].get("text"), str):
                yield put({**m, "content": c[0]["text"]})
        elif isinstance(c, str):
            for short in _shorter(c):
                yield put({**m, "content": short})


def _shorter(s: str) -> Iterator[str]:
    if not s:
        return
    seen = set()
    for cand in ("", "x", s[: len(s) // 2], s[len(s) // 2 :], s.strip(), " ".join(s.split()[:1])):
        if cand != s and cand not in seen and len(cand) < len(s):
            seen.add(cand)
            yield cand


def shrink(
    oracle: Oracle, name: str, item: harness.Item, mode: str
) -> tuple[list[dict[str, Any]], str]:
    """The minimal conversation (in the shape `mode` compares) and its mismatch detail."""

    def key_of(it: harness.Item) -> list[dict[str, Any]]:
        if mode == "prompt":
            return it.prompt or []
        return (it.messages_customized or it.messages) if mode == "customized" else it.messages

    def make(msgs: list[dict[str, Any]]) -> harness.Item:
        if mode == "prompt":
            return harness.Item(messages=[{"role": "user", "content": "x"}], prompt=msgs)
        if mode == "customized":
            return harness.Item(
                messages=[{"role": "user", "content": "x"}], messages_customized=msgs
            )
        return harness.Item(messages=msgs)

    [row] = harness.evaluate(oracle, name, [item])
    kind, detail, _, _ = row[mode]
    assert kind == "mismatch", f"seed item does not fail in {mode}: {kind}"
    want = _class(detail)
    current = key_of(item)
    changed = True
    while changed:
        changed = False
        cands = list(_variants(current))
        if not cands:
            break
        rows = harness.evaluate(oracle, name, [make(c) for c in cands])
        for cand, r in zip(cands, rows, strict=True):
            got = r.get(mode)
            if got and got[0] == "mismatch" and _class(got[1]) == want:
                current, detail, changed = cand, got[1], True
                break
    return current, detail


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("renderer")
    ap.add_argument("seed", type=int)
    ap.add_argument("mode")
    ap.add_argument("--save", default="")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    python = reference_python()
    assert python, "no .venv-ref"
    oracle = Oracle(python)
    msgs, detail = shrink(oracle, args.renderer, harness.item_for_seed(args.seed), args.mode)
    oracle.close()
    print(json.dumps(msgs, ensure_ascii=False))
    print(detail)
    if args.save:
        cases = json.loads(CASES.read_text()) if CASES.exists() else []
        cases = [c for c in cases if c["id"] != args.save]
        cases.append(
            {
                "id": args.save,
                "note": args.note or detail[:200],
                "renderers": [args.renderer],
                "customized": args.mode == "customized",
                "prompt": args.mode == "prompt",
                "messages": msgs,
            }
        )
        CASES.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
