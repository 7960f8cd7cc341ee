"""What the examples share: the repo root, the demo build they train from when given none, and
the check every example ends with (its loss went down)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ensure_build(path: Path, config: str = "demo.yaml") -> None:
    """Build configs/`config` into `path` unless a build is there already (a real run points at
    its own build)."""
    if (path / "manifest.json").exists():
        return
    from shardprep.build.run import build
    from shardprep.recipe import load_recipe

    recipe, base = load_recipe(ROOT / "configs" / config)
    build(recipe.model_copy(update={"output": str(path.resolve())}), base)


def loss_went_down(losses: Sequence[float], note: str = "") -> dict[str, float]:
    """The mean loss of the first and of the last three steps, printed; an example whose loss did
    not go down fails."""
    first, last = float(np.mean(losses[:3])), float(np.mean(losses[-3:]))
    print(f"loss {first:.3f} -> {last:.3f} over {len(losses)} steps{note}")
    if not last < first:
        raise SystemExit("loss did not go down")
    return {"first": first, "last": last, "steps": len(losses)}
