"""The build fingerprint, derived from the validated recipe itself.

Every recipe key enters the fingerprint as the recipe model dumps it, except the few listed here:
those left out (`EXCLUDED`: they cannot change a byte of the shards) and those replaced by what
they resolve to (`RESOLVED`: a tokenizer path by its files' bytes, a source path by its files'
identities). A new recipe key is therefore fingerprinted by construction;
`tests/build/test_fingerprint.py` fails when a model field is in neither list nor the dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardprep.recipe import Recipe

# Top-level recipe keys left out, each with why no shard byte depends on it.
EXCLUDED: dict[str, str] = {
    "name": "a label: the manifest records it, no row or shard depends on it",
    "output": "where the build goes, not what it holds",
    "output_storage_options": "how to reach the output (endpoint, credentials)",
    "workers": "any worker count writes the same rows into the same shards (test_reuse)",
    "batch_size": "rows are encoded the same in any batch (test_reuse)",
    "encoder": "either encoder gives the same ids: fastokens is used only where proved equal",
    "skipped_sample": "how many bad rows are kept as a sample beside the shards, not in them",
    "conformance_rows": "a check of the rendering against the model's template, not an input to it",
    "template_mismatch": "what that check's finding does to the build; the shards are the same",
    "allow_empty_sources": "whether a source with no example fails the build; a build that "
    "finishes writes the same shards",
}
# Keys of each source left out.
SOURCE_EXCLUDED: dict[str, str] = {
    "storage_options": "how to reach the files (endpoint, credentials), not what they hold",
}
# Keys replaced by what they resolve to ("sources[].path": a key of every source).
RESOLVED: dict[str, str] = {
    "tokenizer": "its files' bytes: the sha256 of tokenizer.json and of tokenizer_config.json",
    "renderer.options": "the options the renderer resolved (defaults filled in), with the "
    "sha256 of its template constants",
    "sources[].path": "the files it expands to, each with its identity (uri, size, version)",
    "decontaminate.paths": "the eval files they expand to, each with its identity",
}


@dataclass(frozen=True)
class Resolved:
    """What the resolved keys stand for, taken at planning (tokenizer read, inputs stat'ed)."""

    tokenizer_sha256: str
    tokenizer_config_sha256: str
    renderer_options: dict[str, Any]
    template_sha256: str
    # Per source (resolved name): its file identities; and for Hub sources the dataset + commit.
    source_files: dict[str, list[dict[str, Any]]]
    hub_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per `decontaminate.paths` entry: the identities of the eval files it expands to.
    eval_files: list[list[dict[str, Any]]] = field(default_factory=list)


def fingerprint_parts(recipe: Recipe, resolved: Resolved) -> dict[str, Any]:
    """Everything that can change a byte of the shards, as the fingerprint hashes it."""
    data = recipe.model_dump(mode="json")  # task keys at the top level (Recipe._flat)
    parts = {k: v for k, v in data.items() if k not in EXCLUDED}
    parts["tokenizer"] = {
        "sha256": resolved.tokenizer_sha256,
        # tokenizer_config.json decides BOS/EOS for some renderers and tasks.
        "config_sha256": resolved.tokenizer_config_sha256,
    }
    parts["renderer"] = {
        "name": recipe.renderer.name,
        "options": resolved.renderer_options,
        "template_sha256": resolved.template_sha256,
    }
    sources = []
    for spec, dumped in zip(recipe.sources, data["sources"], strict=True):
        name = spec.resolved_name
        src = {k: v for k, v in dumped.items() if k not in SOURCE_EXCLUDED and k != "path"}
        src["name"] = name  # the resolved name: it is written into every row's `source`
        src["files"] = resolved.source_files[name]
        if name in resolved.hub_sources:
            src["hub"] = resolved.hub_sources[name]
        sources.append(src)
    parts["sources"] = sources
    if parts.get("decontaminate") is not None:
        kept = {k: v for k, v in parts["decontaminate"].items() if k != "paths"}
        parts["decontaminate"] = {**kept, "files": resolved.eval_files}
    return parts
