"""Whole builds vs tinker-cookbook 0.6.1's own dataset code: the datum level, row by row.

The renderer differential (`harness.py`) compares token sequences and weights before any datum
is made. This compares what a real `shardprep.build.run.build` writes, read back through the
reader users use (`shardprep.torch.ShardDataset`; the Parquet shards the manifest lists when
torch is absent), with what tinker itself makes of each input row:

* `sft`: `supervised.data.conversation_to_datum(messages, renderer, max_length, train_on,
  reduction)`: the next-token shift, `max_length` truncation (chunks popped / cut from the end,
  then `weights[1:len(targets) + 1]`) and the `mean` reduction in torch float32;
* `dpo`: the row function of `preference.dpo_datasets.DPODatasetBuilderFromComparisons` over
  `ComparisonBuilderFromJsonl` rows (chosen = A if the label is A, else B; `reduction="none"`);
* `rl_prompts`: `build_generation_prompt` of the conversation without its trailing assistant
  message (shardprep's definition of an RL prompt; tinker's RL environments prompt this way).

Inputs: generated conversations (`generator.py`, seeded) plus crafted long ones whose length is
padded so that `max_length` cuts exactly at chosen places of the last trained span: inside the
prompt, inside the assistant header, at its first token, inside it, at its end, at the row's
exact length and one past it (so some cuts leave nothing trained).

Per row the expected fate follows from tinker's answer (see `expected_*`): kept and equal, or
dropped under the reason shardprep documents (RESULTS.md, "Datasets"), or refused where tinker
raises. Dropped rows are counted, not listed, by a build: their reasons are compared as counts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from reference import generator, harness
from reference.oracle import Oracle
from shardprep.encode.tokenize import BatchEncoder, render_prompt_batch, render_supervised_batch
from shardprep.errors import RowError
from shardprep.formats import to_conversation
from shardprep.renderers import TrainOnWhat, get_renderer

# $SHARDPREP_REF_SEED / $SHARDPREP_REF_DATASET_CONVS: the generated rows per case (CI: 60 from 0)
SEED0 = int(os.environ.get("SHARDPREP_REF_SEED", "0"))
CONVERSATIONS = int(os.environ.get("SHARDPREP_REF_DATASET_CONVS", "60"))
# shardprep drops (never writes) a datum tinker would make with no trained target: it cannot
# train, and in a `mean` batch it is a row of zeros. Counted under `no_trained_tokens`.
NO_TRAINED = "no_trained_tokens"
# A pair refused by the format where tinker's DPO builder makes two datums (RESULTS.md): a
# completion that is empty, does not end with an assistant message, or a pair without a prompt.
DELIBERATE_PAIR_REFUSALS = (
    "completion A is empty",
    "completion B is empty",
    "completion A does not end with an assistant message",
    "completion B does not end with an assistant message",
    "the pair has no prompt",
)

# An RL row with nothing before its final assistant message (a lone assistant message): tinker's
# build_generation_prompt([]) is the bare assistant header, a prompt of nothing (RESULTS.md).
EMPTY_PROMPT = "nothing is left before the final assistant message"


@dataclass(frozen=True)
class Case:
    """One build: a task, a renderer and the options a recipe sets."""

    id: str
    task: str  # sft | dpo | rl_prompts
    renderer: str
    train_on: str = TrainOnWhat.ALL_ASSISTANT_MESSAGES.value
    max_length: int | None = None
    overlong: str = "truncate"
    reduction: str = "none"
    tie: str = "as_b"
    max_prompt_tokens: int | None = None
    test_size: int = 0
    conversations: int = CONVERSATIONS  # generated rows (crafted ones come on top)
    # The build's encoder: `auto` (fastokens where proved equal: what users get) for qwen3 and
    # llama3; `tokenizers` for gpt-oss and DeepSeek, whose fastokens parse costs 3-9 s (the
    # encoders' ids are compared by their own probe, not here).
    encoder: str = "auto"

    @property
    def limit(self) -> int | None:
        return self.max_prompt_tokens if self.task == "rl_prompts" else self.max_length


CASES = [
    Case("sft-qwen3-all-none", "sft", "qwen3", test_size=7),
    Case(
        "sft-qwen3-last-96-mean",
        "sft",
        "qwen3",
        TrainOnWhat.LAST_ASSISTANT_MESSAGE.value,
        max_length=96,
        reduction="mean",
    ),
    Case(
        "sft-qwen3-customized-128-drop",
        "sft",
        "qwen3",
        TrainOnWhat.CUSTOMIZED.value,
        max_length=128,
        overlong="drop",
    ),
    Case("sft-llama3-allmsgs-64", "sft", "llama3", TrainOnWhat.ALL_MESSAGES.value, max_length=64),
    Case(
        "sft-llama3-lastturn-mean",
        "sft",
        "llama3",
        TrainOnWhat.LAST_ASSISTANT_TURN.value,
        reduction="mean",
        test_size=5,
    ),
    Case(
        "sft-gptoss-all-160-mean",
        "sft",
        "gpt_oss_medium_reasoning",
        max_length=160,
        reduction="mean",
        encoder="tokenizers",
    ),
    Case(
        "sft-deepseekv3-usersys-80",
        "sft",
        "deepseekv3",
        TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES.value,
        max_length=80,
        encoder="tokenizers",
    ),
    Case(
        "sft-deepseekv3-alltokens-100",
        "sft",
        "deepseekv3",
        TrainOnWhat.ALL_TOKENS.value,
        max_length=100,
        encoder="tokenizers",
    ),
    Case("dpo-qwen3", "dpo", "qwen3", test_size=5),
    Case("dpo-llama3-72", "dpo", "llama3", max_length=72, tie="drop"),
    Case(
        "dpo-gptoss-120-drop",
        "dpo",
        "gpt_oss_medium_reasoning",
        max_length=120,
        overlong="drop",
        encoder="tokenizers",
    ),
    Case("rl-qwen3", "rl_prompts", "qwen3", test_size=5),
    Case(
        "rl-deepseekv3-40",
        "rl_prompts",
        "deepseekv3",
        max_prompt_tokens=40,
        encoder="tokenizers",
    ),
]


# -- inputs --------------------------------------------------------------------------------------

LONG_ANSWER = (
    "Sure. First, read the file line by line and strip trailing whitespace.\n"
    "Then split each remaining line on the first '=' into a key and a value, "
    "and keep the last value seen for each key."
)
SHORT_ANSWER = "No idea, sorry."


def _with_trainable(msgs: list[dict[str, Any]], last: bool = True) -> list[dict[str, Any]]:
    """`train_on: customized` flags: assistants trained, except the last when `last` is False."""
    out = [{**m, "trainable": m["role"] == "assistant"} for m in msgs]
    if not last:
        out[-1]["trainable"] = False
    return out


def _templates(case: Case) -> list[list[dict[str, Any]]]:
    """Plain conversations every renderer renders; `{FILL}` marks where the padding goes."""
    one = [
        {"role": "user", "content": "Question:{FILL}"},
        {"role": "assistant", "content": LONG_ANSWER},
    ]
    multi = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question:{FILL}"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": LONG_ANSWER},
    ]
    if case.train_on == TrainOnWhat.CUSTOMIZED.value:
        return [_with_trainable(one), _with_trainable(multi), _with_trainable(multi, last=False)]
    return [one, multi]


def _fill(msgs: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    # " a" is one token in every tokenizer compared (a word of its own to each pre-tokenizer).
    return [
        {**m, "content": m["content"].replace("{FILL}", " a" * k)}
        if isinstance(m.get("content"), str)
        else m
        for m in msgs
    ]


@functools.cache
def _crafter(name: str, date: str) -> tuple[Any, BatchEncoder]:
    """A renderer to measure crafted rows with (`tokenizers` ids: no fastokens parse to wait for;
    the build itself encodes as users' builds do)."""
    tok = harness.tokenizer(harness.golden_pairs()[name])
    renderer = get_renderer(name, tok, harness.options_for(name, {"date": date}))
    return renderer, BatchEncoder(tok, encoder="tokenizers")


def _render(case: Case, conv: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    renderer, encoder = _crafter(case.renderer, _DATE[0])
    msgs = to_conversation(
        {"messages": conv}, format="messages", customized=case.train_on == "customized"
    )
    [ex] = render_supervised_batch(renderer, encoder, [msgs], TrainOnWhat(case.train_on))
    assert not isinstance(ex, RowError), ex
    return np.asarray(ex.tokens), np.asarray(ex.weights)


_DATE = [""]  # gpt-oss's current_date: the oracle's day (set by `run_case`)


def _landmarks(weights: np.ndarray) -> dict[str, int]:
    """Cut points (tokens kept) around the last trained span [s, e) of n tokens."""
    n = len(weights)
    trained = np.flatnonzero(weights > 0)
    if not len(trained):
        return {"one_over": n - 1, "exact": n, "one_under": n + 1}
    e = int(trained[-1]) + 1
    s = e
    while s > 0 and weights[s - 1] > 0:
        s -= 1
    return {
        "prompt": s - 3,  # inside whatever precedes the span (a header, the prompt)
        "header_end": s - 1,  # the span's first token is the last kept: nothing of it trained
        "span_start": s,  # ... its first target, weights[1:s], still untrained
        "first_trained": s + 1,
        "span_middle": (s + e) // 2,
        "span_end": e,
        "one_over": n - 1,  # the row is one token longer than max_length
        "exact": n,  # exactly max_length tokens
        "one_under": n + 1,  # one token shorter
    }


def crafted_conversations(case: Case) -> list[tuple[str, list[dict[str, Any]]]]:
    """(landmark, conversation) padded so that the case's max_length cuts at the landmark."""
    limit = case.limit
    if limit is None or case.task != "sft":
        return []
    out = []
    for t, template in enumerate(_templates(case)):
        base_tokens, base_weights = _render(case, _fill(template, 0))
        fill_at = _fill_position(case, template)
        for name, p in _landmarks(base_weights).items():
            k = limit - p
            if k < 0 or p <= fill_at:
                continue
            conv = _fill(template, k)
            tokens, _ = _render(case, conv)
            # the padding shifts everything after it by k tokens exactly, or the landmark is lost
            if len(tokens) - len(base_tokens) == k:
                out.append((f"template{t}:{name}", conv))
    return out


def _fill_position(case: Case, template: list[dict[str, Any]]) -> int:
    """Where the padding starts (a cut before it cannot be moved by padding)."""
    a, _ = _render(case, _fill(template, 0))
    b, _ = _render(case, _fill(template, 3))
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return i


def crafted_pairs(case: Case) -> list[tuple[str, dict[str, Any]]]:
    """tinker_comparison rows padded so that max_length cuts each side at its landmarks."""
    if case.max_length is None:
        return []
    prompt = [{"role": "user", "content": "Question:{FILL}"}]
    long, short = (
        [{"role": "assistant", "content": LONG_ANSWER}],
        [{"role": "assistant", "content": SHORT_ANSWER}],
    )
    sft = Case(case.id, "sft", case.renderer, TrainOnWhat.LAST_ASSISTANT_MESSAGE.value)
    fill_at = _fill_position(sft, prompt + long)
    out = []
    for side, (a, b) in (("long", (long, short)), ("short", (short, long))):
        base_tokens, base_weights = _render(sft, _fill(prompt, 0) + a)
        for name, p in _landmarks(base_weights).items():
            k = case.max_length - p
            if k < 0 or p <= fill_at:
                continue
            tokens, _ = _render(sft, _fill(prompt, k) + a)
            if len(tokens) - len(base_tokens) != k:
                continue
            for label in ("A", "B"):  # the cut side chosen, then rejected
                ca, cb = (a, b) if label == "A" else (b, a)
                row = {
                    "comparison": {
                        "prompt_conversation": _fill(prompt, k),
                        "completion_A": ca,
                        "completion_B": cb,
                    },
                    "label": label,
                }
                out.append((f"{side}:{name}:{label}", row))
    return out


def generated_pair(seed: int) -> dict[str, Any] | None:
    """A tinker_comparison row from generated conversations: the prompt is one conversation cut
    before its last assistant message, completion A that message and what follows it, completion
    B the tail of another seed's conversation (any shape: the generator's edge cases apply)."""
    rng = random.Random(f"pair-{seed}")
    conv = generator.conversation(seed)
    other = generator.conversation(seed + 1_000_003)
    cut = [i for i, m in enumerate(conv) if isinstance(m, dict) and m.get("role") == "assistant"]
    if not cut:
        return None
    # mostly one assistant message; else from the first assistant message through the last
    # (tool calls and results inside the completion), or to the end (a tail that may not end on
    # an assistant message: refused, RESULTS.md)
    j, end = cut[-1], cut[-1] + 1
    if rng.random() < 0.3:
        j = cut[0]
        end = len(conv) if rng.random() < 0.3 else end
    ocut = [i for i, m in enumerate(other) if isinstance(m, dict) and m.get("role") == "assistant"]
    tail_b = other[ocut[-1] : ocut[-1] + 1] if ocut else other[-1:]
    label = rng.choice(["A", "A", "B", "B", "Tie"])
    return {
        "comparison": {
            "prompt_conversation": conv[:j],
            "completion_A": conv[j:end],
            "completion_B": tail_b,
        },
        "label": label,
    }


def crafted_prompts(case: Case) -> list[tuple[str, list[dict[str, Any]]]]:
    """RL prompt rows whose prompt is max_prompt_tokens - 1, exactly it, and one more."""
    if case.max_prompt_tokens is None:
        return []
    conv = [{"role": "user", "content": "Question:{FILL}"}, {"role": "assistant", "content": "x"}]
    renderer, encoder = _crafter(case.renderer, _DATE[0])

    def length(k: int) -> int:
        msgs = to_conversation({"messages": _fill(conv[:1], k)}, format="messages")
        [toks] = render_prompt_batch(renderer, encoder, [msgs])
        assert not isinstance(toks, RowError), toks
        return len(toks)

    base = length(0)
    out = []
    for name, d in (("one_under", -1), ("exact", 0), ("one_over", 1)):
        k = case.max_prompt_tokens + d - base
        if k >= 0 and length(k) == base + k:
            out.append((name, _fill(conv, k)))
    return out


def input_rows(case: Case) -> tuple[list[dict[str, Any]], list[str]]:
    """The source's rows and a label per row (`seed N` or the crafted landmark)."""
    seeds = range(SEED0, SEED0 + case.conversations)
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    if case.task == "dpo":
        for s in seeds:
            pair = generated_pair(s)
            if pair is not None:
                rows.append(pair)
                labels.append(f"seed {s}")
        for name, row in crafted_pairs(case):
            rows.append(row)
            labels.append(f"crafted {name}")
        return rows, labels
    custom = case.train_on == TrainOnWhat.CUSTOMIZED.value
    for s in seeds:
        rows.append({"messages": generator.conversation(s, customized=custom)})
        labels.append(f"seed {s}")
    crafted = crafted_prompts(case) if case.task == "rl_prompts" else crafted_conversations(case)
    for name, conv in crafted:
        rows.append({"messages": conv})
        labels.append(f"crafted {name}")
    return rows, labels


# -- shardprep: a real build, read back -----------------------------------------------------------


def build_case(case: Case, rows: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Build the rows with the case's recipe; -> {"kept": {row: record}, "skipped": {row:
    (reason, message)}, "dropped": Counter(reason), "manifest"}."""
    from shardprep.build.run import build
    from shardprep.recipe import load_recipe

    work.mkdir(parents=True, exist_ok=True)
    data = work / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    tok = harness.golden_pairs()[case.renderer]
    recipe: dict[str, Any] = {
        "name": case.id,
        "output": "out",
        "tokenizer": str(harness.TOKENIZERS / tok),
        "renderer": {
            "name": case.renderer,
            "options": harness.options_for(case.renderer, {"date": _DATE[0]}),
        },
        "task": case.task,
        "sources": [
            {
                "name": "rows",
                "path": str(data),
                "format": "tinker_comparison" if case.task == "dpo" else "messages",
            }
        ],
        "on_error": "skip",
        "skipped_sample": len(rows) + 1,
        "workers": 1,
        "conformance_rows": 0,
        "encoder": case.encoder,
        "split": {"test_size": case.test_size, "seed": 3},
    }
    if case.task == "sft":
        recipe.update(
            train_on=case.train_on,
            max_length=case.max_length,
            overlong=case.overlong,
            weight_reduction=case.reduction,
        )
    elif case.task == "dpo":
        recipe.update(max_length=case.max_length, overlong=case.overlong, tie=case.tie)
    else:
        recipe.update(max_prompt_tokens=case.max_prompt_tokens)
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), "utf-8")
    result = build(*load_recipe(path))
    manifest = result.manifest
    kept: dict[int, dict[str, Any]] = {}
    for split in manifest["splits"]:
        for rec in read_split(result.output, split, work / "cache"):
            row = int(rec["source_row"])
            assert row not in kept, f"row {row} written twice"
            kept[row] = {**rec, "split": split}
    skipped: dict[int, tuple[str, str]] = {}
    if manifest.get("skipped_sample"):
        text = (Path(result.output) / manifest["skipped_sample"]).read_text("utf-8")
        for line in text.splitlines():
            s = json.loads(line)
            skipped[int(s["line"]) - 1] = (s["reason"], s["message"])
    # the manifest counts skipped and dropped rows together, by reason: the drops are the rest
    dropped = Counter(manifest["stats"]["dropped"])
    dropped.subtract(Counter(reason for reason, _ in skipped.values()))
    dropped = +dropped
    return {"kept": kept, "skipped": skipped, "dropped": dropped, "manifest": manifest}


def read_split(output: str, split: str, cache: Path) -> list[dict[str, Any]]:
    """The split's rows as users read them: ShardDataset, or the shards the manifest lists."""
    try:
        from shardprep.torch import ShardDataset
    except ImportError:  # no torch: the Parquet shards, through the manifest
        import pyarrow.parquet as pq

        from shardprep.store.manifest import read_manifest
        from shardprep.store.storage import Output

        manifest = read_manifest(Output(output))
        assert manifest is not None
        out: list[dict[str, Any]] = []
        for shard in manifest["splits"][split]["shards"]:
            out += pq.read_table(Path(output) / shard["path"]).to_pylist()
        return out
    ds = ShardDataset(output, split, cache_dir=str(cache), verify_hashes=True)
    return [ds[i] for i in range(len(ds))]


# -- tinker --------------------------------------------------------------------------------------


def tinker_items(case: Case, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What tinker is given per row: the documented normalizations applied (harness.py)."""
    norm = harness.documented_normalizations
    if case.task == "dpo":
        items = []
        for row in rows:
            c = row["comparison"]
            prompt = c["prompt_conversation"]
            # shardprep normalizes prompt + completion as one conversation (tool results may
            # answer calls across the boundary): so is tinker's input, then split again
            sides = [norm(prompt + c[k]) or [] for k in ("completion_A", "completion_B")]
            p = len(prompt)
            comparison = {
                "prompt_conversation": sides[0][:p],
                "completion_A": sides[0][p:],
                "completion_B": sides[1][p:],
            }
            items.append({"comparison": comparison, "label": row["label"]})
        return items
    if case.task == "rl_prompts":
        items = []
        for row in rows:
            msgs = norm(row["messages"]) or []
            if msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
                msgs = msgs[:-1]
            items.append({"messages": msgs})
        return items
    return [{"messages": norm(row["messages"])} for row in rows]


def send_to_tinker(oracle: Oracle, case: Case, rows: list[dict[str, Any]]) -> None:
    """Ask for tinker's datums without waiting (it works while shardprep builds)."""
    tok = str(harness.TOKENIZERS / harness.golden_pairs()[case.renderer])
    kind = {"sft": "sft", "dpo": "dpo", "rl_prompts": "prompt"}[case.task]
    # overlong: drop keeps a row whole or not at all: tinker's untruncated datum decides both
    max_length = None if case.overlong == "drop" else case.max_length
    request = {
        "op": "datums",
        "kind": kind,
        "renderer": case.renderer,
        "tokenizer": tok,
        "items": tinker_items(case, rows),
        "mode": case.train_on,
        "max_length": max_length,
        "reduction": case.reduction,
    }
    oracle.send(request)


# -- comparison ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """A case's tally: rows compared equal, their fates, and every disagreement."""

    rows: int = 0
    compared: int = 0  # rows kept by both and compared value by value
    fates: Counter[str] = field(default_factory=Counter)
    expected_drops: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    landmarks: Counter[str] = field(default_factory=Counter)  # crafted cuts compared


def _deliberate(reason: str, message: str) -> bool:
    return (
        harness.deliberate(RowError(reason, message))
        or (reason == "bad_pair" and message.startswith(DELIBERATE_PAIR_REFUSALS))
        or (reason == "empty_conversation" and message.startswith(EMPTY_PROMPT))
    )


def _same_datum(want: dict[str, Any], ids: Any, targets: Any, weights: Any) -> str:
    """'' when shardprep's arrays are tinker's datum exactly (weights as float32 bits)."""
    for what, ours, theirs in (("input", ids, want["input"]), ("target", targets, want["targets"])):
        mine = [int(t) for t in ours]
        if mine != theirs:
            at = harness._first_diff(mine, theirs)
            return f"{what} tokens differ at {at} (length {len(mine)}, tinker {len(theirs)})"
    w = np.asarray(weights, dtype=np.float32)
    t = np.asarray(want["weights"], dtype=np.float32)
    if w.shape != t.shape:
        return f"{len(w)} weights, tinker {len(t)}"
    if not np.array_equal(w.view(np.uint32), t.view(np.uint32)):
        i = int(np.flatnonzero(w.view(np.uint32) != t.view(np.uint32))[0])
        return f"weight {i} is {w[i]!r}, tinker {t[i]!r}"
    return ""


def _sft_fate(case: Case, want: dict[str, Any]) -> str:
    """What shardprep must do with a row tinker made `want` of: 'keep' or a drop reason."""
    if "error" in want:
        if "need at least 2 tokens" in want["error"]:
            return "too_short"
        return "refuse"
    full = len(want["input"]) + 1
    if case.overlong == "drop" and case.max_length is not None and full > case.max_length:
        return "overlong"
    if not any(w != 0 for w in want["weights"]):
        return NO_TRAINED
    return "keep"


def compare_case(
    case: Case, labels: list[str], answers: list[dict[str, Any]], got: dict[str, Any]
) -> Outcome:
    out = Outcome(rows=len(labels))
    kept, skipped = got["kept"], got["skipped"]
    for i, (label, want) in enumerate(zip(labels, answers, strict=True)):
        where = f"row {i} ({label})"
        landmark = _landmark_of(label)
        if case.task == "sft":
            fate = _sft_fate(case, want)
        elif case.task == "dpo":
            fate = _dpo_fate(case, want)
            # a tie is dropped before it is rendered (a row the format refuses is still refused)
            if want["label"] == "Tie" and case.tie == "drop" and i not in skipped:
                fate = "tie"
        else:
            fate = _prompt_fate(case, want)
        if landmark:  # where max_length cut a crafted row, and what became of it
            out.landmarks[f"{landmark} -> {'kept' if fate == 'keep' else fate}"] += 1
        if i in skipped:
            reason, message = skipped[i]
            if landmark:
                out.mismatches.append(f"{where}: a crafted row refused ({reason}: {message})")
            elif fate == "refuse":
                out.fates["refused by both"] += 1
            elif _deliberate(reason, message):
                out.fates[f"refused by shardprep only (deliberate): {reason}"] += 1
            elif fate == "keep" or fate in (NO_TRAINED, "overlong", "too_short", "tie"):
                out.mismatches.append(
                    f"{where}: shardprep refuses ({reason}: {message}) where tinker makes a datum"
                )
            continue
        if fate == "refuse":
            if i in kept:
                out.mismatches.append(f"{where}: written where tinker raises ({want['error']})")
            else:
                out.mismatches.append(f"{where}: dropped where tinker raises ({want['error']})")
            continue
        if fate != "keep":
            out.expected_drops[fate] += 1
            out.fates[f"dropped: {fate}"] += 1
            if i in kept:
                out.mismatches.append(f"{where}: written, expected dropped as {fate}")
            continue
        if i not in kept:
            out.mismatches.append(f"{where}: not written, tinker makes a datum")
            continue
        detail = _compare_row(case, want, kept[i])
        out.compared += 1
        out.fates["kept by both"] += 1
        if detail:
            out.mismatches.append(f"{where}: {detail}")
    # shardprep names a zero-weight datum by its cause: `truncated_away` where max_length cut
    # every trained token of a row that had some; tinker makes the same zero-weight datum.
    got_dropped = Counter(got["dropped"])
    got_dropped[NO_TRAINED] += got_dropped.pop("truncated_away", 0)
    got_dropped = +got_dropped
    if out.expected_drops != got_dropped:
        out.mismatches.append(
            f"drop counts {dict(got_dropped)} vs expected {dict(out.expected_drops)}"
        )
    return out


def _landmark_of(label: str) -> str:
    """'header_end' of 'crafted template1:header_end' / 'crafted long:header_end:A'; '' if not
    crafted."""
    if not label.startswith("crafted "):
        return ""
    parts = label.removeprefix("crafted ").split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _compare_row(case: Case, want: dict[str, Any], rec: dict[str, Any]) -> str:
    if case.task == "sft":
        return _same_datum(want, rec["input_ids"], rec["target_ids"], rec["weights"])
    if case.task == "dpo":
        for side, datum in zip(("chosen", "rejected"), want["datums"], strict=True):
            d = _same_datum(
                datum, rec[f"{side}_input_ids"], rec[f"{side}_target_ids"], rec[f"{side}_weights"]
            )
            if d:
                return f"{side}: {d}"
        return ""
    ours = [int(t) for t in rec["prompt_ids"]]
    if ours != want["tokens"]:
        return f"prompt tokens differ at {harness._first_diff(ours, want['tokens'])}"
    return ""


def _dpo_fate(case: Case, want: dict[str, Any]) -> str:
    if "error" in want:
        return "refuse"
    for datum in want["datums"]:  # the first side that fails decides, as shardprep counts
        fate = _sft_fate(case, datum)
        if fate != "keep":
            return fate
    return "keep"


def _prompt_fate(case: Case, want: dict[str, Any]) -> str:
    if "error" in want:
        return "refuse"
    if case.max_prompt_tokens is not None and len(want["tokens"]) > case.max_prompt_tokens:
        return "overlong"
    return "keep"


def run_case(oracle: Oracle, case: Case, work: Path) -> Outcome:
    _DATE[0] = oracle.info["date"]
    rows, labels = input_rows(case)
    send_to_tinker(oracle, case, rows)
    try:
        got = build_case(case, rows, work)
    finally:
        answers = oracle.receive()["results"]  # the worker's answer is read whatever happens
    if case.task == "dpo":  # the label decides the tie rule; tinker's answer does not carry it
        answers = [{**a, "label": r["label"]} for a, r in zip(answers, rows, strict=True)]
    return compare_case(case, labels, answers, got)


# -- regressions, replayed without tinker (tests/tasks/test_reference_datasets.py) ----------------

REGRESSION_FILE = harness.FIXTURES / "reference_cases" / "datasets.jsonl.gz"


def _error_beats_drop(case: Case) -> tuple[list[dict[str, Any]], list[str]]:
    """Pairs where one side cannot render (a user message with `[]` content: llama3 wants one
    text) and the other is overlong or fine: tinker renders both sides before either datum, so
    the pair is the bad side's error, never an `overlong` drop (found on seed 47, gpt-oss)."""
    prompt = [{"role": "user", "content": "Question: what does the parser do?"}]
    long = [{"role": "assistant", "content": LONG_ANSWER}]
    short = [{"role": "assistant", "content": SHORT_ANSWER}]
    bad = [{"role": "user", "content": []}, {"role": "assistant", "content": "ok"}]
    rows, labels = [], []
    for name, a, b, label in (
        ("overlong chosen, bad rejected", long, bad, "A"),
        ("bad chosen, overlong rejected", bad, long, "A"),
        ("overlong chosen (tie as B), bad rejected", bad, long, "Tie"),
        ("overlong chosen, fine rejected", long, short, "A"),
        ("fine rejected, overlong chosen (label B)", short, long, "B"),
        ("both fine", short, short, "B"),
    ):
        comparison = {"prompt_conversation": prompt, "completion_A": a, "completion_B": b}
        rows.append({"comparison": comparison, "label": label})
        labels.append(name)
    return rows, labels


def _crafted_only(case: Case) -> tuple[list[dict[str, Any]], list[str]]:
    rows, labels = input_rows(case)
    keep = [i for i, lab in enumerate(labels) if lab.startswith("crafted ")]
    return [rows[i] for i in keep], [labels[i] for i in keep]


# `encoder: tokenizers`: plain `make test` need not wait for a fastokens parse (ids are equal).
REGRESSIONS: list[tuple[Case, Any]] = [
    (
        Case(
            "dpo-llama3-error-beats-drop",
            "dpo",
            "llama3",
            max_length=40,
            overlong="drop",
            encoder="tokenizers",
        ),
        _error_beats_drop,
    ),
    (
        Case(
            "sft-llama3-last-64-mean-cuts",
            "sft",
            "llama3",
            TrainOnWhat.LAST_ASSISTANT_MESSAGE.value,
            max_length=64,
            reduction="mean",
            encoder="tokenizers",
        ),
        _crafted_only,
    ),
    (
        Case(
            "dpo-llama3-72-cuts", "dpo", "llama3", max_length=72, test_size=3, encoder="tokenizers"
        ),
        _crafted_only,
    ),
    (
        Case(
            "rl-llama3-30-cuts", "rl_prompts", "llama3", max_prompt_tokens=30, encoder="tokenizers"
        ),
        _crafted_only,
    ),
]


def tinker_answers(oracle: Oracle, case: Case, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """tinker's answer per row (dpo: with the row's label, which decides the tie rule)."""
    send_to_tinker(oracle, case, rows)
    answers = oracle.receive()["results"]
    if case.task == "dpo":
        answers = [{**a, "label": r["label"]} for a, r in zip(answers, rows, strict=True)]
    return answers


def record_regressions(oracle: Oracle) -> list[dict[str, Any]]:
    """One record per regression case: the case, its rows and labels, tinker's answers."""
    _DATE[0] = oracle.info["date"]
    records = []
    for case, make_rows in REGRESSIONS:
        rows, labels = make_rows(case)
        answers = tinker_answers(oracle, case, rows)
        records.append(
            {
                "case": dataclasses.asdict(case),
                "date": _DATE[0],
                "rows": rows,
                "labels": labels,
                "tinker": answers,
            }
        )
    return records


def replay(record: dict[str, Any], work: Path) -> Outcome:
    """A recorded case built again and compared with the recorded answers (no tinker needed)."""
    _DATE[0] = record["date"]
    case = Case(**record["case"])
    got = build_case(case, record["rows"], work)
    return compare_case(case, record["labels"], record["tinker"], got)
