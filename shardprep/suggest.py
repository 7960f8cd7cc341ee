""" "Did you mean …?" for a misspelt name (recipe keys, renderer, format and task names)."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or "" when none is close (difflib ratio >= 0.6)."""
    matches = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def unknown(what: str, word: str, choices: Collection[str]) -> str:
    """`unknown format 'x'; did you mean 'y'? (known: a, b)`."""
    return f"unknown {what} {word!r}{did_you_mean(word, choices)} (known: {', '.join(choices)})"
