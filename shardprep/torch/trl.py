"""TRL's SFTTrainer and DPOTrainer fed from a build: pre-tokenized datasets, nothing re-tokenized.

    from shardprep.torch.trl import sft_dataset, dpo_dataset, PretokenizedDPOTrainer

    SFTTrainer(model, args=SFTConfig(..., dataset_kwargs={"skip_prepare_dataset": True}),
               train_dataset=sft_dataset("shards/my-sft"), processing_class=tokenizer)
    PretokenizedDPOTrainer(model, ref_model=reference, args=DPOConfig(..., max_length=None),
                           train_dataset=dpo_dataset("shards/my-dpo"), processing_class=tokenizer)

The build's tokens are the training tokens: TRL's own preparation (chat template, tokenization,
truncation to its `max_length`) would make different ones, so it is skipped. What TRL trains is
exactly the build's weight > 0 tokens (proved in tests/torch/test_trl.py by comparing TRL's loss
with the loss computed from the shards' target_ids and weights):

- sft/1, pretrain/1 -> {"input_ids", "labels"}: the unshifted HF layout of `hf_example` (-100 off
  the trained tokens), which SFTTrainer's collator pads (or flattens, `padding_free=True`) as is;
  with `seq_len`, packs of those rows (TRL's packed layout, `seq_lengths`) from the whole-split
  best-fit plan, for `padding_free=True`.
- dpo/1 -> {"prompt_ids", "chosen_ids", "rejected_ids"}: TRL sums log-probabilities over the
  completion, so a side's trained tokens must be its whole tail after a prompt both sides share
  (true of every dpo/1 build: each side trains its last assistant message); a row where they are
  not is refused, naming the row. TRL 1.x's DPOTrainer always tokenizes its dataset (its
  maintainers declined pre-tokenized input, huggingface/trl#2368), so `PretokenizedDPOTrainer`
  passes a dataset that already has these columns through untouched, and refuses a `max_length`
  that would truncate one of its rows.

Fractional weights (`weight_reduction: mean`) cannot be said by labels or a completion mask: refused
unless `fractional="as_trained"` (every weight > 0 trained at weight 1), as in `hf_example`.
This module imports TRL only where a trainer class is asked for; `import shardprep.torch` never
loads it (nor `datasets`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from shardprep.errors import ShardprepError
from shardprep.packing import PackingPlan
from shardprep.store.manifest import read_manifest
from shardprep.store.storage import Output
from shardprep.torch.dataset import ShardDataset
from shardprep.torch.hf import Fractional, check_fractional, hf_example
from shardprep.torch.packed import row_trained_prefix

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerFast

PAIR_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def _rows(build: str | ShardDataset, split: str, schemas: tuple[str, ...]) -> ShardDataset:
    rows = build if isinstance(build, ShardDataset) else ShardDataset(build, split)
    if rows.schema not in schemas:
        raise ShardprepError(
            f"{rows.url}: schema {rows.schema} has no TRL {'SFT' if 'sft/1' in schemas else 'DPO'} "
            f"layout here (this one takes {', '.join(schemas)})"
        )
    return rows


# Bump when a layout's rows change for the same shards: cached datasets are then made again.
_LAYOUT_VERSION = 1


def _fingerprint(layout: str, rows: ShardDataset, fractional: Fractional) -> str:
    """The cached dataset's key: its layout and the bytes of the shards it is made from (sha256s,
    in order), so a rebuilt build is never served from the cache, and an unchanged one never
    made twice (`datasets` would hash the generator's arguments, which differs run to run)."""
    h = hashlib.sha256(f"shardprep-trl-{layout}/{_LAYOUT_VERSION}/{fractional}".encode())
    for shard in rows.shards:
        h.update(shard["sha256"].encode())
    return h.hexdigest()[:32]


def _from_generator(generator: Any, **kwargs: Any) -> datasets.Dataset:
    """`datasets.Dataset.from_generator`, except that a row this module refuses (a ValueError or
    ShardprepError naming the row) is raised as itself: datasets wraps it in a
    DatasetGenerationError whose message is only 'An error occurred while generating the dataset'."""
    import datasets

    try:
        return datasets.Dataset.from_generator(generator, **kwargs)
    except datasets.exceptions.DatasetGenerationError as exc:
        cause = exc.__cause__
        if isinstance(cause, (ValueError, ShardprepError)):
            raise cause from None
        raise


def _sft_examples(rows: ShardDataset, fractional: Fractional) -> Iterator[dict[str, Any]]:
    for i in range(len(rows)):
        ex = hf_example(rows[i], fractional=fractional)
        yield {"input_ids": ex["input_ids"], "labels": ex["labels"]}


def _sft_packs(
    rows: ShardDataset, plan: PackingPlan, fractional: Fractional
) -> Iterator[dict[str, Any]]:
    for p in range(plan.packs):
        members = plan.pack(p)
        members = members[plan.kept[members] > 0]  # a row trained away adds nothing (no 0 length)
        kept = plan.kept[members]
        parts = [hf_example(rows[int(i)], fractional=fractional) for i in members]
        yield {
            "input_ids": np.concatenate(
                [x["input_ids"][:k] for x, k in zip(parts, kept, strict=True)]
            ),
            "labels": np.concatenate([x["labels"][:k] for x, k in zip(parts, kept, strict=True)]),
            "seq_lengths": kept,
            "rows": members.astype(np.int64),
        }


def sft_dataset(
    build: str | ShardDataset,
    split: str = "train",
    *,
    seq_len: int | None = None,
    fractional: Fractional = "refuse",
    cache_dir: str | None = None,
    keep_in_memory: bool = False,
) -> datasets.Dataset:
    """A build's split (sft/1 or pretrain/1) as SFTTrainer's pre-tokenized `input_ids` + `labels`.

    Pass it with `SFTConfig(dataset_kwargs={"skip_prepare_dataset": True})`: TRL's preparation would
    truncate rows to its own `max_length` (1024 by default). Written once by `datasets` into its
    cache (`cache_dir`; needs datasets >= 4.3, as TRL 1.x does), keyed by the shards' sha256s and
    the layout, so a rebuilt build is never served stale.

    `seq_len`: one example per pack of at most `seq_len` tokens instead, in TRL's own packed
    layout (the rows' `input_ids` / `labels` concatenated, `seq_lengths`, and `rows`: the build's
    row of each, which Trainer drops before the collator); train it with `padding_free=True`,
    which flattens a batch of packs with position_ids restarting per row. The packs are the
    best-fit-decreasing plan over the whole split (`shardprep.packing`), counted in TRL's
    unshifted tokens (a row of n positions is n + 1 tokens, its first never trained); a longer row
    keeps its first `seq_len` tokens, and one whose trained tokens all lie past them is left out
    (a pack of it alone would give a loss of 0/0), as PackedLoader's plan does.
    """
    import datasets

    rows = _rows(build, split, ("sft/1", "pretrain/1"))
    hf_example({"input_ids": [0], "target_ids": [], "weights": []}, fractional=fractional)
    ids = datasets.Sequence(datasets.Value("int32"))
    common: dict[str, Any] = {"cache_dir": cache_dir, "keep_in_memory": keep_in_memory}
    if seq_len is None:
        return _from_generator(
            _sft_examples,
            gen_kwargs={"rows": rows, "fractional": fractional},
            features=datasets.Features({"input_ids": ids, "labels": ids}),
            fingerprint=_fingerprint("sft", rows, fractional),
            **common,
        )
    if int(seq_len) < 2:
        raise ValueError(
            "seq_len must be at least 2 tokens (a pack of one holds a row's first token, which is "
            f"never trained), not {seq_len}"
        )
    # Tokens, not positions: the plan's capacity (its seq_len - 1) is then seq_len tokens, whose
    # first is never trained (a row keeping n tokens keeps n - 1 weights).
    trained = row_trained_prefix(rows)
    plan = PackingPlan.build(rows.lengths + 1, int(seq_len) + 1, lambda r, n: trained(r, n - 1))
    features = {
        "input_ids": ids,
        "labels": ids,
        "seq_lengths": datasets.Sequence(datasets.Value("int32")),
        "rows": datasets.Sequence(datasets.Value("int64")),
    }
    return _from_generator(
        _sft_packs,
        gen_kwargs={"rows": rows, "plan": plan, "fractional": fractional},
        features=datasets.Features(features),
        fingerprint=_fingerprint(f"sft-packed-{seq_len}", rows, fractional),
        **common,
    )


def dpo_pair(row: dict[str, Any], *, fractional: Fractional = "refuse") -> dict[str, np.ndarray]:
    """One dpo/1 row -> {"prompt_ids", "chosen_ids", "rejected_ids"} (int64), TRL's layout.

    Each side's tokens are input_ids[0] followed by its target_ids; its completion is the trained
    tail. Raises ValueError (naming the row) where that layout cannot say what the build trains.
    """
    where = f"row {row.get('index', '?')}"
    prompts: list[np.ndarray] = []
    out: dict[str, np.ndarray] = {}
    for side in ("chosen", "rejected"):
        targets = np.asarray(row[f"{side}_target_ids"], dtype=np.int64)
        weights = np.asarray(row[f"{side}_weights"])
        tokens = np.empty(len(targets) + 1, dtype=np.int64)
        tokens[:1] = np.asarray(row[f"{side}_input_ids"])[:1]
        tokens[1:] = targets
        trained = weights > 0
        if not trained.any():
            raise ValueError(f"{where}: the {side} side has no trained token")
        if fractional == "refuse":
            check_fractional(weights, f"{row.get('index', '?')} ({side})")
        first = int(np.argmax(trained))  # target index of the first trained token
        if not trained[first:].all():
            raise ValueError(
                f"{where}: the {side} side trains tokens that are not one tail of the sequence "
                "(an untrained token after a trained one): TRL's DPO scores the whole completion"
            )
        prompts.append(tokens[: first + 1])
        out[f"{side}_ids"] = tokens[first + 1 :]
    if len(prompts[0]) != len(prompts[1]) or not np.array_equal(prompts[0], prompts[1]):
        raise ValueError(f"{where}: chosen and rejected do not share their untrained prompt tokens")
    out["prompt_ids"] = prompts[0]
    return out


def _dpo_examples(rows: ShardDataset, fractional: Fractional) -> Iterator[dict[str, Any]]:
    for i in range(len(rows)):
        yield dpo_pair(rows[i], fractional=fractional)


def dpo_dataset(
    build: str | ShardDataset,
    split: str = "train",
    *,
    fractional: Fractional = "refuse",
    cache_dir: str | None = None,
    keep_in_memory: bool = False,
) -> datasets.Dataset:
    """A dpo/1 build's split as DPOTrainer's pre-tokenized prompt_ids / chosen_ids / rejected_ids.

    Train it with `PretokenizedDPOTrainer` (TRL's own DPOTrainer re-tokenizes every dataset).
    """
    import datasets

    rows = _rows(build, split, ("dpo/1",))
    ids = datasets.Sequence(datasets.Value("int32"))
    return _from_generator(
        _dpo_examples,
        gen_kwargs={"rows": rows, "fractional": fractional},
        features=datasets.Features({c: ids for c in PAIR_COLUMNS}),
        cache_dir=cache_dir,
        keep_in_memory=keep_in_memory,
        fingerprint=_fingerprint("dpo", rows, fractional),
    )


def build_tokenizer(build: str, *, pad_token: str | None = None) -> PreTrainedTokenizerFast:
    """The tokenizer a build was made with, as the `processing_class` TRL and HF Trainer take.

    Loaded from where the manifest says and refused if its tokenizer.json hash differs from the
    one the build recorded. TRL needs a pad token (padded positions are masked and never
    trained, so any token will do): `pad_token`, else the tokenizer config's pad or eos token,
    else the token of id 0.
    """
    from transformers import PreTrainedTokenizerFast

    from shardprep.tokenizer import load_tokenizer

    manifest = read_manifest(Output(build))
    if manifest is None:
        raise ShardprepError(f"{build} is not a finished build (no manifest)")
    recorded = manifest["tokenizer"]
    loaded = load_tokenizer(str(recorded["source"]))
    if loaded.sha256 != recorded["sha256"]:
        raise ShardprepError(
            f"{recorded['source']}: tokenizer.json differs from the one {build} was built with "
            f"(sha256 {loaded.sha256[:12]}, the build recorded {recorded['sha256'][:12]})"
        )
    specials: dict[str, str] = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = loaded.config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            specials[key] = value
    if pad_token is not None:
        specials["pad_token"] = pad_token
    elif "pad_token" not in specials:
        fallback = specials.get("eos_token") or loaded.tokenizer.id_to_token(0)
        if fallback is not None:
            specials["pad_token"] = fallback
    return PreTrainedTokenizerFast(tokenizer_object=loaded.tokenizer, **specials)


def _longest_pair(dataset: Any) -> int | None:
    """Longest prompt + side of a pre-tokenized pair dataset (Arrow list lengths: no row loop);
    None for an IterableDataset, whose rows are not known before they are read."""
    import pyarrow.compute as pc

    table = dataset.data.table if hasattr(dataset, "data") else None
    if table is None:
        return None
    prompt = pc.list_value_length(table.column("prompt_ids"))
    longest = 0
    for side in ("chosen_ids", "rejected_ids"):
        total = pc.add(prompt, pc.list_value_length(table.column(side)))
        top = pc.max(total).as_py()
        longest = max(longest, int(top or 0))
    return longest


def __getattr__(name: str) -> Any:
    # The trainer subclass is made on first use, so importing this module does not import TRL.
    if name == "PretokenizedDPOTrainer":
        cls = _make_dpo_trainer()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_dpo_trainer() -> type:
    from trl import DPOTrainer
    from trl.data_utils import get_dataset_column_names

    class PretokenizedDPOTrainer(DPOTrainer):  # type: ignore[misc]
        """TRL's DPOTrainer, taking a dataset that already holds prompt_ids / chosen_ids /
        rejected_ids (`dpo_dataset`) as it is; any other dataset is prepared by TRL as usual."""

        def _prepare_dataset(
            self, dataset: Any, processing_class: Any, args: Any, name: str
        ) -> Any:
            if not set(PAIR_COLUMNS) <= set(get_dataset_column_names(dataset)):
                return super()._prepare_dataset(dataset, processing_class, args, name)
            longest = _longest_pair(dataset)
            if args.max_length is not None and longest is None:
                raise ValueError(
                    f"the {name} dataset is iterable, so max_length={args.max_length} cannot be "
                    "checked against its rows and could truncate them: pass "
                    "DPOConfig(max_length=None) (the build already applied its own)"
                )
            if args.max_length is not None and longest is not None and longest > args.max_length:
                raise ValueError(
                    f"the {name} dataset has a pair side of {longest} tokens (prompt + completion) and "
                    f"max_length={args.max_length} would truncate it: the build already applied its own "
                    "max_length, so pass DPOConfig(max_length=None) (or one at least that long)"
                )
            return dataset

    return PretokenizedDPOTrainer
