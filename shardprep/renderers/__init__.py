"""Chat renderers: conversations to chunks and loss weights, exact to tinker-cookbook 0.6.1."""

from shardprep.renderers.base import Renderer, TrainOnWhat
from shardprep.renderers.registry import RendererInfo, get_renderer, renderer_info, renderer_names

__all__ = [
    "Renderer",
    "RendererInfo",
    "TrainOnWhat",
    "get_renderer",
    "renderer_info",
    "renderer_names",
]
