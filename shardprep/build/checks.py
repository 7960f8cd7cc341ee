"""Preflight: everything a build checks before its first row, with every problem collected.

`plan_build` and `prep validate` run this one function, so validate fails wherever build would
fail before reading rows (tokenizer, renderer, the task's own check, inputs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shardprep.errors import BuildError, RecipeError, ShardprepError, UnknownRendererError
from shardprep.recipe import Recipe
from shardprep.renderers.registry import get_renderer, renderer_names
from shardprep.sources.source import open_source
from shardprep.suggest import did_you_mean
from shardprep.tasks import TASKS
from shardprep.tokenizer import LoadedTokenizer, load_tokenizer


@dataclass
class Preflight:
    tokenizer: LoadedTokenizer | None = None
    renderer: Any = None
    # (YAML key the problem belongs to, the error); the first is what a build raises.
    errors: list[tuple[str, ShardprepError]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out: list[str] = []
        for key, err in self.errors:
            # A task's problems already start with their YAML key.
            out += err.problems if isinstance(err, RecipeError) else [f"{key}: {err}"]
        return out

    def raise_first(self) -> None:
        if self.errors:
            raise self.errors[0][1]


def preflight(recipe: Recipe, base_dir: Path, *, inputs: bool = True) -> Preflight:
    """`inputs` False: leave the sources to the caller (a build resolves them with their identities)."""
    out = Preflight()
    try:
        out.tokenizer = load_tokenizer(recipe.tokenizer, base_dir=base_dir)
    except ShardprepError as exc:
        out.errors.append(("tokenizer", exc))
    if out.tokenizer is not None:
        try:
            out.renderer = get_renderer(
                recipe.renderer.name, out.tokenizer, dict(recipe.renderer.options)
            )
            out.renderer.check_tokenizer()  # a missing special token is a recipe error
        except UnknownRendererError:
            name, known = recipe.renderer.name, renderer_names()
            # The closest name first; all of them are a `prep renderers` away (too many for one line).
            message = f"unknown renderer {name!r}{did_you_mean(name, known)} (`prep renderers` lists all {len(known)})"
            out.errors.append(("renderer", UnknownRendererError(message)))
        except ShardprepError as exc:
            out.errors.append(("renderer", exc))
        problems = TASKS[recipe.task].check(recipe, out.tokenizer)
        if problems:
            out.errors.append(("task", RecipeError(problems)))
    problem = output_problem(recipe.output, base_dir)
    if problem:
        err = BuildError(problem)
        err.hint = "choose another `output:` in the recipe, or pass `-o PATH` to prep build"
        out.errors.append(("output", err))
    if inputs:
        for i, src in enumerate(recipe.sources):
            try:
                open_source(src, base_dir).check()  # a Hub revision is resolved by plan_build
            except ShardprepError as exc:
                out.errors.append((f"sources[{i}].path", exc))
        if recipe.decontaminate is not None:
            from shardprep.build.dedup import eval_files

            try:
                eval_files(recipe.decontaminate, base_dir)  # a missing file or an empty glob
            except ShardprepError as exc:  # listed under its key: the source error alone
                cause = exc.__cause__
                out.errors.append(
                    ("decontaminate.paths", cause if isinstance(cause, ShardprepError) else exc)
                )
    return out


# Filesystems the kernel makes up (no folder of one's own can be created in them).
_KERNEL_FILESYSTEMS = {
    "proc",
    "sysfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "configfs",
    "pstore",
    "bpf",
    "mqueue",
    "fusectl",
}


def _kernel_filesystem(folder: Path) -> tuple[str, str] | None:
    """(mount point, type) when `folder` lies on one of _KERNEL_FILESYSTEMS (Linux; elsewhere,
    or when the mount table cannot be read, None)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = [line.split()[1:3] for line in f if len(line.split()) > 2]
    except OSError:
        return None
    where = str(folder.resolve())
    inside = [
        (point, kind)
        for point, kind in mounts
        if where == point or where.startswith(point.rstrip("/") + "/")
    ]
    if not inside:
        return None
    point, kind = max(inside, key=lambda m: len(m[0]))  # the innermost mount holds it
    return (point, kind) if kind in _KERNEL_FILESYSTEMS else None


def output_problem(output: str, base_dir: Path) -> str | None:
    """Why a local output cannot be created or written (None: it can, or it is an object store,
    which only says so when written). Found without writing anything."""
    if "://" in output and not output.startswith("file://"):
        return None
    path = Path(output.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    probe = path
    while not probe.exists():  # the nearest folder that exists is where the build creates its own
        if probe.parent == probe:
            return None
        probe = probe.parent
    if not probe.is_dir():
        return f"cannot write {path}: {probe} is a file, not a folder"
    kernel = _kernel_filesystem(probe)
    if kernel is not None:  # root passes os.access there, yet nothing can be created
        return (
            f"cannot write {path}: {kernel[0]} is the kernel's {kernel[1]} filesystem, not storage"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot write {path}: no permission to write in {probe}"
    if probe == path:
        from shardprep.store.ownership import foreign_problem
        from shardprep.store.storage import Output

        return foreign_problem(Output(str(path)))
    return None


def check_recipe(recipe: Recipe, base_dir: Path) -> list[str]:
    """Every problem a build would meet before its first row, one line each."""
    return preflight(recipe, base_dir).problems
