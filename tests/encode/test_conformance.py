"""Conformance of built-in renderers with the model's own chat template."""

from __future__ import annotations

from pathlib import Path

from shardprep.encode.conformance import ConformanceCheck, rendered_texts
from shardprep.renderers import TrainOnWhat, get_renderer
from shardprep.tokenizer import load_tokenizer

TOKENIZERS = Path(__file__).parent.parent / "fixtures" / "tokenizers"
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ],
]


def test_identical_rows_are_counted_and_the_first_difference_is_a_diff() -> None:
    llama = load_tokenizer(str(TOKENIZERS / "llama3"))
    check = ConformanceCheck.for_tokenizer(llama)
    assert check is not None
    renderer = get_renderer("hf_template", llama)
    texts = rendered_texts(renderer, CONVERSATIONS, TrainOnWhat.ALL_ASSISTANT_MESSAGES)
    check.add(CONVERSATIONS, texts, indices=[10, 11])
    result = check.result()
    assert result["checked"] == 2 and result["identical"] == 2
    assert result["first_difference"] is None and "llama3" in result["template"]

    # tinker's llama3 format leaves out the template's knowledge-date system block.
    check = ConformanceCheck.for_tokenizer(llama)
    assert check is not None
    renderer = get_renderer("llama3", llama)
    check.add(CONVERSATIONS, rendered_texts(renderer, CONVERSATIONS, TrainOnWhat.ALL_MESSAGES))
    result = check.result()
    assert result["checked"] == 2 and result["identical"] == 0
    diff = result["first_difference"]
    assert diff["index"] == 0 and "Cutting Knowledge Date" in diff["diff"]
    assert diff["diff"].startswith("--- chat_template")


def test_qwen3_matches_its_template_up_to_the_trailing_newline() -> None:
    # Qwen's template ends the conversation with "<|im_end|>\n"; the example stops at <|im_end|>.
    qwen = load_tokenizer(str(TOKENIZERS / "qwen3"))
    check = ConformanceCheck.for_tokenizer(qwen)
    assert check is not None
    renderer = get_renderer("qwen3", qwen)
    texts = rendered_texts(renderer, CONVERSATIONS[:1], TrainOnWhat.ALL_MESSAGES)
    check.add(CONVERSATIONS[:1], texts)
    assert check.result()["identical"] == 1
    # a difference before the end still counts
    text = texts[0]
    assert isinstance(text, str)
    check.add(CONVERSATIONS[:1], [text.replace("Hello!", "Hello !")])
    result = check.result()
    assert (result["checked"], result["identical"]) == (2, 1)
    assert "-Hello!<|im_end|>" in result["first_difference"]["diff"]


def test_no_template_means_no_check() -> None:
    assert ConformanceCheck.for_tokenizer(load_tokenizer(str(TOKENIZERS / "toy"))) is None
