"""Instruction and tool-call chats at any size, from the demo data's real rows, every text varied.

The repo's LLaMA-Factory demo rows (demo/data: alpaca instructions, glaive tool-call
conversations with their `tools` declarations) are repeated until the files hold about `tokens`
tokens. Each copy is varied (seeded): a tenth of the words of every message are replaced by
other words of the corpus and a copy marker is added, and a tool call's string arguments get the
marker too (its JSON stays valid), so no two message texts are identical and no de-duplication
inside a batch can flatter a build. Shapes stay real: lengths, turn counts, tool calls and tool
results, system prompts with tool declarations.

  sft: chat.jsonl (format messages: alpaca as user/assistant, a system prompt on a third of the
       rows) and tools.jsonl (format sharegpt with a tools column: glaive), by tokens about 3:2
  dpo: pairs.jsonl (format messages_pair): the alpaca prompt, chosen = the answer, rejected =
       the same answer varied again with its sentences reordered

  python bench/chat_like.py OUT_DIR [--tokens 4000000] [--dpo]
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "data"

SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer clearly and accurately.",
    "You are an expert writing assistant. Follow the user's instructions carefully and explain "
    "your reasoning when it helps.",
]
# Measured with the Qwen3 tokenizer and renderer on the rows below (one copy each).
TOKENS_PER_ALPACA_ROW = 187
TOKENS_PER_GLAIVE_ROW = 585

_WORD = re.compile(r"[A-Za-z]{3,}")


def _alpaca() -> list[tuple[str, str]]:
    out = []
    for item in json.loads((DEMO / "alpaca_en_demo.slice.json").read_text(encoding="utf-8")):
        user = "\n".join(p for p in (item.get("instruction", ""), item.get("input", "")) if p)
        out.append((user, item.get("output", "")))
    return out


def _glaive() -> list[dict[str, Any]]:
    return json.loads((DEMO / "glaive_toolcall_en_demo.slice.json").read_text(encoding="utf-8"))


class _Vary:
    """Seeded word replacement over the corpus's own words."""

    def __init__(self, seed: int, words: list[str]) -> None:
        self.rng = random.Random(seed)
        self.words = words

    def text(self, s: str, k: int) -> str:
        rng, words = self.rng, self.words

        def swap(m: re.Match[str]) -> str:
            return rng.choice(words) if rng.random() < 0.1 else m.group(0)

        return f"{_WORD.sub(swap, s)} (#{k})" if s else s

    def call(self, value: str, k: int) -> str:
        """A function_call JSON with every string argument marked (valid JSON kept)."""
        try:
            call = json.loads(value)
        except json.JSONDecodeError:
            return self.text(value, k)

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return f"{v} {k}"
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, dict):
                return {a: walk(b) for a, b in v.items()}
            return v

        if isinstance(call, dict) and isinstance(call.get("arguments"), dict):
            call["arguments"] = walk(call["arguments"])
        return json.dumps(call, ensure_ascii=False)


def _corpus_words(alpaca: list[tuple[str, str]]) -> list[str]:
    return sorted({w for u, a in alpaca for w in _WORD.findall(u + " " + a)})


def write_sft(folder: Path, tokens: int, *, seed: int = 0) -> dict[str, int]:
    """chat.jsonl + tools.jsonl holding about `tokens` tokens; returns rows per file."""
    alpaca, glaive = _alpaca(), _glaive()
    vary = _Vary(seed, _corpus_words(alpaca))
    n_chat = max(1, int(tokens * 0.6) // TOKENS_PER_ALPACA_ROW)
    n_tools = max(1, int(tokens * 0.4) // TOKENS_PER_GLAIVE_ROW)
    with open(folder / "chat.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_chat):
            k, (user, answer) = divmod(i, len(alpaca))[0], alpaca[i % len(alpaca)]
            msgs = []
            if i % 3 == 0:
                msgs.append({"role": "system", "content": SYSTEMS[i % len(SYSTEMS)]})
            msgs.append({"role": "user", "content": vary.text(user, k)})
            msgs.append({"role": "assistant", "content": vary.text(answer, k)})
            f.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    with open(folder / "tools.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_tools):
            k, row = i // len(glaive), glaive[i % len(glaive)]
            turns = [
                {
                    "from": t["from"],
                    "value": vary.call(t["value"], k)
                    if t["from"] == "function_call"
                    else vary.text(t["value"], k),
                }
                for t in row["conversations"]
            ]
            f.write(
                json.dumps({"conversations": turns, "tools": row["tools"]}, ensure_ascii=False)
                + "\n"
            )
    return {"chat.jsonl": n_chat, "tools.jsonl": n_tools}


def write_dpo(folder: Path, tokens: int, *, seed: int = 1) -> dict[str, int]:
    """pairs.jsonl holding about `tokens` tokens (both sides); returns its row count."""
    alpaca = _alpaca()
    vary = _Vary(seed, _corpus_words(alpaca))
    rng = random.Random(seed)
    n = max(1, tokens // (2 * TOKENS_PER_ALPACA_ROW))
    with open(folder / "pairs.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            k, (user, answer) = i // len(alpaca), alpaca[i % len(alpaca)]
            prompt = [{"role": "user", "content": vary.text(user, k)}]
            if i % 3 == 0:
                prompt.insert(0, {"role": "system", "content": SYSTEMS[i % len(SYSTEMS)]})
            chosen = vary.text(answer, k)
            sentences = vary.text(answer, k + 1).split(". ")
            rng.shuffle(sentences)
            row = {
                "chosen": [*prompt, {"role": "assistant", "content": chosen}],
                "rejected": [*prompt, {"role": "assistant", "content": ". ".join(sentences)}],
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"pairs.jsonl": n}


SFT_SOURCES = (
    "sources:\n  - {path: chat.jsonl, format: messages}\n"
    "  - {path: tools.jsonl, format: sharegpt}\n"
)
DPO_SOURCES = "sources: [{path: pairs.jsonl, format: messages_pair}]\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=4_000_000)
    ap.add_argument("--dpo", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = write_dpo(args.out, args.tokens) if args.dpo else write_sft(args.out, args.tokens)
    print(", ".join(f"{n:,} rows -> {args.out / name}" for name, n in rows.items()))


if __name__ == "__main__":
    main()
