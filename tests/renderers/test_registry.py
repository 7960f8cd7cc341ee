"""Registry lookups and tokenizer/renderer pairing checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shardprep.errors import ShardprepError, TokenizerError, UnknownRendererError
from shardprep.renderers import get_renderer, renderer_info, renderer_names
from shardprep.tokenizer import LoadedTokenizer

PAIRS = {
    "role_colon": "llama3",
    "llama3": "llama3",
    "qwen3": "qwen3",
    "qwen3_disable_thinking": "qwen3",
    "qwen3_instruct": "qwen3",
    "deepseekv3": "deepseek_v3",
    "deepseekv3_disable_thinking": "deepseek_v3",
    "deepseekv3_thinking": "deepseek_v3",
    "gpt_oss_no_sysprompt": "gpt_oss",
    "gpt_oss_medium_reasoning": "gpt_oss",
    "mistral": "mistral_v3",
    "mistral_tekken": "mistral_nemo_tekken",
    "hf_template": "qwen3",
    **{
        name: "toy"
        for name in (
            "qwen3_vl",
            "qwen3_vl_instruct",
            "qwen3_5",
            "qwen3_5_disable_thinking",
            "qwen3_5_preserve_thinking",
            "qwen3_8_xhigh_reasoning",
            "qwen3_8_medium_reasoning",
            "qwen3_8_low_reasoning",
            "qwen3_8_disable_thinking",
            "deepseekv4_1",
            "deepseekv4_1_low_reasoning",
            "deepseekv4_1_max_reasoning",
            "deepseekv4_1_disable_thinking",
            "deepseekv4_1_preserve_thinking",
            "glm5_3_max_reasoning",
            "glm5_3_low_reasoning",
            "glm5_3_high_reasoning",
            "kimi_k2",
            "kimi_k25",
            "kimi_k25_disable_thinking",
            "kimi_k26",
            "kimi_k26_disable_thinking",
            "kimi_k26_preserve_thinking",
            "nemotron3",
            "nemotron3_low_thinking",
            "nemotron3_disable_thinking",
            "nemotron3_preserve_thinking",
            "nemotron3_ultra",
            "nemotron3_ultra_disable_thinking",
            "nemotron3_ultra_medium_thinking",
            "nemotron3_ultra_preserve_thinking",
        )
    },
}


# Not tinker renderers: the toy tokenizer has neither Mistral's tokens nor a chat template.
NOT_ON_TOY = {"mistral", "mistral_tekken", "hf_template"}
# Registry names that are the same renderer (same output, same template text).
ALIASES = [
    ("deepseekv3", "deepseekv3_disable_thinking"),
    ("qwen3_vl", "qwen3_vl_instruct"),
    ("kimi_k25", "kimi_k26"),
    ("kimi_k25_disable_thinking", "kimi_k26_disable_thinking"),
]


def test_names_cover_the_implemented_families() -> None:
    assert set(PAIRS) <= set(renderer_names())
    assert renderer_names() == sorted(renderer_names())


def test_unknown_name_lists_known_names(tokenizer_for: Callable[[str], LoadedTokenizer]) -> None:
    with pytest.raises(UnknownRendererError) as info:
        get_renderer("qwen4", tokenizer_for("toy"))
    for name in renderer_names():
        assert name in str(info.value)
    with pytest.raises(UnknownRendererError):
        renderer_info("qwen4")


def test_info_names_model_families() -> None:
    info = renderer_info("qwen3_instruct")
    assert info.name == "qwen3_instruct" and info.description
    assert any("Qwen3" in m for m in info.models)
    assert all(renderer_info(n).models for n in renderer_names())


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matching_tokenizer_passes_check(
    name: str, tokenizer_for: Callable[[str], LoadedTokenizer]
) -> None:
    get_renderer(name, tokenizer_for(PAIRS[name])).check_tokenizer()
    if name not in NOT_ON_TOY:
        get_renderer(name, tokenizer_for("toy")).check_tokenizer()  # toy carries tinker's tokens


def test_llama3_renderer_rejects_qwen3_tokenizer(
    tokenizer_for: Callable[[str], LoadedTokenizer],
) -> None:
    renderer = get_renderer("llama3", tokenizer_for("qwen3"))
    with pytest.raises(TokenizerError) as info:
        renderer.check_tokenizer()
    message = str(info.value)
    assert "<|begin_of_text|>" in message and "llama3" in message


def test_qwen3_renderer_rejects_llama3_tokenizer(
    tokenizer_for: Callable[[str], LoadedTokenizer],
) -> None:
    with pytest.raises(TokenizerError, match="im_start"):
        get_renderer("qwen3", tokenizer_for("llama3")).check_tokenizer()


def test_unknown_option_is_refused(tokenizer_for: Callable[[str], LoadedTokenizer]) -> None:
    with pytest.raises(ShardprepError, match="strip_thinking"):
        get_renderer("qwen3", tokenizer_for("toy"), {"strip_thinking": False})


def test_template_text_tells_renderers_apart(
    tokenizer_for: Callable[[str], LoadedTokenizer],
) -> None:
    tok = tokenizer_for("toy")
    texts = {
        name: get_renderer(
            name, tok if name not in NOT_ON_TOY else tokenizer_for(PAIRS[name])
        ).template_text()
        for name in PAIRS
    }
    assert texts["qwen3"] == get_renderer("qwen3", tok).template_text()  # deterministic
    for a, b in ALIASES:
        assert texts[a] == texts[b]
    assert len(set(texts.values())) == len(PAIRS) - len(ALIASES)
    # role_colon's output depends on the tokenizer's BOS, so the template text does too.
    assert (
        get_renderer("role_colon", tokenizer_for("llama3")).template_text() != texts["role_colon"]
    )
