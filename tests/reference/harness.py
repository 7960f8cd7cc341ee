"""The differential comparison: shardprep vs tinker-cookbook 0.6.1 on generated conversations.

Shared by the CI tests (`test_differential.py`) and the at-scale run (`scale.py`).
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reference import generator
from reference.oracle import Oracle
from shardprep.encode.tokenize import BatchEncoder, render_prompt_batch, render_supervised_batch
from shardprep.errors import RowError
from shardprep.formats import to_conversation
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOKENIZERS = FIXTURES / "tokenizers"
MODES = [m.value for m in TrainOnWhat]

# shardprep refuses some rows that tinker renders, on purpose (documented in RESULTS.md), by
# (reason, start of the message):
# * a `trainable` flag that is not a bool (tinker takes its truthiness: "no" trains);
# * image / audio / unknown content parts: shardprep is text-only, and tinker's text renderers
#   drop such parts without a word (the row would train on a conversation missing its image).
# * malformed parts (a thinking part without `thinking`, a text part without `text` or with a
#   non-string `text`): tinker renders them only where the renderer happens never to read the
#   field (history it strips); shardprep refuses the row wherever the part is.
# * a role other than system / user / assistant / tool (OpenAI's `developer`): tinker renders
#   it as whatever header its text makes (`<|im_start|>developer`), a role the model never saw.
# * `content: null` on a user / system / tool message (tinker's OpenAI converter makes any null
#   content ""): only an assistant's tool-call turn has a reason to be empty.
DELIBERATE_REFUSALS = {
    ("missing_trainable", ""),
    ("bad_content", "unsupported content part type"),
    ("bad_content", "thinking part has no"),
    ("bad_content", "text part has no"),
    ("bad_content", "text part text must be a string"),
    ("bad_content", "thinking part text must be a string"),
    ("bad_content", "a content part must be an object"),
    ("unknown_role", ""),
    ("missing_field", "user message has no content"),
    ("missing_field", "system message has no content"),
    ("missing_field", "tool message has no content"),
}


def deliberate(err: RowError) -> bool:
    return any(err.reason == r and err.message.startswith(m) for r, m in DELIBERATE_REFUSALS)


def golden_pairs() -> dict[str, str]:
    """renderer name -> the tokenizer its golden file uses (first file when there are several)."""
    pairs: dict[str, str] = {}
    for p in sorted((FIXTURES / "golden").glob("*__*.jsonl.gz")):
        name, tok = p.name.removesuffix(".jsonl.gz").split("__")
        pairs.setdefault(name, tok)
    return pairs


@functools.cache
def tokenizer(name: str) -> LoadedTokenizer:
    return load_tokenizer(str(TOKENIZERS / name))


def options_for(name: str, oracle_info: dict[str, Any]) -> dict[str, Any]:
    if name.startswith("gpt_oss") and name != "gpt_oss_no_sysprompt":
        return {"current_date": oracle_info["date"]}
    return {}


@dataclass
class Outcome:
    renderer: str
    seed: int
    mode: str  # a TrainOnWhat value or "prompt"
    kind: str  # "same", "refused_both", "mismatch"
    detail: str = ""
    reason: str = ""  # shardprep's refusal key (reason: message class) when it refused


@dataclass
class Tally:
    conversations: int = 0
    compared: int = 0
    mismatches: list[Outcome] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    tinker_errors: Counter[str] = field(default_factory=Counter)


_DIGITS = re.compile(r"\d+")


def refusal_key(err: RowError) -> str:
    msg = _DIGITS.sub("N", err.message.split(":")[0].split(";")[0])[:90]
    return f"{err.reason}: {msg}"


def tinker_key(err: str) -> str:
    return _DIGITS.sub("N", err.split("\n")[0])[:90]


def _convert(messages: list[dict[str, Any]], customized: bool) -> list[dict[str, Any]] | RowError:
    if not messages:
        return []  # a generation prompt of nothing (a cut before a leading assistant), not a row
    try:
        return to_conversation({"messages": messages}, format="messages", customized=customized)
    except RowError as exc:
        return exc


def _first_diff(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _compare(
    want: dict[str, Any], got: Any, tok: LoadedTokenizer, weights: bool = True
) -> tuple[str, str, str]:
    """(kind, detail, shardprep refusal key)."""
    if isinstance(got, RowError):
        key = refusal_key(got)
        if "error" in want:
            return "refused_both", "", key
        if deliberate(got):
            return "refused_both", "deliberate", key
        return "mismatch", f"shardprep refuses ({got}) where tinker renders", key
    if "error" in want:
        return "mismatch", f"shardprep renders where tinker refuses ({want['error']})", ""
    tokens = got.tokens if hasattr(got, "tokens") else got
    ours = [int(t) for t in tokens]
    if ours != want["tokens"]:
        i = _first_diff(ours, want["tokens"])
        dec = tok.tokenizer.decode
        return (
            "mismatch",
            f"tokens differ at {i}: tinker {dec(want['tokens'][max(0, i - 8) : i + 8], skip_special_tokens=False)!r}"
            f" vs shardprep {dec(ours[max(0, i - 8) : i + 8], skip_special_tokens=False)!r}",
            "",
        )
    if weights and not np.array_equal(
        np.asarray(got.weights, dtype=np.float32), np.asarray(want["weights"], dtype=np.float32)
    ):
        w = [float(x) for x in got.weights]
        i = _first_diff(w, want["weights"])  # type: ignore[arg-type]
        return "mismatch", f"weights differ from token {i}", ""
    return "same", "", ""


_NULL_IS_ABSENT = ("name", "tool_call_id", "tool_calls", "reasoning_content", "reasoning")


def documented_normalizations(messages: list[Any] | None) -> list[Any] | None:
    """What the `messages` format does to a row before any renderer sees it, on purpose.

    Applied to tinker's input too, so the comparison is about rendering. Each is a layout users
    reasonably expect to work (README, docs/architecture.md "Messages"):
    * tool-call `arguments` given as a JSON object or array (LLaMA-Factory, some OpenAI exports)
      become its JSON text; missing or null `arguments` become `"{}"`.
    * flat `{"name", "arguments"}` calls get the nested `function` shape; calls without an id
      (or with an empty one) get `call_k`, k counting the conversation's calls from 1.
    * a run of exactly k tool messages right after an assistant message with k tool calls, where a
      tool message names neither `tool_call_id` nor `name`, takes them from its call, in order
      (gpt-oss and Kimi write the tool's name / call id into the tool message's header).
    * vLLM's `reasoning` field is read as `reasoning_content` when that key is absent.
    * a null `name`, `tool_call_id`, `tool_calls` or `reasoning_content` is an absent one (a
      Parquet / HF datasets export gives every message every field).
    (`content: null` becomes `""` on both sides already: the oracle does what tinker's own
    OpenAI converter does.)
    """
    if messages is None:
        return None
    out = []
    k = 0
    for m in messages:
        if isinstance(m, dict):
            m = {key: v for key, v in m.items() if v is not None or key not in _NULL_IS_ABSENT}
        if isinstance(m, dict) and "reasoning" in m:
            reasoning = m.pop("reasoning")
            if "reasoning_content" not in m:
                m["reasoning_content"] = reasoning
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if isinstance(calls, list):
            fixed = []
            for c in calls:
                if isinstance(c, dict) and "function" not in c and "name" in c:
                    c = {
                        **{key: c[key] for key in ("id", "type") if key in c},
                        "function": {key: v for key, v in c.items() if key not in ("id", "type")},
                    }
                if isinstance(c, dict):
                    k += 1
                    if not c.get("id"):
                        c = {**c, "id": f"call_{k}"}
                fn = c.get("function") if isinstance(c, dict) else None
                if isinstance(fn, dict):
                    args = fn.get("arguments")
                    if args is None:
                        c = {**c, "function": {**fn, "arguments": "{}"}}
                    elif isinstance(args, (dict, list)):
                        c = {
                            **c,
                            "function": {**fn, "arguments": json.dumps(args, ensure_ascii=False)},
                        }
                fixed.append(c)
            m = {**m, "tool_calls": fixed}
        out.append(m)
    for i, m in enumerate(out):
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if m.get("role") != "assistant" or not isinstance(calls, list) or not calls:
            continue
        j = i + 1
        while j < len(out) and isinstance(out[j], dict) and out[j].get("role") == "tool":
            j += 1
        if j - (i + 1) != len(calls):
            continue
        for k, call in enumerate(calls):
            tool = out[i + 1 + k]
            fn = call.get("function") if isinstance(call, dict) else None
            if "tool_call_id" not in tool and "name" not in tool and isinstance(fn, dict):
                out[i + 1 + k] = {**tool, "tool_call_id": call.get("id"), "name": fn.get("name")}
    return out


@dataclass
class Item:
    """One conversation as the generator gives it (raw rows), in the three shapes compared."""

    messages: list[dict[str, Any]]
    messages_customized: list[dict[str, Any]] | None = None
    prompt: list[dict[str, Any]] | None = None


@functools.cache
def bound(name: str, date: str) -> tuple[Any, BatchEncoder, LoadedTokenizer, str]:
    tok_name = golden_pairs()[name]
    tok = tokenizer(tok_name)
    renderer = get_renderer(name, tok, options_for(name, {"date": date}))
    return renderer, BatchEncoder(tok), tok, tok_name


def oracle_results(
    oracle: Oracle, name: str, items: list[Item], modes: list[str] = MODES
) -> list[dict[str, Any]]:
    """tinker's answers for `items`: per item {"modes": {mode: ...}, "prompt": ... | None}."""
    send_render(oracle, name, items, modes)
    return oracle.receive()["results"]


def send_render(oracle: Oracle, name: str, items: list[Item], modes: list[str] = MODES) -> None:
    tok_name = golden_pairs()[name]
    oracle.send(
        {
            "op": "render",
            "renderer": name,
            "tokenizer": str(TOKENIZERS / tok_name),
            "modes": modes,
            "items": [
                {
                    "messages": documented_normalizations(it.messages),
                    "messages_customized": documented_normalizations(
                        it.messages_customized or it.messages
                    ),
                    "prompt": documented_normalizations(it.prompt),
                }
                for it in items
            ],
        }
    )


def shardprep_results(
    name: str, date: str, items: list[Item], modes: list[str] = MODES
) -> dict[str, list[Any]]:
    """shardprep's answers, mode -> per item RenderedExample | np.ndarray | RowError | None."""
    renderer, encoder, _, _ = bound(name, date)
    ours: dict[str, list[Any]] = {}
    for mode in modes:
        custom = mode == "customized"
        converted = [
            _convert((it.messages_customized or it.messages) if custom else it.messages, custom)
            for it in items
        ]
        ok = [c for c in converted if not isinstance(c, RowError)]
        rendered = iter(render_supervised_batch(renderer, encoder, ok, TrainOnWhat(mode)))
        ours[mode] = [c if isinstance(c, RowError) else next(rendered) for c in converted]
    pconv = [_convert(it.prompt, False) if it.prompt is not None else None for it in items]
    pok = [c for c in pconv if isinstance(c, list)]
    prendered = iter(render_prompt_batch(renderer, encoder, pok))
    ours["prompt"] = [next(prendered) if isinstance(c, list) else c for c in pconv]
    return ours


def evaluate(
    oracle: Oracle, name: str, items: list[Item], modes: list[str] = MODES
) -> list[dict[str, tuple[str, str, str, dict[str, Any]]]]:
    """Per item: mode (and "prompt") -> (kind, detail, shardprep refusal key, tinker's answer)."""
    date = oracle.info["date"]
    tok = bound(name, date)[2]
    send_render(oracle, name, items, modes)  # tinker works while shardprep renders
    ours = shardprep_results(name, date, items, modes)
    answers = oracle.receive()["results"]
    out = []
    for i, res in enumerate(answers):
        row: dict[str, tuple[str, str, str, dict[str, Any]]] = {}
        for mode in [*modes, "prompt"]:
            want = res["modes"][mode] if mode != "prompt" else res["prompt"]
            if want is None:
                continue
            kind, detail, key = _compare(want, ours[mode][i], tok, weights=mode != "prompt")
            row[mode] = (kind, detail, key, want)
        out.append(row)
    return out


def item_for_seed(seed: int) -> Item:
    messages = generator.conversation(seed)
    return Item(
        messages, generator.conversation(seed, customized=True), generator.prompt_cut(messages)
    )


def run_renderer(
    oracle: Oracle, name: str, seeds: range, tally: Tally | None = None, chunk: int = 100
) -> Tally:
    """Compare one renderer on `seeds`, every mode plus the generation prompt."""
    tally = tally or Tally()
    seeds_list = list(seeds)
    for start in range(0, len(seeds_list), chunk):
        batch = seeds_list[start : start + chunk]
        rows = evaluate(oracle, name, [item_for_seed(s) for s in batch])
        for seed, row in zip(batch, rows, strict=True):
            tally.conversations += 1
            for mode, (kind, detail, key, want) in row.items():
                tally.compared += 1
                if key:
                    tally.refusals[key] += 1
                if "error" in want:
                    tally.tinker_errors[tinker_key(want["error"])] += 1
                if kind == "mismatch":
                    tally.mismatches.append(Outcome(name, seed, mode, kind, detail, key))
    return tally


# -- hf_template vs transformers.apply_chat_template ----------------------------------------------

HF_TOKENIZERS = ["llama3", "qwen3", "deepseek_v3", "mistral_v3", "mistral_nemo_tekken"]
# shardprep refusals that are hf_template's own rule, not a disagreement with the template: the
# template is not prefix-consistent for the row (a later message rewrites earlier text, or a
# token straddles two messages), so no mask could be right.
HF_OWN_REFUSALS = (
    "chat template is not prefix-consistent",  # in text, or in tokens across a chunk boundary
    "chat template cannot prompt for message",  # a leading assistant: no header to tell apart
)


def _tally_hf(
    tally: Tally, want: Any, got: Any, tok: LoadedTokenizer, where: str, seed: int, mode: str
) -> None:
    """One hf_template render against the reference's: the renderer's own refusals (rows it
    cannot split into per-message tokens) counted apart, everything else compared."""
    tally.compared += 1
    if (
        isinstance(got, RowError)
        and "error" not in want
        and got.message.startswith(HF_OWN_REFUSALS)
    ):
        tally.refusals[refusal_key(got)] += 1
        return
    kind, detail, key = _compare(want, got, tok, weights=False)
    if key:
        tally.refusals[key] += 1
    if kind == "mismatch":
        tally.mismatches.append(Outcome(where, seed, mode, kind, detail, key))


@functools.cache
def hf_bound(tok_name: str) -> tuple[Any, BatchEncoder, LoadedTokenizer]:
    tok = tokenizer(tok_name)
    return get_renderer("hf_template", tok), BatchEncoder(tok), tok


def run_hf_template(
    oracle: Oracle, tok_name: str, seeds: range, tally: Tally | None = None
) -> Tally:
    """hf_template's tokens against apply_chat_template's, for whole conversations and prompts."""
    from shardprep.renderers.jinja_template import template_messages

    tally = tally or Tally()
    renderer, encoder, tok = hf_bound(tok_name)
    seeds_list = list(seeds)
    for start in range(0, len(seeds_list), 100):
        batch = seeds_list[start : start + 100]
        convs = []
        for seed in batch:
            c = _convert(generator.conversation(seed), False)
            if isinstance(c, RowError):
                continue  # refused by the format already; not a template question
            cut = generator.prompt_cut(c)
            convs.append((seed, c, cut))
        items = []
        for _, c, cut in convs:
            items.append({"messages": template_messages(c), "add_generation_prompt": False})
            items.append({"messages": template_messages(cut or []), "add_generation_prompt": True})
        oracle.send({"op": "hf_template", "tokenizer": str(TOKENIZERS / tok_name), "items": items})
        sup = render_supervised_batch(
            renderer, encoder, [c for _, c, _ in convs], TrainOnWhat.ALL_ASSISTANT_MESSAGES
        )
        prm = render_prompt_batch(renderer, encoder, [cut or [] for _, _, cut in convs])
        answers = oracle.receive()["results"]
        for k, (seed, _, _) in enumerate(convs):
            tally.conversations += 1
            for mode, want, got in (
                ("conversation", answers[2 * k], sup[k]),
                ("prompt", answers[2 * k + 1], prm[k]),
            ):
                if "error" in want:
                    tally.tinker_errors[tinker_key(want["error"])] += 1
                _tally_hf(tally, want, got, tok, f"hf_template/{tok_name}", seed, mode)
    return tally


# -- hf_template with a row's tools vs apply_chat_template(..., tools=...) ------------------------

GLAIVE = FIXTURES / "data/llamafactory/glaive_toolcall_en_demo.json.gz"


def glaive_tool_rows() -> list[dict[str, Any]]:
    """The repo's LLaMA-Factory glaive demo rows that declare tools (ShareGPT + a tools column)."""
    import gzip

    from shardprep.formats import tools_of

    with gzip.open(GLAIVE, "rt", encoding="utf-8") as fh:
        rows: list[dict[str, Any]] = json.load(fh)
    return [r for r in rows if tools_of(r)]


def run_hf_template_tools(oracle: Oracle, tok_name: str, tally: Tally | None = None) -> Tally:
    """hf_template with each row's tools against apply_chat_template(messages, tools=...): whole
    conversations, prompts, and every per-turn example (the render of messages[:i+1])."""
    from shardprep.encode.tokenize import render_supervised_examples
    from shardprep.formats import declare_tools
    from shardprep.renderers.hf_template import tools_of as carried_tools
    from shardprep.renderers.hf_template import untooled
    from shardprep.renderers.jinja_template import template_messages

    tally = tally or Tally()
    renderer, encoder, tok = hf_bound(tok_name)
    convs = []
    for row in glaive_tool_rows():
        conv = to_conversation(row, format="sharegpt")
        convs.append(declare_tools(renderer, conv, row, None, "auto"))
    items: list[dict[str, Any]] = []
    per_turn: list[dict[str, Any]] = []
    turn_items: list[tuple[int, int]] = []  # (conversation, message index) per turn item
    examples = render_supervised_examples(
        renderer, encoder, convs, TrainOnWhat.ALL_ASSISTANT_MESSAGES
    )
    for k, conv in enumerate(convs):
        messages, tools = template_messages(untooled(conv)), carried_tools(conv)
        items.append({"messages": messages, "add_generation_prompt": False, "tools": tools})
        items.append({"messages": messages[:-1], "add_generation_prompt": True, "tools": tools})
        turns = examples[k]
        for turn in turns if isinstance(turns, list) else []:
            i = turn.message_index
            per_turn.append(
                {"messages": messages[: i + 1], "add_generation_prompt": False, "tools": tools}
            )
            turn_items.append((k, i))
    items += per_turn  # after every conversation's whole render and prompt
    oracle.send({"op": "hf_template", "tokenizer": str(TOKENIZERS / tok_name), "items": items})
    sup = render_supervised_batch(renderer, encoder, convs, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    prm = render_prompt_batch(renderer, encoder, [c[:-1] for c in convs])
    answers = oracle.receive()["results"]
    for k in range(len(convs)):
        tally.conversations += 1
        for mode, want, got in (
            ("conversation", answers[2 * k], sup[k]),
            ("prompt", answers[2 * k + 1], prm[k]),
        ):
            _tally_hf(tally, want, got, tok, f"hf_template+tools/{tok_name}", k, mode)
    by_turn = {
        (k, t.message_index): t.example
        for k, turns in enumerate(examples)
        if isinstance(turns, list)
        for t in turns
    }
    for (k, i), want in zip(turn_items, answers[2 * len(convs) :], strict=True):
        tally.compared += 1
        ours = by_turn[(k, i)].tokens.tolist()
        if "error" in want:
            tally.mismatches.append(
                Outcome(
                    f"hf_template+tools/{tok_name}", k, f"turn {i}", "mismatch", want["error"], ""
                )
            )
        # An example stops at its end-of-turn token; the template may add the separator after it.
        elif ours != want["tokens"][: len(ours)] or len(want["tokens"]) - len(ours) > 1:
            j = _first_diff(ours, want["tokens"])
            tally.mismatches.append(
                Outcome(
                    f"hf_template+tools/{tok_name}",
                    k,
                    f"turn {i}",
                    "mismatch",
                    f"tokens differ at {j}",
                    "",
                )
            )
    return tally
