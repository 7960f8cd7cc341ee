"""sft `examples: per_turn`: tinker's `build_supervised_examples`, one row per trained turn.

A renderer without the extension property writes an earlier assistant message as history
(reasoning dropped), not as the turn the model produced. per_turn writes one example per trained
assistant message, each ending at that message (Kimi: one per user turn), so every turn is
trained in the context it is sampled from. Rows gain `message_index` (schema sft_turns/1), and
the build counts conversations, examples and tokens for the manifest's examples-per-conversation
and token multiplier. Also here: which per_conversation rows train turns as history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shardprep.renderers.base import SPLITTABLE_MODES, Renderer, TrainOnWhat
from shardprep.renderers.content import Message, has_thinking
from shardprep.sources.base import RawRow
from shardprep.store.schemas import ShardSchema
from shardprep.tasks.base import UnitIO

# numpy, pyarrow and the encoder load where rows are written (sft.py imports this module for its
# schema and warnings, which a recipe and a no-op build need).
if TYPE_CHECKING:
    import pyarrow as pa

# task_counters keys (summed over work units).
CONVERSATIONS = "conversations"  # per_turn: rows rendered into one example or more
TURN_EXAMPLES = "turn_examples"  # per_turn: examples rendered (before length drops)
TURN_TOKENS = "turn_tokens"  # per_turn: their tokens (unshifted)
CONVERSATION_TOKENS = "conversation_tokens"  # per_turn: tokens of each row's longest example
HISTORY_TRAINED = "history_trained_rows"  # per_conversation: rows training reasoning as history


def turns_schema(base: ShardSchema) -> ShardSchema:
    """`base` plus the index of the message each example ends at (the one it trains), in the
    row's conversation as its format reads it (before a tools declaration)."""

    def fields() -> tuple[pa.Field, ...]:
        import pyarrow as pa

        return (*base.fields, pa.field("message_index", pa.int32(), nullable=False))

    return ShardSchema(id="sft_turns/1", make_fields=fields)


def write_turns(
    io: UnitIO,
    convs: Sequence[Sequence[Message]],
    metas: Sequence[RawRow],
    shifts: Sequence[int],
    train_on: TrainOnWhat,
    schema: pa.Schema,
) -> None:
    """Render every row's examples, count them, cut and shift them and hand them to io's writers.

    `shifts[i]`: messages a tools declaration added to row i (message_index counts the row's own).
    A row that fails goes to io.skip; an example make_example drops goes to io.drop (so under
    per_turn, drop counts are examples); a row with no example to train is dropped as a whole.
    """
    import numpy as np

    from shardprep.encode.examples import DROP_NO_TRAINED
    from shardprep.encode.tokenize import render_turns_flat
    from shardprep.tasks.batch import write_examples

    if not convs:
        return
    turns = render_turns_flat(io.renderer, io.encoder, convs, train_on)
    io.count_special(turns.special)
    for c in sorted(turns.errors):
        raw = metas[c]
        io.skip_row(turns.errors[c], raw, row=raw.data)
    flat = turns.examples
    lengths = np.diff(flat.offsets)
    per_conv = np.bincount(turns.owner, minlength=len(convs))
    tokens = np.bincount(turns.owner, weights=lengths, minlength=len(convs)).astype(np.int64)
    longest = np.zeros(len(convs), dtype=np.int64)
    np.maximum.at(longest, turns.owner, lengths)
    for c in range(len(convs)):
        if c in turns.errors:
            continue
        if not per_conv[c]:  # e.g. last_assistant_message on a row that does not end with one
            io.drop(DROP_NO_TRAINED, metas[c])
            continue
        io.counters[CONVERSATIONS] += 1
        io.counters[TURN_EXAMPLES] += int(per_conv[c])
        io.counters[TURN_TOKENS] += int(tokens[c])
        io.counters[CONVERSATION_TOKENS] += int(longest[c])
    message_index = turns.message_index - np.asarray(shifts, dtype=np.int32)[turns.owner]
    owners = [metas[c] for c in turns.owner.tolist()]
    write_examples(io, flat, owners, schema, message_index)


def trains_history(renderer: Renderer, messages: Sequence[Message], train_on: TrainOnWhat) -> bool:
    """Whether one sequence trains, as history, an assistant message whose reasoning this
    renderer drops there.

    For a renderer without the extension property (history drops reasoning) such a message is
    trained without the reasoning the model produced it with: per_turn trains it as produced.
    Rows whose trained history messages have no reasoning are not counted: their history form
    differs at most by the framing of an empty reasoning block (Qwen3's `<think>\n\n</think>`),
    and the answer text trained is the same.
    """
    if renderer.has_extension_property or train_on is TrainOnWhat.ALL_USER_AND_SYSTEM_MESSAGES:
        return False
    # Nothing to lose before the last message: most rows (single turn, or no reasoning at all).
    if not any(_reasons(m) for m in messages[:-1]):
        return False
    if train_on in SPLITTABLE_MODES or renderer.splits_every_mode:
        cuts = renderer.example_cuts(messages, train_on)
        if len(cuts) < 2:
            return False
        if renderer.splits_every_mode:  # Kimi: each earlier example trains a whole user turn
            return any(_reasons(m) for m in messages[: cuts[-2].end])
        return any(_reasons(messages[c.end - 1]) for c in cuts[:-1])
    customized = train_on is TrainOnWhat.CUSTOMIZED
    return any(_reasons(m) and (not customized or bool(m.get("trainable"))) for m in messages[:-1])


def _reasons(message: Message) -> bool:
    """An assistant message carrying reasoning (a thinking part, or `<think>` in its text)."""
    return message.get("role") == "assistant" and has_thinking(message.get("content"))


def turns_summary(counters: Mapping[str, int]) -> dict[str, Any]:
    """Examples per conversation and the token multiplier (per_turn tokens over each row's longest)."""
    if not counters.get(CONVERSATIONS):
        return {}
    conv_tokens = counters.get(CONVERSATION_TOKENS, 0)
    return {
        "examples_per_conversation": round(
            counters.get(TURN_EXAMPLES, 0) / counters[CONVERSATIONS], 4
        ),
        "token_multiplier": round(counters.get(TURN_TOKENS, 0) / conv_tokens, 4)
        if conv_tokens
        else None,
    }


def history_warnings(
    counters: Mapping[str, int], recipe_json: Mapping[str, Any]
) -> list[dict[str, Any]]:
    n = counters.get(HISTORY_TRAINED, 0)
    if not n:
        return []
    renderer = (recipe_json.get("renderer") or {}).get("name")
    return [
        {
            "code": "history_turns_trained",
            "message": (
                f"{n:,} rows train earlier assistant messages in one sequence, where renderer "
                f"{renderer} writes them as history, without the reasoning they carry, not as "
                "the turns the model produced: set `examples: per_turn` to train each turn in "
                "the context it is sampled from"
            ),
            "count": n,
        }
    ]
