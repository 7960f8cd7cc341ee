"""Chat renderers: conversations to chunks and loss weights, exact to tinker-cookbook 0.6.1.

The names below load on first use (PEP 562): `import shardprep.renderers.base` (a recipe's
TrainOnWhat, a type) must not import the registry, which imports every renderer family.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardprep.renderers.base import Renderer, TrainOnWhat
    from shardprep.renderers.registry import (
        RendererInfo,
        get_renderer,
        renderer_info,
        renderer_names,
    )

_HOME = {
    "Renderer": "shardprep.renderers.base",
    "TrainOnWhat": "shardprep.renderers.base",
    "RendererInfo": "shardprep.renderers.registry",
    "get_renderer": "shardprep.renderers.registry",
    "renderer_info": "shardprep.renderers.registry",
    "renderer_names": "shardprep.renderers.registry",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "Renderer",
    "RendererInfo",
    "TrainOnWhat",
    "get_renderer",
    "renderer_info",
    "renderer_names",
]
