"""tinker-cookbook 0.6.1 as an oracle: a long-lived worker speaking JSON lines on stdin/stdout.

Runs in the separate reference environment (`.venv-ref`, see the Makefile's `test-reference`),
never in shardprep's own: it must not import shardprep. One request per line, one answer per
line; an answer is `{"ok": true, ...}` or `{"ok": false, "error": "..."}` (a worker problem, not a
refusal). Requests:

* `{"op": "hello"}` -> versions and tinker's renderer names.
* `{"op": "render", "renderer", "tokenizer": dir, "modes": [...],
   "items": [{"messages", "customized": bool, "prompt": [...] | null}]}`
  -> `results`: per item
  `{"modes": {mode: {"tokens", "weights"} | {"error"}}, "prompt": {"tokens"} | {"error"} | null}`.
  Messages are given to tinker as they are (its own JSONL path does the same), except for the two
  steps tinker's OpenAI converter (`third_party.openai_compat.openai_messages_to_tinker`) takes:
  tool-call dicts become `ToolCall` objects (`ToolCall.model_validate`; one that does not validate
  is a refusal), `content: null` becomes `""`, and a `reasoning_content` field becomes the
  leading thinking part (by tinker's converter itself). Everything else (`[]` content, parts,
  `trainable`) reaches the renderer untouched.
* `{"op": "examples", "renderer", "tokenizer": dir, "modes": [...], "items": [{"messages"}]}`
  -> `results`: per item `{"modes": {mode: {"examples": [{"tokens", "weights"}, ...]} | {"error"}}}`
  from `build_supervised_examples` (plural), with the renderer's `has_extension_property`.
* `{"op": "hf_template", "tokenizer": dir, "items": [{"messages", "add_generation_prompt", "tools"?}]}`
  -> `results`: per item `{"tokens"} | {"error"}` from `transformers.apply_chat_template` (with the
  item's `tools` when it has them).
* `{"op": "golden", "renderer", "tokenizer": dir, "date": str | null, "modes": [...],
   "items": [{"messages", "messages_customized", "prompt"}]}`
  -> `results`: as `render`, plus each mode's `chunks` (`[[start, length], ...]`) and untruncated
  errors; the renderer's `current_date` set to `date` where it has one (gpt-oss).
  What `tests/reference/make_golden.py` writes into tests/fixtures/golden.
* `{"op": "datums", "kind": "sft" | "dpo" | "prompt", "renderer", "tokenizer": dir, "items", ...}`
  -> `results`: per item a datum `{"input", "targets", "weights"}` (dpo: `{"datums": [chosen,
  rejected]}`, prompt: `{"tokens"}`) or `{"error"}`, from tinker's own dataset code (what
  `tests/reference/datasets_oracle.py` compares whole builds with):
  sft (`mode`, `max_length`, `reduction`): `supervised.data.conversation_to_datum` of item
  `{"messages"}`; dpo (`max_length`): the row function of
  `preference.dpo_datasets.DPODatasetBuilderFromComparisons` (over `ComparisonBuilderFromJsonl`)
  on item `{"comparison", "label"}`; prompt: `build_generation_prompt` of item `{"messages"}`.

Tokenizer folders hold `tokenizer.json.gz`; each is unpacked once into a temporary folder so that
`AutoTokenizer.from_pretrained` can read it.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_TMP = Path(tempfile.mkdtemp(prefix="shardprep-oracle-"))
_TOKENIZERS: dict[str, Any] = {}
_RENDERERS: dict[tuple[str, str], Any] = {}
_DATED: dict[tuple[str, str, str | None], Any] = {}  # the `golden` op's


def tokenizer(folder: str) -> Any:
    if folder not in _TOKENIZERS:
        from transformers import AutoTokenizer

        src = Path(folder)
        dst = _TMP / f"tok{len(_TOKENIZERS)}"
        dst.mkdir()
        for f in src.iterdir():
            if f.name.endswith(".gz"):
                with gzip.open(f, "rb") as fin, open(dst / f.name[:-3], "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            elif f.is_file():
                shutil.copy(f, dst / f.name)
        _TOKENIZERS[folder] = AutoTokenizer.from_pretrained(str(dst))
    return _TOKENIZERS[folder]


def renderer(name: str, folder: str) -> Any:
    key = (name, folder)
    if key not in _RENDERERS:
        from tinker_cookbook import renderers

        _RENDERERS[key] = renderers.get_renderer(name, tokenizer(folder))
    return _RENDERERS[key]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def to_tinker(messages: list[Any]) -> list[Any]:
    from tinker_cookbook.renderers import ToolCall

    out = []
    for m in messages:
        if isinstance(m, dict):
            m = dict(m)
            if "content" in m and m["content"] is None:
                m["content"] = (
                    ""  # as tinker's openai_messages_to_tinker does (OpenAI's null content)
                )
            if "reasoning_content" in m:
                # OpenAI's separate reasoning field: tinker's own converter makes it the leading
                # thinking part (and refuses it on other roles, or when it is not a string).
                from tinker_cookbook.third_party.openai_compat import openai_messages_to_tinker

                reasoning = m.pop("reasoning_content")
                [conv] = openai_messages_to_tinker(
                    [{"role": m["role"], "content": m["content"], "reasoning_content": reasoning}]
                )
                m["content"] = conv["content"]
            if isinstance(m.get("tool_calls"), list):
                m["tool_calls"] = [ToolCall.model_validate(tc) for tc in m["tool_calls"]]
        out.append(m)
    return out


def _weights(w: Any) -> list[float]:
    return [float(x) for x in w.tolist()]


def render(req: dict[str, Any]) -> dict[str, Any]:
    from tinker_cookbook.renderers import TrainOnWhat

    r = renderer(req["renderer"], req["tokenizer"])
    results = []
    for item in req["items"]:
        modes: dict[str, Any] = {}
        for mode in req["modes"]:
            try:
                msgs = to_tinker(
                    item["messages_customized" if mode == "customized" else "messages"]
                )
                model_input, weights = r.build_supervised_example(msgs, TrainOnWhat(mode))
                modes[mode] = {"tokens": model_input.to_ints(), "weights": _weights(weights)}
            except Exception as exc:  # a refusal
                modes[mode] = {"error": _error(exc)}
        prompt = None
        if item.get("prompt") is not None:
            try:
                prompt = {"tokens": r.build_generation_prompt(to_tinker(item["prompt"])).to_ints()}
            except Exception as exc:
                prompt = {"error": _error(exc)}
        results.append({"modes": modes, "prompt": prompt})
    return {"results": results}


def examples(req: dict[str, Any]) -> dict[str, Any]:
    from tinker_cookbook.renderers import TrainOnWhat

    r = renderer(req["renderer"], req["tokenizer"])
    results = []
    for item in req["items"]:
        modes: dict[str, Any] = {}
        for mode in req["modes"]:
            try:
                built = r.build_supervised_examples(to_tinker(item["messages"]), TrainOnWhat(mode))
                modes[mode] = {
                    "examples": [
                        {"tokens": mi.to_ints(), "weights": _weights(w)} for mi, w in built
                    ]
                }
            except Exception as exc:  # a refusal
                modes[mode] = {"error": _error(exc)}
        results.append({"modes": modes})
    return {"results": results, "has_extension_property": bool(r.has_extension_property)}


def hf_template(req: dict[str, Any]) -> dict[str, Any]:
    tok = tokenizer(req["tokenizer"])
    results = []
    for item in req["items"]:
        try:
            ids = tok.apply_chat_template(
                item["messages"],
                tools=item.get("tools"),
                tokenize=True,
                add_generation_prompt=item.get("add_generation_prompt", False),
                return_dict=False,
            )
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            results.append({"tokens": [int(t) for t in ids]})
        except Exception as exc:
            results.append({"error": _error(exc)})
    return {"results": results}


def hello(req: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata as md

    from tinker_cookbook import renderers  # noqa: F401  (fails loudly when tinker is broken)

    return {
        "versions": {p: md.version(p) for p in ("tinker-cookbook", "transformers", "tokenizers")},
        "python": sys.version.split()[0],
        # tinker's gpt-oss system prompt carries datetime.now(); shardprep takes it as an option.
        "date": datetime.now().strftime("%Y-%m-%d"),
        "renderers": known_renderers(req.get("candidates", [])),
    }


def known_renderers(candidates: list[str]) -> list[str]:
    """The candidates tinker's `get_renderer` knows (unknown names raise before any tokenizer use)."""
    from tinker_cookbook import renderers

    known = []
    for name in candidates:
        try:
            renderers.get_renderer(name, None)
        except Exception as exc:
            if "nknown renderer" in str(exc):
                continue
        known.append(name)
    return known


def golden(req: dict[str, Any]) -> dict[str, Any]:
    from tinker_cookbook import renderers
    from tinker_cookbook.renderers import TrainOnWhat

    # One renderer per (name, tokenizer, date), apart from `render`'s: qwen3's constructor deep-copies
    # the tokenizer (seconds), and the committed files show a reused one renders as a fresh one.
    key = (req["renderer"], req["tokenizer"], req.get("date"))
    if key not in _DATED:
        r = renderers.get_renderer(req["renderer"], tokenizer(req["tokenizer"]))
        if req.get("date") is not None and hasattr(r, "current_date"):
            r.current_date = req["date"]  # the library default is today: golden files must not age
        _DATED[key] = r
    r = _DATED[key]

    def error(exc: BaseException) -> dict[str, str]:
        return {"error": f"{type(exc).__name__}: {exc}"}

    results = []
    for item in req["items"]:
        modes: dict[str, Any] = {}
        for mode in req["modes"]:
            try:
                which = "messages_customized" if mode == "customized" else "messages"
                model_input, weights = r.build_supervised_example(
                    to_tinker(item[which]), TrainOnWhat(mode)
                )
                start, chunks = 0, []
                for chunk in model_input.chunks:
                    chunks.append([start, chunk.length])
                    start += chunk.length
                tokens = model_input.to_ints()
                modes[mode] = {"tokens": tokens, "weights": _weights(weights), "chunks": chunks}
            except Exception as exc:  # a refusal
                modes[mode] = error(exc)
        try:
            prompt_input = r.build_generation_prompt(to_tinker(item["prompt"]))
            prompt = {"tokens": prompt_input.to_ints()}
        except Exception as exc:
            prompt = error(exc)
        results.append({"modes": modes, "prompt": prompt})
    return {"results": results}


def _datum(d: Any) -> dict[str, Any]:
    return {
        "input": d.model_input.to_ints(),
        "targets": [int(t) for t in d.loss_fn_inputs["target_tokens"].data],
        "weights": [float(w) for w in d.loss_fn_inputs["weights"].data],
    }


_DPO: dict[tuple[str, str, int | None], Any] = {}


def _dpo_row_fn(name: str, folder: str, max_length: int | None) -> Any:
    """The per-row function tinker's DPO builder maps over a JSONL of comparisons (its closure,
    taken from the dataset the builder returns), with the oracle's tokenizer registered by name."""
    key = (name, folder, max_length)
    if key not in _DPO:
        from tinker_cookbook.preference.dpo_datasets import DPODatasetBuilderFromComparisons
        from tinker_cookbook.preference.preference_datasets import ComparisonBuilderFromJsonl
        from tinker_cookbook.supervised.types import ChatDatasetBuilderCommonConfig
        from tinker_cookbook.tokenizer_utils import register_tokenizer

        tok_name = f"shardprep-oracle/{folder}"
        register_tokenizer(tok_name, lambda: tokenizer(folder))
        seed = _TMP / "dpo-seed.jsonl"  # the builder loads its file; rows are then fed one by one
        one = [{"role": "user", "content": "q"}]
        row = {"prompt_conversation": one, "completion_A": one, "completion_B": one}
        seed.write_text(json.dumps({"comparison": row, "label": "A"}) + "\n")
        builder = DPODatasetBuilderFromComparisons(
            comparison_builder=ComparisonBuilderFromJsonl(train_path=str(seed)),
            common_config=ChatDatasetBuilderCommonConfig(
                model_name_for_tokenizer=tok_name,
                renderer_name=name,
                max_length=max_length,
                batch_size=1,
            ),
        )
        train, _ = builder()
        _DPO[key] = train.flatmap_fn
    return _DPO[key]


def datums(req: dict[str, Any]) -> dict[str, Any]:
    from tinker_cookbook.renderers import TrainOnWhat
    from tinker_cookbook.supervised.data import conversation_to_datum

    kind, results = req["kind"], []
    # Resolved before the rows: a worker problem must not read as a row's refusal.
    if kind == "dpo":
        row_fn = _dpo_row_fn(req["renderer"], req["tokenizer"], req["max_length"])
    elif kind in ("sft", "prompt"):
        r = renderer(req["renderer"], req["tokenizer"])
    else:
        raise ValueError(f"unknown kind {kind!r}")
    for item in req["items"]:
        try:
            if kind == "sft":
                d = conversation_to_datum(
                    to_tinker(item["messages"]),
                    r,
                    req["max_length"],
                    TrainOnWhat(req["mode"]),
                    req["reduction"],
                )
                results.append(_datum(d))
            elif kind == "dpo":
                comparison = {k: to_tinker(v) for k, v in item["comparison"].items()}
                pair = row_fn({"comparison": comparison, "label": item["label"]})
                results.append({"datums": [_datum(d) for d in pair]})
            else:
                prompt = r.build_generation_prompt(to_tinker(item["messages"]))
                results.append({"tokens": prompt.to_ints()})
        except Exception as exc:  # a refusal
            results.append({"error": _error(exc)})
    return {"results": results}


OPS = {
    "hello": hello,
    "render": render,
    "examples": examples,
    "hf_template": hf_template,
    "golden": golden,
    "datums": datums,
}


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                answer = {"ok": True, **OPS[req["op"]](req)}
            except Exception as exc:
                answer = {"ok": False, "error": _error(exc), "traceback": traceback.format_exc()}
            out.write(json.dumps(answer, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
