"""Record tinker-cookbook's answers for the minimal cases in `cases.json` (regression fixture).

    .venv/bin/python tests/reference/record.py

Writes tests/fixtures/reference_cases/cases.jsonl.gz: per case and renderer, the raw messages,
the tokenizer, and tinker's tokens + run-length weights (or its exception) for all seven modes
and the generation prompt. tests/renderers/test_reference_cases.py replays it without tinker.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference import generator, harness  # noqa: E402
from reference.oracle import Oracle, reference_python  # noqa: E402

CASES = Path(__file__).with_name("cases.json")
OUT = harness.FIXTURES / "reference_cases" / "cases.jsonl.gz"
HF_OUT = harness.FIXTURES / "reference_cases" / "hf_template.jsonl.gz"


def rle(weights: list[float]) -> list[list[float]]:
    out: list[list[float]] = []
    for w in weights:
        if out and out[-1][0] == w:
            out[-1][1] += 1
        else:
            out.append([w, 1])
    return out


def customized(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if all("trainable" in m for m in messages):
        return messages
    return [{**m, "trainable": m.get("role") == "assistant"} for m in messages]


def hf_record(oracle: Oracle, case: dict[str, Any], tok: str) -> dict[str, Any]:
    """apply_chat_template's tokens for the conversation and its generation prompt."""
    from shardprep.formats import to_conversation
    from shardprep.renderers.jinja_template import template_messages

    conv = to_conversation({"messages": case["messages"]}, format="messages")
    cut = generator.prompt_cut(conv) or []
    items = [
        {"messages": template_messages(conv), "add_generation_prompt": False},
        {"messages": template_messages(cut), "add_generation_prompt": True},
    ]
    full, prompt = oracle.call(
        {"op": "hf_template", "tokenizer": str(harness.TOKENIZERS / tok), "items": items}
    )["results"]
    return {
        "id": case["id"],
        "note": case.get("note", ""),
        "tokenizer": tok,
        "messages": case["messages"],
        "conversation": full,
        "prompt": prompt,
    }


def main() -> int:
    python = reference_python()
    assert python, "no .venv-ref: run `make test-reference` first"
    oracle = Oracle(python)
    records = []
    hf_records = []
    for case in json.loads(CASES.read_text(encoding="utf-8")):
        msgs = case["messages"]
        for tok in case.get("hf_tokenizers", []):
            hf_records.append(hf_record(oracle, case, tok))
        plain = [{k: v for k, v in m.items() if k != "trainable"} for m in msgs]
        item = harness.Item(
            plain, customized(msgs), msgs if case.get("prompt") else generator.prompt_cut(plain)
        )
        for name in case.get("renderers", []):
            [res] = harness.oracle_results(oracle, name, [item])
            for ans in res["modes"].values():
                if "weights" in ans:
                    ans["weights"] = rle(ans["weights"])
            records.append(
                {
                    "id": case["id"],
                    "note": case.get("note", ""),
                    "renderer": name,
                    "tokenizer": harness.golden_pairs()[name],
                    "date": oracle.info["date"],
                    "messages": item.messages,
                    "messages_customized": item.messages_customized,
                    "prompt_messages": item.prompt,
                    "modes": res["modes"],
                    "prompt": res["prompt"],
                }
            )
    oracle.close()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(OUT, "wb", mtime=0) as raw, io.TextIOWrapper(raw, encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    with gzip.GzipFile(HF_OUT, "wb", mtime=0) as raw, io.TextIOWrapper(raw, encoding="utf-8") as fh:
        for r in hf_records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(records)} records -> {OUT}, {len(hf_records)} -> {HF_OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
