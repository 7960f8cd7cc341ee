"""`examples: per_turn` vs tinker-cookbook 0.6.1's `build_supervised_examples` (issue 18).

For every renderer name both registries know and the three modes tinker can split: the same
number of examples per conversation, each with identical tokens and weights, and a refusal where
tinker refuses. Also `has_extension_property` per name. Needs the oracle (`make test-reference`);
skips without it. $SHARDPREP_REF_TURN_CONVS sets the conversations per renderer.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from reference import generator, harness
from reference.oracle import Oracle
from shardprep.encode.tokenize import TurnExample, render_supervised_examples
from shardprep.errors import RowError
from shardprep.renderers import TrainOnWhat, renderer_names

pytestmark = pytest.mark.reference

CONVERSATIONS = int(os.environ.get("SHARDPREP_REF_TURN_CONVS", "120"))
SEED0 = int(os.environ.get("SHARDPREP_REF_SEED", "0"))
MODES = [
    TrainOnWhat.LAST_ASSISTANT_MESSAGE.value,
    TrainOnWhat.LAST_ASSISTANT_TURN.value,
    TrainOnWhat.ALL_ASSISTANT_MESSAGES.value,
]
PAIRS = harness.golden_pairs()


@pytest.fixture(scope="module")
def shared(oracle: Oracle) -> list[str]:
    return oracle.call({"op": "hello", "candidates": renderer_names()})["renderers"]


def _compare_examples(want: dict[str, Any], got: list[TurnExample] | RowError, tok: Any) -> str:
    """'' when equal, else what differs."""
    if isinstance(got, RowError):
        if "error" in want or harness.deliberate(got):
            return ""
        return f"shardprep refuses ({got}) where tinker builds {len(want['examples'])} examples"
    if "error" in want:
        return f"shardprep builds {len(got)} examples where tinker refuses ({want['error']})"
    if len(got) != len(want["examples"]):
        return f"{len(got)} examples, tinker {len(want['examples'])}"
    for k, (w, g) in enumerate(zip(want["examples"], got, strict=True)):
        kind, detail, _ = harness._compare(w, g.example, tok)
        if kind != "same":
            return f"example {k} (message {g.message_index}): {detail}"
    return ""


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_per_turn_matches_build_supervised_examples(
    oracle: Oracle, shared: list[str], name: str
) -> None:
    if name not in shared:
        pytest.skip(f"tinker-cookbook has no renderer {name!r}")
    seeds = range(SEED0, SEED0 + CONVERSATIONS)
    convs = [generator.conversation(s) for s in seeds]
    answer = oracle.call(
        {
            "op": "examples",
            "renderer": name,
            "tokenizer": str(harness.TOKENIZERS / PAIRS[name]),
            "modes": MODES,
            "items": [{"messages": harness.documented_normalizations(c)} for c in convs],
        }
    )
    renderer, encoder, tok, _ = harness.bound(name, oracle.info["date"])
    assert renderer.has_extension_property == answer["has_extension_property"]
    bad: list[str] = []
    split = compared = 0
    for mode in MODES:
        converted = [harness._convert(c, False) for c in convs]
        ok = [c for c in converted if not isinstance(c, RowError)]
        ours = iter(render_supervised_examples(renderer, encoder, ok, TrainOnWhat(mode)))
        for seed, conv, res in zip(seeds, converted, answer["results"], strict=True):
            got = conv if isinstance(conv, RowError) else next(ours)
            want = res["modes"][mode]
            compared += 1
            split += isinstance(got, list) and len(got) > 1
            detail = _compare_examples(want, got, tok)
            if detail:
                bad.append(f"seed {seed} {mode}: {detail}")
    if not renderer.has_extension_property:
        assert split > 0, "no conversation was split: the comparison did not exercise per_turn"
    assert not bad, f"{len(bad)} of {compared} differ:\n" + "\n".join(bad[:8])
