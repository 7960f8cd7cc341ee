"""The paths a build is compared with, each timed on the same JSONL in its own interpreter.

Never imports shardprep: `tinker` runs in the reference environment (.venv-ref, tinker-cookbook
0.6.1), `trl` in any environment with transformers + datasets. Prints one JSON line
{"seconds", "tokens", "rows"} (or {"skipped": why}); the time covers the rows only, not imports
or tokenizer loading, which favours these paths over the build's whole-process number.

  python bench/ref_paths.py tinker|trl --data D.jsonl --tokenizer DIR --renderer qwen3 --task sft|dpo [--procs N]

tinker: tinker-cookbook's own data path per row: `conversation_to_datum` (SFT, mean reduction),
        or for DPO two `build_supervised_example` + `datum_from_model_input_weights` per pair, as
        its `DPODatasetBuilder` does.
trl:    the TRL-style `datasets.map(apply_chat_template)` path with `num_proc=N`: SFT tokenizes
        each conversation with the model's chat template; DPO renders prompt, chosen and rejected
        to text with the template and tokenizes the three.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _hf_tokenizer(folder: Path, tmp: Path) -> Any:
    from transformers import AutoTokenizer

    dst = tmp / "tok"
    dst.mkdir()
    for f in folder.iterdir():
        if f.name.endswith(".gz"):
            with gzip.open(f, "rb") as fin, open(dst / f.name[:-3], "wb") as fout:
                shutil.copyfileobj(fin, fout)
        elif f.is_file():
            shutil.copy(f, dst / f.name)
    return AutoTokenizer.from_pretrained(str(dst))


def tinker(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    try:
        from tinker_cookbook import renderers
        from tinker_cookbook.supervised.common import datum_from_model_input_weights
        from tinker_cookbook.supervised.data import conversation_to_datum
    except ImportError as exc:
        return {"skipped": f"tinker-cookbook not importable ({exc})"}
    renderer = renderers.get_renderer(args.renderer, _hf_tokenizer(Path(args.tokenizer), tmp))
    rows = tokens = 0
    t0 = time.perf_counter()
    with open(args.data, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if args.task == "sft":
                datum = conversation_to_datum(row["messages"], renderer, None)
                tokens += datum.model_input.length + 1
            else:
                for side in (row["chosen"], row["rejected"]):
                    mi, w = renderer.build_supervised_example(side)
                    datum = datum_from_model_input_weights(mi, w, None, reduction="none")
                    tokens += datum.model_input.length + 1
            rows += 1
    return {"seconds": time.perf_counter() - t0, "tokens": tokens, "rows": rows}


def trl(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    try:
        import datasets
    except ImportError as exc:
        return {"skipped": f"datasets/transformers not importable ({exc})"}
    try:
        tok = _hf_tokenizer(Path(args.tokenizer), tmp)
    except ImportError as exc:
        return {"skipped": f"transformers not importable ({exc})"}
    datasets.disable_progress_bars()
    ds = datasets.load_dataset(
        "json", data_files=args.data, split="train", cache_dir=str(tmp / "cache")
    )

    def sft(ex: dict[str, Any]) -> dict[str, Any]:
        return {
            "input_ids": tok.apply_chat_template(ex["messages"], tokenize=True, return_dict=True)[
                "input_ids"
            ]
        }

    def dpo(ex: dict[str, Any]) -> dict[str, Any]:
        prompt = ex["chosen"][:-1]
        p_text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        out: dict[str, Any] = {
            "prompt_input_ids": tok(p_text, add_special_tokens=False)["input_ids"]
        }
        for key in ("chosen", "rejected"):
            full = tok.apply_chat_template(ex[key], tokenize=False)
            out[f"{key}_input_ids"] = tok(full[len(p_text) :], add_special_tokens=False)[
                "input_ids"
            ]
        return out

    t0 = time.perf_counter()
    mapped = ds.map(
        sft if args.task == "sft" else dpo, num_proc=args.procs, remove_columns=ds.column_names
    )
    if args.task == "sft":
        tokens = sum(len(x) for x in mapped["input_ids"])
    else:
        p, c, r = (
            mapped["prompt_input_ids"],
            mapped["chosen_input_ids"],
            mapped["rejected_input_ids"],
        )
        tokens = sum(2 * len(a) + len(b) + len(d) for a, b, d in zip(p, c, r, strict=True))
    return {"seconds": time.perf_counter() - t0, "tokens": tokens, "rows": len(mapped)}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("path", choices=("tinker", "trl"))
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--renderer", default="qwen3")
    ap.add_argument("--task", choices=("sft", "dpo"), default="sft")
    ap.add_argument("--procs", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="shardprep-refpath-") as tmp:
        out = (tinker if args.path == "tinker" else trl)(args, Path(tmp))
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
