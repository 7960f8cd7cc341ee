"""Global CLI flags shared by the commands."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _State:
    debug: bool = False


STATE = _State()


def debug() -> bool:
    return STATE.debug
