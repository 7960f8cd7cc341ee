"""YAML recipe -> validated `Recipe`. Unknown keys are rejected and every problem is reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from shardprep.errors import RecipeError
from shardprep.formats import ALL_FORMATS
from shardprep.recipe_yaml import load_yaml
from shardprep.renderers.base import TrainOnWhat
from shardprep.sizes import parse_size
from shardprep.sources.base import DEFAULT_MAX_ROW_BYTES
from shardprep.suggest import did_you_mean, unknown
from shardprep.tasks import TASKS, TaskOptions, option_owners


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    name: str | None = None
    # Exactly one of `path` (local path, glob or fsspec URL) and `hf` (Hub id or Hub-layout folder).
    path: str = ""
    # Conversation formats (sft, rl_prompts), pair formats (dpo) and `text` (pretrain): each
    # task's `formats` says which it reads.
    format: str = "messages"
    columns: dict[str, str] = Field(default_factory=dict)
    file_format: Literal["auto", "jsonl", "json", "parquet", "csv"] = "auto"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    # Hugging Face Hub (read with `datasets` streaming); revision is resolved to a commit at planning.
    hf: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    # Mixture controls, applied in this order: skip the first rows, keep a seeded fraction of the
    # rest, take the first N of those, then repeat the selection (see build/mixture.py).
    skip: int = Field(0, ge=0)
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    take: int | None = Field(None, ge=0)
    repeat: int = Field(1, ge=1)
    seed: int = 0

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v not in ALL_FORMATS:
            raise ValueError(unknown("format", v, ALL_FORMATS))
        return v

    @model_validator(mode="after")
    def _one_input(self) -> SourceSpec:
        if bool(self.path) == bool(self.hf):
            raise ValueError("give exactly one of `path` (files or URL) and `hf` (Hub dataset)")
        if not self.hf and (self.config or self.revision or self.data_files is not None):
            raise ValueError("`config`, `revision` and `data_files` apply to `hf:` sources only")
        return self

    @property
    def resolved_name(self) -> str:
        if self.name:
            return self.name
        if self.hf:
            base = Path(self.hf.rstrip("/")).name or "hub"
            return f"{base}-{self.config}" if self.config else base
        stem = Path(self.path.rstrip("/")).name
        for suffix in (".gz", ".zst", ".jsonl", ".json", ".ndjson", ".parquet", ".csv"):
            stem = stem.removesuffix(suffix)
        return stem.replace("*", "").strip("-_.") or "source"


class DecontaminateSpec(_Strict):
    """Rows whose trained tokens hold a token n-gram of these eval files' texts are dropped."""

    # JSON Lines / JSON / Parquet files (paths or globs, relative to the recipe), each row's
    # `field` holding the eval text. Their identities are part of the fingerprint.
    paths: list[str] = Field(min_length=1)
    # Tokens of the build's tokenizer: 16 is about the usual 13 words for English text with the
    # BPE tokenizers here (1.25 tokens a `\w+` word on the alpaca outputs, Qwen3 and Llama 3).
    ngram: int = Field(16, ge=1)
    field: str = "text"


class SplitSpec(_Strict):
    test_size: int = Field(0, ge=0)
    # Alternative to test_size: each row is held out when a seeded hash of (source, row) falls
    # below the fraction; independent of workers, resumes and the other sources.
    test_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    seed: int = 0

    @model_validator(mode="after")
    def _one_rule(self) -> SplitSpec:
        if self.test_size and self.test_fraction is not None:
            raise ValueError("give test_size or test_fraction, not both")
        return self


def _size_of_1kb_or_more(v: Any, key: str) -> int:
    """A size key ("64MB", 1048576): in bytes, refused below 1 KB."""
    size = parse_size(v)
    if size < 1024:
        raise ValueError(f"{key} must be at least 1KB")
    return size


class ShardSpec(_Strict):
    max_rows: int = Field(50_000, ge=1)
    max_bytes: int = 256 * 1024 * 1024
    row_group_rows: int = Field(1024, ge=1)

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return _size_of_1kb_or_more(v, "max_bytes")


_PATHED = "@path:"  # marks validator messages that carry their own YAML path


class _InvalidOptions(TaskOptions):
    """Stands in for task options that failed validation until the recipe reports them."""

    problems: list[str]


class RendererSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    output: str
    tokenizer: str
    renderer: RendererSpec
    task: str = "sft"
    train_on: TrainOnWhat = TrainOnWhat.ALL_ASSISTANT_MESSAGES
    max_length: int | None = Field(None, ge=2)
    overlong: Literal["truncate", "drop"] = "truncate"
    weight_reduction: Literal["none", "mean"] = "none"
    # fsspec options for `output` (endpoint, credentials, ...); standard env variables work too.
    output_storage_options: dict[str, Any] = Field(default_factory=dict)
    sources: list[SourceSpec] = Field(min_length=1)
    split: SplitSpec = Field(default_factory=SplitSpec)
    shards: ShardSpec = Field(default_factory=ShardSpec)
    on_error: Literal["fail", "skip"] = "fail"
    # A JSON Lines line, JSON array element or CSV line longer than this is a bad row
    # (`row_too_large`, under on_error), passed over without being held in memory: `64MiB`,
    # `1GB` or a byte count.
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES
    batch_size: int = Field(512, ge=1)
    # Input rows per work unit: the unit of resume and of parallel work (and so of shard boundaries).
    # `auto`: about 64 units, 128 to 4096 rows each, from the input's row count (not the workers).
    work_unit_rows: int | Literal["auto"] = "auto"
    workers: int | Literal["auto"] = "auto"
    # Token encoder: `auto` uses fastokens where its ids equal tokenizers' on a probe set, else
    # tokenizers. Not fingerprinted: either way the ids are the same. $SHARDPREP_ENCODER (which
    # `prep build --encoder` sets) overrides it.
    encoder: Literal["auto", "fastokens", "tokenizers"] = "auto"
    skipped_sample: int = Field(100, ge=0)
    # The task's own keys (`tie`, `passthrough`, `block_size`, ...), written at the top level of
    # the recipe and validated by the task's options model; serialized back to the top level.
    task_options: SerializeAsAny[TaskOptions] = Field(default_factory=TaskOptions)
    # Rows per build whose text is compared with the model's own chat_template, spread evenly over
    # the work units with at least one per unit (0: off). Not fingerprinted.
    conformance_rows: int = Field(64, ge=0)
    # What a sampled row that renders differently from the model's own template does to the build:
    # a warning in its summary and manifest, or a failure. Not fingerprinted (the bytes are equal).
    template_mismatch: Literal["warn", "fail"] = "warn"
    # A source that yields no example (every row dropped or skipped) fails the build, unless this
    # is set: then it is a warning in the summary and manifest. Not fingerprinted.
    allow_empty_sources: bool = False
    # `exact`: an example whose tokens (a pair's, for dpo) already appeared in the build is
    # dropped as `duplicate`, the copy kept decided by row order with held-out rows first.
    dedup: Literal["none", "exact"] = "none"
    decontaminate: DecontaminateSpec | None = None
    # A message text that spells an added token (`<|eot_id|>`, `<think>`) becomes that token's id
    # wherever the renderer encodes content with added tokens live (tinker does the same): `keep`
    # that (the reference behaviour; the build warns with the count), `escape` the literal as
    # plain text, or `refuse` the row (reason `special_token_in_content`). Fingerprinted.
    special_tokens_in_content: Literal["keep", "escape", "refuse"] = "keep"

    @model_validator(mode="before")
    @classmethod
    def _gather_task_options(cls, data: Any) -> Any:
        """Top-level task keys -> `task_options`; the task's defaults for keys left out."""
        if not isinstance(data, dict) or "task_options" in data:
            return data
        owners = option_owners()
        rest = {k: v for k, v in data.items() if k not in owners}
        task = (
            TASKS.get(data.get("task", "sft")) if isinstance(data.get("task", "sft"), str) else None
        )
        if task is not None:
            rest = {**task.recipe_defaults, **rest}
        return {**rest, "task_options": {k: v for k, v in data.items() if k in owners}}

    @field_validator("task_options", mode="before")
    @classmethod
    def _task_options(cls, v: Any, info: ValidationInfo) -> Any:
        task = TASKS.get(info.data.get("task", ""))
        if task is None:
            return TaskOptions()  # the unknown task is reported on its own key
        if isinstance(v, TaskOptions):
            if isinstance(v, task.options_model):
                return v
            v = v.model_dump()
        owners = option_owners()
        problems = [
            f"{key}: only for task {owners[key]} (this recipe's task is {task.name})"
            for key in v
            if owners.get(key, task.name) != task.name
        ]
        own = {k: val for k, val in v.items() if owners.get(k, task.name) == task.name}
        try:
            options = task.options_model.model_validate(own)
        except ValidationError as err:
            problems += [
                p.replace("Field required", f"required for task {task.name}")
                for p in _problems(err)
            ]
        # Reported with the recipe-wide problems (after validation), so every problem shows at once.
        return _InvalidOptions(problems=problems) if problems else options

    @model_validator(mode="after")
    def _per_task(self) -> Recipe:
        opts = self.task_options
        problems = list(opts.problems) if isinstance(opts, _InvalidOptions) else []
        problems += TASKS[self.task].recipe_problems(self)
        if problems:
            # One line per problem, each already naming its YAML path (see _problems).
            raise ValueError(_PATHED + f"\n{_PATHED}".join(problems))
        return self

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        data.update(data.pop("task_options", None) or {})
        return data

    @field_validator("max_row_bytes", mode="before")
    @classmethod
    def _row_size(cls, v: Any) -> int:
        return _size_of_1kb_or_more(v, "max_row_bytes")

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(unknown("task", v, TASKS))
        return v

    @field_validator("renderer", mode="before")
    @classmethod
    def _renderer(cls, v: Any) -> Any:
        # `renderer: qwen3` or `renderer: {name: gpt_oss_medium_reasoning, current_date: ...}`
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and "options" not in v and "name" in v:
            return {"name": v["name"], "options": {k: val for k, val in v.items() if k != "name"}}
        return v

    @model_validator(mode="after")
    def _row_filters(self) -> Recipe:
        if self.task == "pretrain" and (self.dedup != "none" or self.decontaminate is not None):
            raise ValueError(
                "dedup and decontaminate drop examples; pretrain's rows are packed blocks "
                "(drop documents before packing instead)"
            )
        return self

    @model_validator(mode="after")
    def _unique_sources(self) -> Recipe:
        names = [s.resolved_name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"source names must be unique; repeated: {', '.join(dupes)} (set `name:` on each source)"
            )
        return self


def _yaml_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-after["):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where an unknown key `loc` was found (for "did you mean")."""
    nested: dict[str, type[BaseModel]] = {
        "sources": SourceSpec,
        "split": SplitSpec,
        "shards": ShardSpec,
        "decontaminate": DecontaminateSpec,
    }
    model = nested.get(str(loc[0])) if len(loc) > 1 else None
    if model is not None:
        return list(model.model_fields)
    # Top level: the recipe's own keys and every task's options (they are written there too).
    return [k for k in Recipe.model_fields if k != "task_options"] + list(option_owners())


def _problems(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(
            p
            for p in e["loc"]
            if not (isinstance(p, str) and p.startswith(("function-", "str", "dict[")))
        )
        msg = e["msg"].removeprefix("Value error, ")
        if msg.startswith(_PATHED):
            problems += [line.removeprefix(_PATHED) for line in msg.splitlines()]
            continue
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(str(loc[-1]), _known_keys(loc))
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        problems.append(f"{_yaml_path(loc)}: {msg}")
    return problems


def parse_recipe(data: Any, *, origin: str | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(["the recipe must be a YAML mapping of keys to values"], path=origin)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_problems(err), path=origin) from None
    return recipe


def load_recipe(path: str | Path) -> tuple[Recipe, Path]:
    """Read and validate a recipe; returns it with the folder its relative paths resolve against."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"recipe file {p} does not exist"]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise RecipeError(
            [f"line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8"],
            path=str(p),
        ) from None
    except OSError as exc:  # a folder, no permission: the recipe cannot be read
        raise RecipeError(
            [f"cannot read the recipe file: {exc.strerror or exc}"], path=str(p)
        ) from None
    # Bounded aliases, no repeated keys (recipe_yaml.py); errors name the recipe file.
    data = load_yaml(text, origin=str(p))
    return parse_recipe(data, origin=str(p)), p.resolve().parent
