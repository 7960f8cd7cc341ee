"""TRL fed from a build (shardprep.torch.trl): TRL's own loss on the pre-tokenized datasets equals
the loss computed straight from the shards' target_ids and weights with the same model, so TRL
trains exactly the build's weight > 0 tokens; and every layout it cannot express is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")

from trl import DPOConfig, SFTConfig, SFTTrainer  # noqa: E402

from shardprep.errors import ShardprepError  # noqa: E402
from shardprep.torch import ShardDataset  # noqa: E402
from shardprep.torch.trl import (  # noqa: E402
    PretokenizedDPOTrainer,
    build_tokenizer,
    dpo_dataset,
    dpo_pair,
    sft_dataset,
)

from ._models import tiny_llama  # noqa: E402


def trl_llama(seed: int) -> Any:
    # float64 (TRL's fused LM head still works in float32: equal to ~1e-7 relative), so one token
    # trained or left out among hundreds (~1e-4) shows
    return tiny_llama(seed=seed, dtype=torch.float64)


def _shard_logps(model: Any, row: dict[str, Any], prefix: str = "") -> tuple[float, float, float]:
    """(sum of w * log p(target), sum of w, count of w > 0) for one row alone, from the shard."""
    ids = torch.tensor(np.asarray(row[f"{prefix}input_ids"]), dtype=torch.long)[None]
    targets = torch.tensor(np.asarray(row[f"{prefix}target_ids"]), dtype=torch.long)
    weights = torch.tensor(np.asarray(row[f"{prefix}weights"]), dtype=torch.float64)
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    picked = logp.gather(1, targets[:, None])[:, 0]
    return float((picked * weights).sum()), float(weights.sum()), int((weights > 0).sum())


def _short(ds: ShardDataset, limit: int, n: int) -> list[int]:
    return np.flatnonzero(ds.lengths < limit)[:n].tolist()


@pytest.mark.parametrize("padding_free", [False, True])
def test_sft_trainer_loss_is_the_weighted_shard_loss(
    toy_builds: dict[str, Path], cache_dir: str, tmp_path: Path, padding_free: bool
) -> None:
    """SFTTrainer (skip_prepare_dataset) on sft_dataset: its loss on a batch is the mean CE over the
    build's weight > 0 targets; padded, and padding-free (one flattened row, position_ids restarting
    per sequence, which transformers turns into a block-causal mask on CPU)."""
    rows = ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir)
    picked = _short(rows, 300, 6)
    data = sft_dataset(rows, keep_in_memory=True).select(picked)
    model = trl_llama(0)
    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=len(picked),
        dataset_kwargs={"skip_prepare_dataset": True},
        padding_free=padding_free,
        max_length=None,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
    )
    tokenizer = build_tokenizer(str(toy_builds["sft"]), pad_token="<|endoftext|>")
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == (1 if padding_free else len(picked))
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(trainer.model, batch))

    parts = [_shard_logps(model, rows[i]) for i in picked]
    ours = -sum(p[0] for p in parts) / sum(p[1] for p in parts)
    assert int((batch["labels"] != -100).sum()) == sum(p[2] for p in parts)
    assert trl_loss == pytest.approx(ours, rel=1e-6)


def test_sft_dataset_rows_are_the_hf_layout(toy_builds: dict[str, Path], cache_dir: str) -> None:
    rows = ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir)
    data = sft_dataset(rows, keep_in_memory=True)
    assert len(data) == len(rows) and data.column_names == ["input_ids", "labels"]
    for i in (0, len(rows) - 1):
        row, ex = rows[i], data[i]
        assert ex["input_ids"] == [int(row["input_ids"][0]), *row["target_ids"].tolist()]
        trained = row["weights"] > 0
        assert ex["labels"][0] == -100
        assert np.array_equal(
            np.asarray(ex["labels"][1:]), np.where(trained, row["target_ids"], -100)
        )


def test_dpo_trainer_loss_is_the_loss_from_the_shards(
    toy_builds: dict[str, Path], cache_dir: str, tmp_path: Path
) -> None:
    """PretokenizedDPOTrainer on dpo_dataset: TRL's sigmoid DPO loss and its chosen/rejected
    log-probabilities equal those summed over each side's weight > 0 targets in the shard, with a
    reference model that differs from the policy (so the loss is not log 2 by construction)."""
    rows = ShardDataset(str(toy_builds["dpo"]), cache_dir=cache_dir)
    picked = _short(rows, 900, 4)
    data = dpo_dataset(rows, keep_in_memory=True).select(picked)
    policy, ref = trl_llama(0), trl_llama(1)
    beta = 0.5
    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=len(picked),
        max_length=None,
        beta=beta,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
    )
    tokenizer = build_tokenizer(str(toy_builds["dpo"]), pad_token="<|endoftext|>")
    trainer = PretokenizedDPOTrainer(
        model=policy, ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer
    )
    assert trainer.train_dataset.column_names == ["prompt_ids", "chosen_ids", "rejected_ids"]
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(trainer.model, batch))
    assert batch["input_ids"].shape[0] == 2 * len(picked)  # chosen then rejected, any pair order

    losses, chosen, rejected = [], [], []
    for i in picked:
        row = rows[i]
        pc = _shard_logps(policy, row, "chosen_")[0]
        pr = _shard_logps(policy, row, "rejected_")[0]
        rc = _shard_logps(ref, row, "chosen_")[0]
        rr = _shard_logps(ref, row, "rejected_")[0]
        losses.append(-F.logsigmoid(torch.tensor(beta * ((pc - rc) - (pr - rr)))).item())
        chosen.append(pc)
        rejected.append(pr)
    # Sequence log-probs: TRL's float32 head vs float64 here, ~1e-7 relative; one token more or
    # less would move them by ~6.6 (log of the vocabulary) in ~1000.
    metrics = trainer._metrics["train"]
    assert metrics["logps/chosen"][-1] == pytest.approx(float(np.mean(chosen)), rel=1e-6)
    assert metrics["logps/rejected"][-1] == pytest.approx(float(np.mean(rejected)), rel=1e-6)
    # The loss takes differences of four such sums (float32 noise ~1e-3 x beta); one token more or
    # less would move it by ~beta x 6.6 / 4.
    assert trl_loss == pytest.approx(float(np.mean(losses)), abs=2e-3)
    assert abs(trl_loss - np.log(2)) > 1e-3  # the reference differs: a real comparison


def test_dpo_trainer_refuses_a_truncating_max_length(
    toy_builds: dict[str, Path], cache_dir: str, tmp_path: Path
) -> None:
    rows = ShardDataset(str(toy_builds["dpo"]), cache_dir=cache_dir)
    data = dpo_dataset(rows, keep_in_memory=True).select(range(4))
    longest = max(
        len(data[i]["prompt_ids"]) + len(data[i][s])
        for i in range(4)
        for s in ("chosen_ids", "rejected_ids")
    )
    args = DPOConfig(
        output_dir=str(tmp_path), max_length=longest - 1, use_cpu=True, report_to="none"
    )
    tokenizer = build_tokenizer(str(toy_builds["dpo"]), pad_token="<|endoftext|>")
    with pytest.raises(ValueError, match=f"pair side of {longest} tokens.*max_length=None"):
        PretokenizedDPOTrainer(
            model=trl_llama(0),
            ref_model=trl_llama(1),
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
        )


def _pair(chosen_w: list[float], rejected_w: list[float], **over: Any) -> dict[str, Any]:
    row = {
        "index": 7,
        "chosen_input_ids": [1, 2, 3, 4],
        "chosen_target_ids": [2, 3, 4, 5],
        "chosen_weights": chosen_w,
        "rejected_input_ids": [1, 2, 3, 6],
        "rejected_target_ids": [2, 3, 6, 8],
        "rejected_weights": rejected_w,
    }
    return {**row, **over}


def test_dpo_pair_layout_and_refusals() -> None:
    out = dpo_pair(_pair([0, 0, 1, 1], [0, 0, 1, 1]))
    assert out["prompt_ids"].tolist() == [1, 2, 3]
    assert out["chosen_ids"].tolist() == [4, 5] and out["rejected_ids"].tolist() == [6, 8]
    with pytest.raises(
        ValueError, match="row 7: the chosen side trains tokens that are not one tail"
    ):
        dpo_pair(_pair([0, 1, 0, 1], [0, 0, 1, 1]))
    with pytest.raises(ValueError, match="row 7: chosen and rejected do not share"):
        dpo_pair(_pair([0, 0, 1, 1], [0, 1, 1, 1]))
    with pytest.raises(ValueError, match="row 7: the rejected side has no trained token"):
        dpo_pair(_pair([0, 0, 1, 1], [0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"row 7 \(chosen\) has loss weight 0\.5.*as_trained"):
        dpo_pair(_pair([0, 0, 0.5, 0.5], [0, 0, 1, 1]))
    frac = dpo_pair(_pair([0, 0, 0.5, 0.5], [0, 0, 1, 1]), fractional="as_trained")
    assert frac["chosen_ids"].tolist() == [4, 5]


def test_wrong_schema_and_tokenizer_refused(
    toy_builds: dict[str, Path], cache_dir: str, tmp_path: Path
) -> None:
    with pytest.raises(ShardprepError, match="schema dpo/1 has no TRL SFT layout"):
        sft_dataset(ShardDataset(str(toy_builds["dpo"]), cache_dir=cache_dir))
    with pytest.raises(ShardprepError, match="schema sft/1 has no TRL DPO layout"):
        dpo_dataset(ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir))
    with pytest.raises(ShardprepError, match="not a finished build"):
        build_tokenizer(str(tmp_path))
    # A pack of one token holds only a row's first token, never trained; the message names the
    # seq_len given (it named seq_len + 1, the plan's own, and let 1 through to train nothing).
    sft = ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir)
    for bad in (1, 0, -5):
        with pytest.raises(ValueError, match=f"seq_len must be at least 2 tokens.*not {bad}$"):
            sft_dataset(sft, seq_len=bad, cache_dir=str(tmp_path / "hf"))


def test_datasets_are_cached_by_the_shards_they_are_made_from(
    toy_builds: dict[str, Path], cache_dir: str, tmp_path: Path
) -> None:
    rows = ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir)
    first = sft_dataset(rows, cache_dir=str(tmp_path))
    again = sft_dataset(
        ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir), cache_dir=str(tmp_path)
    )
    assert first.cache_files == again.cache_files  # made once
    as_trained = sft_dataset(rows, cache_dir=str(tmp_path), fractional="as_trained")
    assert as_trained.cache_files != first.cache_files  # another layout, another entry
    assert first._fingerprint != as_trained._fingerprint


def test_dpo_trainer_refuses_max_length_on_an_iterable_dataset(
    toy_builds: dict[str, Path], cache_dir: str, tmp_path: Path
) -> None:
    rows = ShardDataset(str(toy_builds["dpo"]), cache_dir=cache_dir)
    data = dpo_dataset(rows, keep_in_memory=True).select(range(4)).to_iterable_dataset()
    args = DPOConfig(output_dir=str(tmp_path), max_steps=1, use_cpu=True, report_to="none")
    tokenizer = build_tokenizer(str(toy_builds["dpo"]))
    with pytest.raises(ValueError, match="iterable, so max_length=1024 cannot be checked"):
        PretokenizedDPOTrainer(
            model=trl_llama(0),
            ref_model=trl_llama(1),
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
        )


def test_sft_trainer_on_whole_split_packs_is_the_weighted_shard_loss(
    toy_builds: dict[str, Path], cache_dir: str, tmp_path: Path
) -> None:
    """sft_dataset(seq_len=...) gives TRL's own packed layout from the whole-split plan: every row
    once, no pack over seq_len tokens, and SFTTrainer's padding-free loss on two packs is the
    weighted loss of their rows each run alone."""
    rows = ShardDataset(str(toy_builds["sft"]), cache_dir=cache_dir)
    seq_len = 2048  # every toy row (max_length 2048: at most 2048 tokens) fits whole
    packs = sft_dataset(rows, seq_len=seq_len, keep_in_memory=True)
    members = [r for p in packs["rows"] for r in p]
    assert sorted(members) == list(range(len(rows)))
    bound = -(-int((rows.lengths + 1).sum()) // seq_len)  # no packing has fewer packs
    assert len(packs) <= bound * 1.01 + 1  # whole-split best fit: within 1 % of it (217 vs 216)
    for p in range(len(packs)):
        assert sum(packs[p]["seq_lengths"]) == len(packs[p]["input_ids"]) <= seq_len
    model = trl_llama(0)
    args = SFTConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        dataset_kwargs={"skip_prepare_dataset": True},
        padding_free=True,
        max_length=None,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
    )
    tokenizer = build_tokenizer(str(toy_builds["sft"]))
    picked = packs.select([len(packs) - 2, len(packs) - 1])  # the last packs: many short rows
    trainer = SFTTrainer(model=model, args=args, train_dataset=picked, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1  # flattened, no padding
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(trainer.model, batch))
    parts = [_shard_logps(model, rows[i]) for p in picked["rows"] for i in p]
    assert len(parts) >= 4
    assert int((batch["labels"] != -100).sum()) == sum(p[2] for p in parts)
    assert trl_loss == pytest.approx(-sum(p[0] for p in parts) / sum(p[1] for p in parts), rel=1e-6)


def test_a_refused_row_is_raised_naming_the_row(make_build: Any, tmp_path: Path) -> None:
    """datasets wraps an error raised while generating as 'An error occurred while generating the
    dataset'; the row's own message (fractional weights here) is what the user sees."""
    import pyarrow as pa

    from shardprep.tasks.sft import SCHEMA

    row = {"input_ids": [1, 2, 3], "target_ids": [2, 3, 4], "weights": [0.0, 0.5, 0.5]}
    table = pa.Table.from_pylist(
        [{**row, "length": 3, "source": "s", "source_row": 0}], schema=SCHEMA.arrow()
    )
    folder = make_build(tmp_path / "frac", "sft/1", [table])
    rows = ShardDataset(str(folder), cache_dir=str(tmp_path / "cache"))
    for seq_len in (None, 8):
        with pytest.raises(ValueError, match="row 0 has loss weight 0.5"):
            sft_dataset(rows, seq_len=seq_len, cache_dir=str(tmp_path / "hf"))


def test_whole_split_packs_leave_out_rows_with_nothing_trained_left(
    demo_shards: Path, cache_dir: str
) -> None:
    """At 512 tokens some demo rows keep only tokens before their first trained one: a pack of one
    of them alone would give SFTTrainer a loss of 0/0. They are left out (the plan counts them),
    every pack has a trained label, and every other row is in one pack once."""
    rows = ShardDataset(str(demo_shards), cache_dir=cache_dir)
    packs = sft_dataset(rows, seq_len=512, keep_in_memory=True)
    members = [r for p in packs["rows"] for r in p]
    assert len(members) == len(set(members))
    left_out = set(range(len(rows))) - set(members)
    assert left_out and all(rows.lengths[i] + 1 > 512 for i in left_out)
    for i in left_out:  # nothing trained in the tokens a pack could keep
        assert not (np.asarray(rows[i]["weights"])[:511] > 0).any()
    for p in range(len(packs)):
        assert any(label != -100 for label in packs[p]["labels"])
        assert 0 not in packs[p]["seq_lengths"]
