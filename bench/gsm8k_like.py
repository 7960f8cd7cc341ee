"""GSM8K-style chat rows, made up and seeded: no GSM8K data is bundled.

Each row is a user word problem and an assistant answer with worked steps, calculator
annotations (`<<48/2=24>>`) and a final `#### N` line, like GSM8K's train split as chat. A base
set of `distinct` problems is repeated `repeat` times with every text varied (names, numbers and
a pass marker change), so no two rows or message texts are identical and no de-duplication
inside a batch can flatter a build.

  python bench/gsm8k_like.py OUT.jsonl [--tokens 4100000] [--dpo]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NAMES = [
    "Natalia",
    "Weng",
    "Betty",
    "Julie",
    "James",
    "Albert",
    "Ken",
    "Alexis",
    "Tina",
    "Mark",
    "Olivia",
    "Rani",
    "Darrell",
    "Sue",
    "Carla",
    "Roger",
    "Mia",
    "Tobias",
    "Ivy",
    "Hassan",
]
ITEMS = [
    "clips",
    "apples",
    "books",
    "marbles",
    "cookies",
    "stickers",
    "pencils",
    "eggs",
    "cupcakes",
    "shells",
    "cards",
    "bottles",
    "plants",
    "tickets",
    "candles",
    "socks",
]
PLACES = ["the market", "school", "the fair", "her aunt's shop", "the library", "the bakery"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August"]
SYSTEM = (
    "You are a careful math tutor. Solve the problem step by step and end with '#### <answer>'."
)


def _problem(rng: random.Random, k: int) -> tuple[str, str, int]:
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b, c = rng.randint(6, 480), rng.randint(2, 12), rng.randint(3, 95)
    m1, m2 = rng.sample(MONTHS, 2)
    place = rng.choice(PLACES)
    price = rng.randint(2, 40)
    q = (
        f"{name} sold {a} {item} to friends at {place} in {m1}, and then sold {b} times fewer "
        f"{item} in {m2} than in {m1} (rounding down). {other} bought {c} more {item} from "
        f"{name} afterwards at ${price} each. How many {item} did {name} sell altogether in "
        f"{m1} and {m2} together with {other}'s purchase, and how much money did {other} spend? "
        f"Give the number of {item} as the final answer. (set {k})"
    )
    may = a // b
    total = a + may + c
    spent = c * price
    ans = (
        f"In {m2}, {name} sold {a} / {b} = <<{a}/{b}={may}>>{may} {item} (rounding down).\n"
        f"Together with {m1}, that is {a} + {may} = <<{a}+{may}={a + may}>>{a + may} {item}.\n"
        f"{other} then bought {c} more, so the total is {a + may} + {c} = "
        f"<<{a + may}+{c}={total}>>{total} {item}.\n"
        f"{other} spent {c} * ${price} = <<{c}*{price}={spent}>>${spent} on them.\n"
        f"So {name} sold {total} {item} in all (set {k}).\n#### {total}"
    )
    return q, ans, total


def rows(n: int, *, seed: int = 0, dpo: bool = False) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for k in range(n):
        q, ans, total = _problem(rng, k)
        prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
        if not dpo:
            yield {"messages": [*prompt, {"role": "assistant", "content": ans}]}
            continue
        wrong = ans.replace(f"#### {total}", f"#### {total + rng.randint(1, 9)}")
        wrong = wrong.replace("rounding down", "rounding up", 1)
        yield {
            "chosen": [*prompt, {"role": "assistant", "content": ans}],
            "rejected": [*prompt, {"role": "assistant", "content": wrong}],
        }


# Measured with the Qwen3 tokenizer: ~284 tokens per SFT row (system + user + assistant).
TOKENS_PER_ROW = 284


def write(path: Path, tokens: int, *, dpo: bool = False, seed: int = 0) -> int:
    """Write about `tokens` tokens of rows to `path`; returns the row count."""
    n = max(1, tokens // (TOKENS_PER_ROW * (2 if dpo else 1)))
    with open(path, "w", encoding="utf-8") as f:
        for row in rows(n, seed=seed, dpo=dpo):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokens", type=int, default=4_100_000)
    ap.add_argument("--dpo", action="store_true")
    args = ap.parse_args()
    n = write(args.out, args.tokens, dpo=args.dpo)
    print(f"{n:,} rows -> {args.out}")


if __name__ == "__main__":
    main()
