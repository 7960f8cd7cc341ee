"""shardprep vs tinker-cookbook 0.6.1 itself, on generated conversations (issue 14).

Every renderer name both registries know, all seven train_on modes and the generation prompt:
identical tokens and weights where tinker renders, a RowError where tinker refuses. Needs the
oracle environment (`make test-reference`); skips without it. $SHARDPREP_REF_CONVS sets the
number of conversations per renderer (CI default below); `scale.py` runs it at scale.
"""

from __future__ import annotations

import os

import pytest

from reference import harness
from reference.oracle import Oracle
from shardprep.renderers import renderer_names

pytestmark = pytest.mark.reference

CONVERSATIONS = int(os.environ.get("SHARDPREP_REF_CONVS", "150"))
SEED0 = int(os.environ.get("SHARDPREP_REF_SEED", "0"))
PAIRS = harness.golden_pairs()


@pytest.fixture(scope="module")
def shared(oracle: Oracle) -> list[str]:
    info = oracle.call({"op": "hello", "candidates": renderer_names()})
    return info["renderers"]


def test_oracle_is_tinker_cookbook_0_6_1(oracle: Oracle) -> None:
    assert oracle.info["versions"]["tinker-cookbook"] == "0.6.1"


def test_every_shared_renderer_is_covered(shared: list[str]) -> None:
    missing = sorted(set(shared) - set(PAIRS))
    assert not missing, f"shared renderers without a golden tokenizer pairing: {missing}"
    assert len(shared) >= 40


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_renderer_matches_tinker(oracle: Oracle, shared: list[str], name: str) -> None:
    if name not in shared:
        pytest.skip(f"tinker-cookbook has no renderer {name!r}")
    tally = harness.run_renderer(oracle, name, range(SEED0, SEED0 + CONVERSATIONS))
    assert tally.compared > CONVERSATIONS
    bad = tally.mismatches
    shown = "\n".join(f"  seed {o.seed} {o.mode}: {o.detail}" for o in bad[:8])
    assert not bad, f"{len(bad)} mismatches in {tally.compared} comparisons:\n{shown}"


@pytest.mark.parametrize("tok", harness.HF_TOKENIZERS)
def test_hf_template_matches_apply_chat_template(oracle: Oracle, tok: str) -> None:
    """hf_template's tokens are transformers' own where it renders; otherwise a RowError."""
    tally = harness.run_hf_template(oracle, tok, range(SEED0, SEED0 + CONVERSATIONS))
    assert tally.compared > CONVERSATIONS
    bad = tally.mismatches
    shown = "\n".join(f"  seed {o.seed} {o.mode}: {o.detail}" for o in bad[:8])
    assert not bad, f"{len(bad)} mismatches in {tally.compared} comparisons:\n{shown}"


@pytest.mark.parametrize("tok", ["qwen3", "llama3"])
def test_hf_template_tools_match_apply_chat_template(oracle: Oracle, tok: str) -> None:
    """A row's tools reach the model's own template as `apply_chat_template(..., tools=...)`
    gives them: the repo's glaive tool rows, whole, as prompts and per turn."""
    tally = harness.run_hf_template_tools(oracle, tok)
    assert tally.conversations > 100 and tally.compared > 2 * tally.conversations
    bad = tally.mismatches
    shown = "\n".join(f"  row {o.seed} {o.mode}: {o.detail}" for o in bad[:8])
    assert not bad, f"{len(bad)} mismatches in {tally.compared} comparisons:\n{shown}"
