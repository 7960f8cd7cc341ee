"""Seeded generator of valid and edge-case conversations for the differential tests (issue 14).

Pure standard library: the same seed gives the same conversation on every machine and Python.
A conversation is a list of raw message objects in the OpenAI / tinker-cookbook layout (the
`messages` format's rows): `content` str | list of parts | None, `tool_calls` as
`{"type": "function", "id", "function": {"name", "arguments": JSON string}}`, tool messages with
`tool_call_id` / `name`, and (for `train_on: customized`) `trainable` on every message.

Features (issue 14): empty / null content with tool calls, list content with 0..3 text parts,
thinking parts in any position, `tool_calls: []` vs missing, literal `<think>` / `</think>` in
content, no user message, non-object and non-JSON tool-call arguments, empty strings, whitespace
runs, unicode, special-token text inside content, system messages anywhere, conversations ending
on user / assistant / tool, trainable flags, malformed parts (rare, so most rows still render).
"""

from __future__ import annotations

import json
import random
from typing import Any

WORDS = [
    "hello",
    "world",
    "the",
    "answer",
    "is",
    "42",
    "Let",
    "me",
    "think",
    "about",
    "it",
    "ok",
    "sure",
    "python",
    "def",
    "f(x):",
    "return",
    "x",
    "weather",
    "Paris",
    "today",
]
UNICODE = ["héllo", "日本語", "emoji 🙂", "Ωmega", "ß", "Привет", "\u200b", "café\u0301", "👍🏽"]
SPECIAL = [
    "<|im_end|>",
    "<|im_start|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<|eot_id|>",
    "<|begin_of_text|>",
    "<｜end▁of▁sentence｜>",
    "<|end|>",
    "<|return|>",
    "<|im_middle|>",
    "<tool_response>",
    "<|start_header_id|>",
    "<|channel|>",
    "<|user|>",
]
WHITESPACE = [" ", "  ", "\n", "\n\n", "\t", " \n ", "\n\n\n", "   \n"]
TOOL_NAMES = ["get_weather", "search", "calc", "lookup_user"]


def _words(rng: random.Random, lo: int = 1, hi: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def text(rng: random.Random) -> str:
    """A content string: mostly plain, sometimes an edge case."""
    r = rng.random()
    if r < 0.45:
        return _words(rng)
    if r < 0.52:
        return ""
    if r < 0.60:
        return rng.choice(WHITESPACE)
    if r < 0.68:
        return rng.choice(WHITESPACE) + _words(rng) + rng.choice(WHITESPACE)
    if r < 0.76:
        return _words(rng, 0, 3) + " " + rng.choice(UNICODE) + " " + _words(rng, 0, 2)
    if r < 0.84:
        return _words(rng, 0, 3) + rng.choice(SPECIAL) + _words(rng, 0, 3)
    if r < 0.90:
        # a literal think block (or half of one) inside a string
        inner = _words(rng, 0, 4)
        return rng.choice(
            [
                f"<think>{inner}</think>{_words(rng)}",
                f"<think>\n{inner}\n</think>\n\n{_words(rng)}",
                f"<think>{inner}",
                f"{_words(rng)}</think>{_words(rng)}",
                f"{_words(rng)} <think></think>",
            ]
        )
    if r < 0.95:
        return _words(rng) + "\n\n" + _words(rng)
    return "a" * rng.randint(1, 3) + "  " + "b"


def _arguments(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.7:
        obj: dict[str, Any] = {}
        for _ in range(rng.randint(0, 3)):
            key = rng.choice(["city", "q", "n", "unit", "items", "flag", "nested"])
            obj[key] = rng.choice(
                [
                    _words(rng, 1, 2),
                    rng.randint(-5, 100),
                    1.5,
                    True,
                    None,
                    [1, "a"],
                    {"k": "v"},
                    rng.choice(UNICODE),
                ]
            )
        return json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    return rng.choice(["[1, 2]", '"str"', "3", "null", "not json", "", "{", "{}", '{"a": 1} '])


def tool_call(rng: random.Random, k: int) -> dict[str, Any]:
    return {
        "type": "function",
        "id": f"call_{k}",
        "function": {"name": rng.choice(TOOL_NAMES), "arguments": _arguments(rng)},
    }


def _part(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": text(rng)}
    return {"type": "thinking", "thinking": text(rng)}


def _malformed_part(rng: random.Random) -> dict[str, Any] | Any:
    return rng.choice(
        [
            {"type": "thinking"},
            {"type": "text"},
            {"type": "image", "image": "http://example.com/a.png"},
            {"type": "audio", "audio": "x"},
            {"type": "video", "text": "v"},
            {"type": "text", "text": 3},
            "just a string",
        ]
    )


def content(rng: random.Random, role: str, *, malformed: bool) -> Any:
    r = rng.random()
    if r < 0.55:
        return text(rng)
    kinds_pool = ["text"] if role != "assistant" else ["text", "thinking"]
    n = rng.choice([0, 1, 1, 1, 2, 2, 3])
    kinds = [rng.choice(kinds_pool) for _ in range(n)]
    if role == "assistant" and n and rng.random() < 0.5:
        kinds[0] = "thinking"  # the common reasoning-trace shape: thinking first
    parts: list[Any] = [_part(rng, k) for k in kinds]
    if malformed and rng.random() < 0.5:
        parts.insert(rng.randint(0, len(parts)), _malformed_part(rng))
    if role != "assistant" and malformed and rng.random() < 0.3:
        parts.insert(rng.randint(0, len(parts)), _part(rng, "thinking"))  # thinking off-assistant
    return parts


def assistant(rng: random.Random, k: list[int], *, malformed: bool) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant"}
    r = rng.random()
    calls: list[dict[str, Any]] | None = None
    if r < 0.35:
        calls = []
        for _ in range(rng.randint(1, 3)):
            k[0] += 1
            calls.append(tool_call(rng, k[0]))
    elif r < 0.42:
        calls = []  # an explicit empty list, unlike a missing key
    c = content(rng, "assistant", malformed=malformed)
    if calls and rng.random() < 0.4:
        c = rng.choice(["", None, []]) if rng.random() < 0.8 else c
    msg["content"] = c
    if rng.random() < 0.08:
        # OpenAI's separate reasoning field (becomes the leading thinking part)
        msg["reasoning_content"] = rng.choice([text(rng), "", _words(rng)])
    if calls is not None:
        msg["tool_calls"] = calls
    if malformed and rng.random() < 0.2:
        msg["tool_calls"] = rng.choice(
            [
                [{"type": "function", "id": "c", "function": {"name": "f", "arguments": {"a": 1}}}],
                [{"type": "function", "id": "c", "function": {"name": "f"}}],
                [{"type": "function", "id": "c", "function": {"name": "f", "arguments": ""}}],
            ]
        )
    return msg


def conversation(seed: int, *, customized: bool = False) -> list[dict[str, Any]]:
    """One conversation for `seed` (the customized variant has `trainable` on every message)."""
    rng = random.Random(seed)
    malformed = rng.random() < 0.12
    k = [0]
    msgs: list[dict[str, Any]] = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": content(rng, "system", malformed=malformed)})
    shape = rng.random()
    turns = rng.randint(1, 3)
    no_user = shape < 0.08
    for t in range(turns):
        if rng.random() < 0.08:
            msgs.append({"role": "system", "content": content(rng, "system", malformed=malformed)})
        if not no_user:
            msgs.append({"role": "user", "content": content(rng, "user", malformed=malformed)})
        a = assistant(rng, k, malformed=malformed)
        msgs.append(a)
        while a.get("tool_calls"):
            for call in a["tool_calls"]:
                tool: dict[str, Any] = {
                    "role": "tool",
                    "content": content(rng, "tool", malformed=malformed),
                }
                if isinstance(call, dict) and rng.random() < 0.9:
                    tool["tool_call_id"] = call.get("id")
                    tool["name"] = call.get("function", {}).get("name", "f")
                msgs.append(tool)
            if t == turns - 1 and rng.random() < 0.25:
                break  # end on a tool message
            a = assistant(rng, k, malformed=malformed)
            msgs.append(a)
            if rng.random() < 0.5:
                break
    r = rng.random()
    if r < 0.15 and not no_user:
        msgs.append({"role": "user", "content": content(rng, "user", malformed=malformed)})
    elif r < 0.2:
        msgs.append({"role": "system", "content": text(rng)})
    if malformed and rng.random() < 0.15:
        victim = rng.choice(msgs)
        victim["reasoning_content"] = rng.choice([_words(rng), 3])  # on any role, or not a string
    real_shapes(msgs, random.Random(f"real-{seed}"))
    if customized:
        for m in msgs:
            m["trainable"] = rng.random() < 0.5
        if malformed and rng.random() < 0.3:
            rng.choice(msgs)["trainable"] = rng.choice(["yes", 1, None])
    return msgs


LONG_PARAGRAPH = (
    "The function reads the file line by line, strips trailing whitespace and skips blank "
    "lines; each remaining line is split on the first '=' into a key and a value."
)
CODE_BLOCK = "```python\ndef f(x):\n    if x > 0:\n        return x * 2\n    return -x\n```"
EXPORT_EXTRAS = {"refusal": None, "function_call": None, "annotations": [], "audio": None}


def _long_text(rng: random.Random) -> str:
    """A few KB of ordinary prose, markdown and code (real answers are long)."""
    pieces = [
        LONG_PARAGRAPH,
        CODE_BLOCK,
        "1. first\n2. second\n   - nested item\n3. third",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        _words(rng, 20, 60),
        rng.choice(UNICODE) * rng.randint(1, 20),
    ]
    return "\n\n".join(rng.choice(pieces) for _ in range(rng.randint(6, 30)))


def real_shapes(msgs: list[dict[str, Any]], rng: random.Random) -> None:
    """Shapes real exports have that the draws above rarely make, in place, from a separate rng.

    A separate rng keeps every conversation the draws above made for a seed (earlier runs' seeds
    still mean the same rows); each shape touches a fraction of the conversations:
    * `name` on user / assistant / system messages (OpenAI's participant name) and OpenAI export
      keys (`refusal`, `function_call`, `annotations`, `audio` as null / empty) and other unknown
      keys (`id`, `loss_weight`, `metadata`);
    * parallel tool results out of call order, results naming only their id (or only their
      name), an id no call has, two calls sharing an id, a call without its result;
    * an agent loop: 2..6 rounds of calls and results before the final answer;
    * calls without an id (LLaMA-Factory, ShareGPT exports) or without `type`, flat
      `{"name", "arguments"}` calls;
    * a reasoning model's tool turn: `content: null` with `reasoning_content` (or vLLM's
      `reasoning`) and tool calls;
    * long content (a few KB of prose, markdown and code);
    * text parts with extra keys (`cache_control`);
    * a Parquet / HF datasets export's rows, where every message has every optional field
      (`name`, `tool_call_id`, `tool_calls`, `reasoning_content`), null where it has none;
    * `content: null` on a user / system / tool message (refused: tinker's converter makes it "");
    * OpenAI's `developer` role (refused: shardprep knows four roles).
    """
    if rng.random() < 0.2:
        for m in msgs:
            if m.get("role") in ("user", "assistant", "system") and rng.random() < 0.5:
                m["name"] = rng.choice(["alice", "bob", "assistant", "Example User"])
    if rng.random() < 0.15:
        for m in msgs:
            if m.get("role") == "assistant":
                m.update({k: v for k, v in EXPORT_EXTRAS.items() if rng.random() < 0.6})
            if rng.random() < 0.3:
                m[rng.choice(["id", "loss_weight", "metadata"])] = rng.choice(
                    ["msg_1", 1.0, {"source": "x"}]
                )
    calls_at = [
        i
        for i, m in enumerate(msgs)
        if m.get("role") == "assistant"
        and isinstance(m.get("tool_calls"), list)
        and m["tool_calls"]
    ]
    for i in reversed(calls_at):  # from the end: a removed result shifts only later messages
        calls = msgs[i]["tool_calls"]
        if not all(isinstance(c, dict) and isinstance(c.get("function"), dict) for c in calls):
            continue
        j = i + 1
        while j < len(msgs) and msgs[j].get("role") == "tool":
            j += 1
        run = msgs[i + 1 : j]
        r = rng.random()
        if r < 0.25 and len(run) > 1:
            rng.shuffle(run)  # parallel results in the order they finished
            msgs[i + 1 : j] = run
        elif r < 0.35 and run:
            tool = rng.choice(run)
            tool.pop(rng.choice(["name", "tool_call_id"]), None)
        elif r < 0.42 and run:
            rng.choice(run)["tool_call_id"] = "call_unknown"
        elif r < 0.47 and len(calls) > 1:
            calls[1]["id"] = calls[0]["id"]
        elif r < 0.55 and len(run) > 1:
            msgs.remove(rng.choice(run))  # a call whose result is missing
        r = rng.random()
        if r < 0.12:
            for c in calls:
                c.pop("id", None)
            for tool in run:
                tool.pop("tool_call_id", None)
                if rng.random() < 0.5:
                    tool.pop("name", None)
        elif r < 0.17:
            for c in calls:
                c.pop("type", None)
        elif r < 0.22:
            msgs[i]["tool_calls"] = [
                {"id": c["id"], **c["function"]} if rng.random() < 0.5 else dict(c["function"])
                for c in calls
            ]
        if rng.random() < 0.12 and not msgs[i].get("reasoning_content"):
            msgs[i]["content"] = rng.choice([None, ""])
            key = "reasoning_content" if rng.random() < 0.7 else "reasoning"
            msgs[i][key] = _words(rng, 3, 12)
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=None)
    if last is not None and rng.random() < 0.08:
        # an agent loop: rounds of call and result before the final answer
        loop: list[dict[str, Any]] = []
        for n in range(rng.randint(2, 6)):
            calls = [tool_call(rng, 100 + 10 * n + j) for j in range(rng.choice([1, 1, 2]))]
            turn: dict[str, Any] = {
                "role": "assistant",
                "content": rng.choice(["", None, text(rng)]),
            }
            if rng.random() < 0.4:
                turn["content"] = [{"type": "thinking", "thinking": _words(rng)}]
            loop.append({**turn, "tool_calls": calls})
            for c in calls:
                result = {"role": "tool", "content": text(rng), "tool_call_id": c["id"]}
                loop.append({**result, "name": c["function"]["name"]})
        msgs[last:last] = loop
    if rng.random() < 0.1:
        victim = rng.choice(msgs)
        if isinstance(victim.get("content"), str):
            victim["content"] = _long_text(rng)
        elif isinstance(victim.get("content"), list):
            victim["content"] = [*victim["content"], {"type": "text", "text": _long_text(rng)}]
    if rng.random() < 0.1:
        # chat UIs' text parts carry their own keys (Anthropic-style cache_control)
        for m in msgs:
            for part in m.get("content") if isinstance(m.get("content"), list) else []:
                if isinstance(part, dict) and part.get("type") == "text":
                    part["cache_control"] = {"type": "ephemeral"}
    if rng.random() < 0.1:
        # a Parquet / HF datasets export: one struct for every message, absent fields null
        for m in msgs:
            for key in ("name", "tool_call_id", "tool_calls", "reasoning_content"):
                m.setdefault(key, None)
    if rng.random() < 0.03:
        victim = rng.choice(msgs)
        if victim.get("role") in ("user", "system", "tool"):
            victim["content"] = None  # refused: only an assistant's null content means ""
    if rng.random() < 0.03:
        msgs.insert(0, {"role": "developer", "content": _words(rng)})


def prompt_cut(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The conversation before its last assistant message (the golden files' prompt), or None."""
    idx = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    return messages[: idx[-1]] if idx else None
