"""Whole builds vs tinker-cookbook 0.6.1's datasets, row by row (`datasets_oracle.py`).

Each case is a real `build` (sft with several train_on modes, max_length none / small / cut at
crafted places, overlong truncate / drop, weight_reduction none / mean; dpo; rl_prompts; on
qwen3, llama3, gpt-oss and DeepSeek V3 with their real tokenizers), read back with the torch
reader and compared with tinker's own `conversation_to_datum`, DPO builder and
`build_generation_prompt`: identical inputs, targets and float32 weights, and every other row
dropped or refused as RESULTS.md ("Datasets") says. Needs the oracle (`make test-reference`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reference import datasets_oracle
from reference.oracle import Oracle

pytestmark = pytest.mark.reference

# Cuts the crafted rows must make (landmark -> fate), beyond "some were compared": max_length
# inside the assistant header and at the span's first token leave nothing trained (a datum
# tinker makes with zero weights: dropped); inside the span the row is kept, `mean` over the rest.
MUST_CUT = {
    "sft-qwen3-last-96-mean": [
        "header_end -> no_trained_tokens",
        "span_start -> no_trained_tokens",
        "first_trained -> kept",
        "span_middle -> kept",
        "one_under -> kept",
        "one_over -> kept",
    ],
    "dpo-llama3-72": ["header_end -> no_trained_tokens", "span_middle -> kept"],
    "sft-qwen3-customized-128-drop": ["exact -> kept", "one_over -> overlong"],
}


@pytest.mark.parametrize("case", datasets_oracle.CASES, ids=lambda c: c.id)
def test_build_matches_tinker_datasets(
    oracle: Oracle, case: datasets_oracle.Case, tmp_path: Path
) -> None:
    out = datasets_oracle.run_case(oracle, case, tmp_path)
    shown = "\n".join(f"  {m}" for m in out.mismatches[:10])
    assert not out.mismatches, (
        f"{len(out.mismatches)} of {out.rows} rows differ from tinker:\n{shown}"
    )
    assert out.compared >= 5, f"only {out.compared} rows kept by both: {dict(out.fates)}"
    if case.limit is not None:
        # the crafted rows reached the build and max_length cut them where they were made to
        assert out.landmarks, "no crafted row was compared"
        assert any(k.startswith(("exact", "one_over")) for k in out.landmarks)
    missing = [k for k in MUST_CUT.get(case.id, []) if not out.landmarks[k]]
    assert not missing, f"crafted cuts not made: {missing} (made: {dict(out.landmarks)})"
