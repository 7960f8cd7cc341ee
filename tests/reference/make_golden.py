"""Make a golden file (tests/fixtures/golden/RENDERER__TOKENIZER.jsonl.gz) with tinker-cookbook.

Dev-only: needs the oracle environment `.venv-ref` (`make test-reference` creates it).

    make golden RENDERER=qwen3 TOKENIZER=qwen3 [OUT=DIR]
    .venv/bin/python tests/reference/make_golden.py RENDERER TOKENIZER [--out DIR] [--date D]

Reads only the repo: the conversations in tests/fixtures/golden/conversations*.jsonl.gz and the
tokenizer folder tests/fixtures/tokenizers/TOKENIZER. The line format is described in
tests/fixtures/golden/README.md. The output is a pure function of those inputs and tinker's
answers (fixed key order, gzip without name or timestamp), so regenerating an existing file gives
the committed bytes and `git diff` shows only what tinker really renders differently.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `import reference.*`

from reference import generator, harness  # noqa: E402
from reference.oracle import Oracle, reference_python  # noqa: E402
from reference.record import rle  # noqa: E402
from shardprep.renderers.gpt_oss import DEFAULT_CURRENT_DATE  # noqa: E402

GOLDEN = harness.FIXTURES / "golden"
BATCH = 25  # conversations per oracle request: small answers, steady progress


def fail(message: str) -> NoReturn:
    """Bad input: one line naming what, exit 2."""
    print(f"make_golden: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def items(golden_dir: Path = GOLDEN) -> list[dict[str, Any]]:
    """The oracle's items, one per conversation, in the order of conversations.jsonl.gz."""
    plain = read_jsonl_gz(golden_dir / "conversations.jsonl.gz")
    custom = {
        c["id"]: c["messages"]
        for c in read_jsonl_gz(golden_dir / "conversations_customized.jsonl.gz")
    }
    if set(custom) != {c["id"] for c in plain}:
        fail("conversations.jsonl.gz and conversations_customized.jsonl.gz hold different ids")
    out = []
    for conv in plain:
        prompt = generator.prompt_cut(conv["messages"])
        if prompt is None:
            fail(f"conversation {conv['id']}: no assistant message to cut the prompt at")
        out.append(
            {
                "id": conv["id"],
                "messages": conv["messages"],
                "messages_customized": custom[conv["id"]],
                "prompt": prompt,
            }
        )
    return out


def golden_line(conv_id: str, result: dict[str, Any], modes: list[str]) -> dict[str, Any]:
    """One line of a golden file from the oracle's `golden` answer for one conversation.

    `tokens`/`chunks` are those of the first mode that did not raise; a mode whose tokens or chunks
    differ from them is listed in `tokens_by_mode`/`chunks_by_mode` (absent when none does).
    """
    answers = result["modes"]
    built = [m for m in modes if "error" not in answers[m]]
    tokens = answers[built[0]]["tokens"] if built else None
    chunks = answers[built[0]]["chunks"] if built else None
    line: dict[str, Any] = {"id": conv_id, "tokens": tokens}
    by_mode = {m: answers[m]["tokens"] for m in built if answers[m]["tokens"] != tokens}
    if by_mode:
        line["tokens_by_mode"] = by_mode
    line["weights"] = {m: rle(answers[m]["weights"]) for m in built}
    errors = {m: answers[m]["error"] for m in modes if m not in built}
    if "error" in result["prompt"]:
        errors["prompt"] = result["prompt"]["error"]
    line["errors"] = errors
    line["chunks"] = chunks
    chunks_by_mode = {m: answers[m]["chunks"] for m in built if answers[m]["chunks"] != chunks}
    if chunks_by_mode:
        line["chunks_by_mode"] = chunks_by_mode
    line["prompt_tokens"] = result["prompt"].get("tokens")
    return line


def tokenizer_folder(name: str) -> Path:
    folder = harness.TOKENIZERS / name
    if not any((folder / f).is_file() for f in ("tokenizer.json.gz", "tokenizer.json")):
        fail(f"{folder}: no tokenizer.json(.gz) (tokenizers live in {harness.TOKENIZERS})")
    return folder


def make(
    oracle: Oracle, renderer: str, tokenizer: str, date: str = DEFAULT_CURRENT_DATE
) -> list[dict[str, Any]]:
    folder = tokenizer_folder(tokenizer)
    convs = items()
    lines = []
    for i in range(0, len(convs), BATCH):
        batch = convs[i : i + BATCH]
        request = {
            "op": "golden",
            "renderer": renderer,
            "tokenizer": str(folder),
            "date": date,
            "modes": harness.MODES,
            "items": [{k: v for k, v in c.items() if k != "id"} for c in batch],
        }
        results = oracle.call(request)["results"]
        lines += [
            golden_line(c["id"], r, harness.MODES) for c, r in zip(batch, results, strict=True)
        ]
    return lines


def encode(lines: list[dict[str, Any]]) -> bytes:
    """The file's bytes: compact JSON lines, gzip level 9 with no file name and mtime 0.

    GzipFile rather than gzip.compress: the latter's header OS byte depends on the Python version.
    """
    text = "".join(
        json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines
    )
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as fh:
        fh.write(text.encode("utf-8"))
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("renderer", help="tinker-cookbook renderer name, e.g. qwen3")
    ap.add_argument("tokenizer", help="folder name under tests/fixtures/tokenizers, e.g. qwen3")
    ap.add_argument("--out", type=Path, default=GOLDEN, help="output folder (default: %(default)s)")
    ap.add_argument(
        "--date",
        default=DEFAULT_CURRENT_DATE,
        help="current_date for renderers that print one (gpt-oss; default %(default)s)",
    )
    args = ap.parse_args(argv)
    tokenizer_folder(args.tokenizer)
    python = reference_python()
    if python is None or not python.exists():
        fail("no .venv-ref: run `make test-reference` once to create it")
    oracle = Oracle(python)
    try:
        known = oracle.call({"op": "hello", "candidates": [args.renderer]})["renderers"]
        if args.renderer not in known:
            fail(f"tinker-cookbook has no renderer {args.renderer!r}")
        lines = make(oracle, args.renderer, args.tokenizer, args.date)
        versions = oracle.info["versions"]
    finally:
        oracle.close()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.renderer}__{args.tokenizer}.jsonl.gz"
    path.write_bytes(encode(lines))
    errors = sum(bool(line["errors"]) for line in lines)
    print(
        f"{path}: {len(lines)} conversations, {errors} with errors "
        f"(tinker-cookbook {versions['tinker-cookbook']}, transformers {versions['transformers']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
