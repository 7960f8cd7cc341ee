"""Each renderer names the tokens that end its turns (mask health checks they are trained)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardprep.renderers import get_renderer
from shardprep.tokenizer import load_tokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures"
PAIRS = sorted(
    {
        tuple(p.name.removesuffix(".jsonl.gz").split("__"))
        for p in (FIXTURES / "golden").glob("*__*.jsonl.gz")
    }
)
# Turns that end at the next role header, not with a token of their own.
NO_END_TOKEN = {
    "role_colon",
    "glm5_3_high_reasoning",
    "glm5_3_low_reasoning",
    "glm5_3_max_reasoning",
}


@pytest.mark.parametrize(("name", "tok"), PAIRS)
def test_end_of_turn_tokens_are_the_renderers_own(name: str, tok: str) -> None:
    renderer = get_renderer(name, load_tokenizer(str(FIXTURES / "tokenizers" / tok)))
    ends = renderer.end_of_turn_tokens()
    assert set(ends) <= set(renderer.required_special_tokens())
    assert bool(ends) == (name not in NO_END_TOKEN)
