"""Record tinker-cookbook's `build_supervised_examples` on multi-turn cases (issue 18 fixture).

    .venv/bin/python tests/reference/record_turns.py

Writes tests/fixtures/reference_cases/turns.jsonl.gz: per renderer and conversation, tinker's
examples (tokens + run-length weights) or its exception for the three splittable modes, and the
renderer's has_extension_property. tests/tasks/test_sft_turns.py replays it without tinker.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference import harness  # noqa: E402
from reference.oracle import Oracle, reference_python  # noqa: E402
from reference.record import rle  # noqa: E402

OUT = harness.FIXTURES / "reference_cases" / "turns.jsonl.gz"
MODES = ["last_assistant_message", "last_assistant_turn", "all_assistant_messages"]
# One renderer per family and thinking setting (the full set runs in test_per_turn.py).
RENDERERS = [
    "qwen3",
    "qwen3_disable_thinking",
    "qwen3_instruct",
    "qwen3_5",
    "qwen3_8_low_reasoning",
    "nemotron3",
    "nemotron3_preserve_thinking",
    "kimi_k2",
    "kimi_k25",
    "kimi_k26_preserve_thinking",
    "deepseekv3_thinking",
    "deepseekv4_1",
    "deepseekv4_1_disable_thinking",
    "gpt_oss_medium_reasoning",
    "glm5_3_max_reasoning",
    "llama3",
]


def _think(thinking: str, text: str) -> list[dict[str, str]]:
    return [{"type": "thinking", "thinking": thinking}, {"type": "text", "text": text}]


CALL = {"type": "function", "id": "call_1", "function": {"name": "calc", "arguments": '{"x": 2}'}}
CONVERSATIONS: list[list[dict[str, Any]]] = [
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": _think("Two and two.", "4")},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": _think("Three and three.", "6")},
    ],
    [
        {"role": "user", "content": "Double 2 with the tool."},
        {"role": "assistant", "content": _think("Call calc.", ""), "tool_calls": [CALL]},
        {"role": "tool", "content": "4", "tool_call_id": "call_1", "name": "calc"},
        {"role": "assistant", "content": _think("It said 4.", "It is 4.")},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You are welcome."},
    ],
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": _think("Greet back.", "Hello!")},
        {"role": "user", "content": "Bye"},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": "e"},
        {"role": "assistant", "content": "f"},
    ],
]


def main() -> None:
    python = reference_python()
    assert python is not None, "no .venv-ref: run `make test-reference` once"
    oracle = Oracle(python)
    buf = io.StringIO()
    try:
        for name in RENDERERS:
            answer = oracle.call(
                {
                    "op": "examples",
                    "renderer": name,
                    "tokenizer": str(harness.TOKENIZERS / harness.golden_pairs()[name]),
                    "modes": MODES,
                    "items": [{"messages": c} for c in CONVERSATIONS],
                }
            )
            for case, (conv, res) in enumerate(zip(CONVERSATIONS, answer["results"], strict=True)):
                for ans in res["modes"].values():
                    for ex in ans.get("examples", []):
                        ex["weights"] = rle(ex["weights"])
                record = {
                    "renderer": name,
                    "tokenizer": harness.golden_pairs()[name],
                    "date": oracle.info["date"],
                    "case": case,
                    "messages": conv,
                    "has_extension_property": answer["has_extension_property"],
                    "modes": res["modes"],
                }
                buf.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        oracle.close()
    with gzip.open(OUT, "wt", encoding="utf-8") as fh:
        fh.write(buf.getvalue())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
