"""What `prep build` starts before it has validated the recipe: the encoder's parse.

The parse (fastokens, two to three CPU-seconds for a real vocabulary, GIL released) is the
longest step of a build's start; begun here, it runs while the recipe model, numpy, pyarrow and
tokenizers load. The recipe is only peeked at: it is read and checked for real by load_recipe,
which reports every problem; a peek that finds nothing usable starts nothing.
"""

from __future__ import annotations

from pathlib import Path


def start_encoder_parse(
    recipe_path: Path, *, encoder: str | None, output: str | None, force: bool
) -> None:
    """Start parsing the recipe's tokenizer, unless the output looks up to date (a local
    manifest.json without --force: the build then parses only if its check says otherwise)."""
    from shardprep.recipe_yaml import load_yaml  # load_recipe reads with it next

    try:
        data = load_yaml(Path(recipe_path).read_text(encoding="utf-8"), origin=str(recipe_path))
    except Exception:  # noqa: BLE001 - load_recipe reports it
        return
    if not isinstance(data, dict):
        return
    base = Path(recipe_path).resolve().parent
    out = output if output is not None else data.get("output")
    if not force and isinstance(out, str) and "://" not in out:
        where = Path(out).resolve() if output is not None else base / out
        if (where / "manifest.json").is_file():
            return
    from shardprep.encode.fast_parse import prefetch_encoder

    prefetch_encoder(data.get("tokenizer"), base, data.get("encoder"), explicit=encoder)
