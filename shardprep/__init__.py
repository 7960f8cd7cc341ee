"""shardprep: chat, preference and text data to tokenized Parquet training shards.

The library API (the CLI is a thin layer over exactly these):

    from shardprep import load_recipe, build, preview, inspect_build, verify_build
    recipe, base_dir = load_recipe("recipe.yaml")
    result = build(recipe, base_dir)              # BuildResult: status, output, manifest
    report = inspect_build(result.output)         # what `prep show --json` prints

and the rendering layer on its own:

    from shardprep import load_tokenizer, get_renderer, BatchEncoder, TrainOnWhat, render_supervised_batch
    tok = load_tokenizer("tokenizers/qwen3")
    [example] = render_supervised_batch(get_renderer("qwen3", tok), BatchEncoder(tok), [messages],
                                        TrainOnWhat.ALL_ASSISTANT_MESSAGES)

Names are imported on first use, so `import shardprep` (and `prep --version`) stays instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
FORMAT_VERSION = 1

# public name -> (module, attribute)
_API: dict[str, tuple[str, str]] = {
    "load_recipe": ("shardprep.recipe", "load_recipe"),
    "parse_recipe": ("shardprep.recipe", "parse_recipe"),
    "Recipe": ("shardprep.recipe", "Recipe"),
    "build": ("shardprep.build.run", "build"),
    "BuildResult": ("shardprep.build.run", "BuildResult"),
    "preview": ("shardprep.views.preview", "preview_recipe"),
    "inspect_build": ("shardprep.views.show", "inspect_build"),
    "verify_build": ("shardprep.views.verify", "verify_build"),
    "load_tokenizer": ("shardprep.tokenizer", "load_tokenizer"),
    "get_renderer": ("shardprep.renderers.registry", "get_renderer"),
    "renderer_names": ("shardprep.renderers.registry", "renderer_names"),
    "TrainOnWhat": ("shardprep.renderers.base", "TrainOnWhat"),
    "BatchEncoder": ("shardprep.encode.tokenize", "BatchEncoder"),
    "render_supervised_batch": ("shardprep.encode.tokenize", "render_supervised_batch"),
    "render_prompt_batch": ("shardprep.encode.tokenize", "render_prompt_batch"),
    "TASKS": ("shardprep.tasks", "TASKS"),
}

__all__ = [
    "FORMAT_VERSION",
    "TASKS",
    "BatchEncoder",
    "BuildResult",
    "Recipe",
    "TrainOnWhat",
    "__version__",
    "build",
    "get_renderer",
    "inspect_build",
    "load_recipe",
    "load_tokenizer",
    "parse_recipe",
    "preview",
    "render_prompt_batch",
    "render_supervised_batch",
    "renderer_names",
    "verify_build",
]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'shardprep' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from shardprep.build.run import BuildResult, build
    from shardprep.encode.tokenize import BatchEncoder, render_prompt_batch, render_supervised_batch
    from shardprep.recipe import Recipe, load_recipe, parse_recipe
    from shardprep.renderers.base import TrainOnWhat
    from shardprep.renderers.registry import get_renderer, renderer_names
    from shardprep.tasks import TASKS
    from shardprep.tokenizer import load_tokenizer
    from shardprep.views.preview import preview_recipe as preview
    from shardprep.views.show import inspect_build
    from shardprep.views.verify import verify_build
