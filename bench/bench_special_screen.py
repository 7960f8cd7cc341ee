"""What the special-token screen (encode/special.py) costs on the row path: render_supervised_flat
over the repo's LLaMA-Factory + axolotl conversations with the screen on and stubbed out (best of
N, same process, tokenizers encoder). Prints seconds per 1,000 rows and the overhead."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from shardprep.encode.tokenize import BatchEncoder, render_supervised_flat  # noqa: E402
from shardprep.formats import to_conversation  # noqa: E402
from shardprep.recipe import SourceSpec  # noqa: E402
from shardprep.renderers import TrainOnWhat, get_renderer  # noqa: E402
from shardprep.sources.files import FileSource  # noqa: E402
from shardprep.tokenizer import load_tokenizer  # noqa: E402

DATA = ROOT / "tests/fixtures/data"
FILES = [
    ("llamafactory/alpaca_en_demo.json.gz", "alpaca"),
    ("llamafactory/glaive_toolcall_en_demo.json.gz", "sharegpt"),
    ("llamafactory/reason_tool_use_demo_50.jsonl.gz", "messages"),
    ("llamafactory/kto_en_demo.json.gz", "messages"),
    ("llamafactory/v1_sft_demo.jsonl.gz", "messages"),
    ("axolotl/conversation.json", "sharegpt"),
]


def conversations() -> list[Any]:
    out = []
    for rel, fmt in FILES:
        src = FileSource(SourceSpec(path=str(DATA / rel), format=fmt), ROOT)
        for raw in src.first_rows(100_000):
            with contextlib.suppress(Exception):  # rows a format refuses are not timed
                out.append(to_conversation(raw.data or {}, format=fmt))
    return out


def measure(renderer: str, tok_name: str, convs: list[Any], rounds: int = 9) -> str:
    tok = load_tokenizer(str(ROOT / "tests/fixtures/tokenizers" / tok_name))
    r = get_renderer(renderer, tok)
    on = BatchEncoder(tok, encoder="tokenizers")
    off = BatchEncoder(tok, encoder="tokenizers")
    off.screen.screen = lambda plan, conversations, plans: {}  # type: ignore[method-assign]
    mode = TrainOnWhat.ALL_ASSISTANT_MESSAGES
    times: dict[str, list[float]] = {"on": [], "off": [], "scan": []}
    screen = on.screen
    for _ in range(rounds):  # interleaved, so load on a shared machine hits both alike
        for key, enc in (("on", on), ("off", off)):
            t = time.perf_counter()
            render_supervised_flat(r, enc, convs, mode)
            times[key].append(time.perf_counter() - t)
        t = time.perf_counter()
        for c in convs:
            screen.spells(c)
        times["scan"].append(time.perf_counter() - t)
    t_on, t_off, t_scan = (min(times[k]) for k in ("on", "off", "scan"))
    matched = sum(screen.spells(c) for c in convs)
    counted = len(render_supervised_flat(r, on, convs, mode).special)
    return (
        f"{renderer}: {len(convs)} rows, {matched} spell a literal, {counted} counted; "
        f"render with the screen {t_on:.3f}s, stubbed out {t_off:.3f}s "
        f"({100 * (t_on / t_off - 1):+.1f}%); the per-row scan alone {1000 * t_scan:.1f} ms "
        f"({100 * t_scan / t_off:.1f}% of the render)"
    )


def main() -> None:
    convs = conversations()
    for renderer, tok_name in (("llama3", "llama3"), ("qwen3", "qwen3")):
        print(measure(renderer, tok_name, convs))


if __name__ == "__main__":
    main()
