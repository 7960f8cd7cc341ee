"""`prep build`: recipe -> shards + manifest; reuses an up-to-date build and resumes an interrupted one."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from shardprep import FORMAT_VERSION, __version__
from shardprep.build.engines import Engine, make_engine
from shardprep.build.engines.local import LocalEngine, resolve_workers
from shardprep.build.fingerprint import Resolved, fingerprint_parts
from shardprep.build.reuse import (
    BuildResult,
    QuickProbe,
    quick_key,
    record_quick,
    sealed,
    up_to_date,
)
from shardprep.errors import BuildError, ShardprepError
from shardprep.recipe import Recipe
from shardprep.sources.paths import resolve_path
from shardprep.sources.source import NO_ROWS, Source, open_source
from shardprep.store.integrity import manifest_shards, shard_problems
from shardprep.store.manifest import (
    FORMAT_NAME,
    canonical_json,
    fingerprint,
    read_manifest,
    write_manifest,
)
from shardprep.store.ownership import (
    claim,
    owns,
    reclaim,
    refuse_foreign,
    remove_owned,
    remove_unreferenced,
    sweep_scratch,
)
from shardprep.store.storage import Output
from shardprep.tasks import TASKS
from shardprep.tokenizer import LoadedTokenizer, local_tokenizer_files, resolve_tokenizer_path

# The checks, units, encoder and compaction (pyarrow, numpy, the renderer families) and the
# output lock load after the up-to-date check: a no-op build needs the recipe, the manifest and
# file stats only.
if TYPE_CHECKING:
    from shardprep.build.units import UnitResult, WorkUnit

_MIN_ROWS_FOR_POOL = 4096


class ProgressSink(Protocol):
    def start(self, total_rows: int | None, *, done_rows: int = 0) -> None: ...
    def advance(self, rows: int, tokens: int) -> None: ...
    def finish(self) -> None: ...


class _NoProgress:
    def start(self, total_rows: int | None, *, done_rows: int = 0) -> None:
        pass

    def advance(self, rows: int, tokens: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class Plan:
    """Everything resolved before the first row is read: tokenizer, renderer, inputs, fingerprint."""

    recipe: Recipe
    base_dir: Path
    tokenizer: LoadedTokenizer
    renderer: Any
    output: Output
    sources: list[Source]  # opened once per plan: a Hub revision resolves to one commit
    source_files: dict[str, list[dict[str, Any]]]
    fingerprint: str
    fingerprint_parts: dict[str, Any]
    quick_probe: QuickProbe | None = None
    # Set when the fingerprint's folder is the one the current manifest points to (a forced or
    # repairing rebuild): the new build goes beside it, so the current one stays whole until the
    # new manifest replaces it.
    rebuild_tag: str = ""

    @property
    def data_dir(self) -> str:
        return f"data-{self.fingerprint[:12]}{self.rebuild_tag}"


def _open_sources(recipe: Recipe, base_dir: Path) -> list[Source]:
    return [
        open_source(src, base_dir, max_row_bytes=recipe.max_row_bytes) for src in recipe.sources
    ]


def _source_identities(
    recipe: Recipe, sources: list[Source]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Each source's file identities; and, for Hub sources, the dataset with its resolved commit."""
    source_files: dict[str, list[dict[str, Any]]] = {}
    hub_sources: dict[str, dict[str, Any]] = {}
    for src, source in zip(recipe.sources, sources, strict=True):
        ident = source.identity()
        source_files[src.resolved_name] = ident.files
        if ident.hub is not None:
            hub_sources[src.resolved_name] = ident.hub
    return source_files, hub_sources


def _eval_key(i: int) -> str:
    # Beside the sources' names in the identities the fingerprint and the quick key cover; the
    # NUL keeps it apart from any source name.
    return f"\0decontaminate.paths[{i}]"


def _eval_identities(recipe: Recipe, base_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The identities of `decontaminate`'s eval files, per path entry (as probe_source_files
    takes them again for the quick key)."""
    spec = recipe.decontaminate
    if spec is None:  # the quick up-to-date path: no numpy or pyarrow imported for nothing
        return {}
    from shardprep.build.dedup import eval_files
    from shardprep.sources.paths import file_identity

    files = eval_files(spec, base_dir)
    return {_eval_key(i): [file_identity(u) for u in paths] for i, paths in enumerate(files)}


def quick_probe(recipe: Recipe, base_dir: Path, recipe_file: str | None) -> QuickProbe | None:
    """What the quick up-to-date key covers for this recipe (build/reuse.py); None where the
    tokenizer cannot be found."""
    tok_files = local_tokenizer_files(recipe.tokenizer, base_dir=base_dir)
    hub_tokenizer = tok_files is None
    if tok_files is None:  # a Hub id: the file the cache resolves it to now
        try:
            tok_path = resolve_tokenizer_path(recipe.tokenizer, base_dir=base_dir).absolute()
        except ShardprepError:
            return None
        tok_files = [tok_path, tok_path.parent / "tokenizer_config.json"]
    plain_files = all(s.path and not s.storage_options for s in recipe.sources)
    evals = recipe.decontaminate
    return QuickProbe(
        recipe=hashlib.sha256(
            canonical_json(recipe.model_dump(mode="json", exclude={"output"})).encode()
        ).hexdigest(),
        base_dir=str(base_dir),
        tokenizer_files=tuple(str(p) for p in tok_files),
        sources=(
            tuple((s.resolved_name, s.path) for s in recipe.sources)
            + tuple((_eval_key(i), p) for i, p in enumerate(evals.paths if evals else []))
            if plain_files
            else None
        ),
        recipe_file=None if hub_tokenizer else recipe_file,
    )


def plan_build(recipe: Recipe, base_dir: Path, *, recipe_file: str | None = None) -> Plan:
    """recipe_file: the digest of the recipe file the recipe was read from (reuse.py), recorded
    so that `prep build` can answer a later no-op from the file alone."""
    from shardprep.build.checks import preflight

    _prefetch_encoder(recipe, base_dir)
    pre = preflight(recipe, base_dir, inputs=False)
    pre.raise_first()  # the same checks as `prep validate`, before the first row
    tokenizer, renderer = pre.tokenizer, pre.renderer
    assert tokenizer is not None
    sources = _open_sources(recipe, base_dir)
    source_files, hub_sources = _source_identities(recipe, sources)
    eval_files = _eval_identities(recipe, base_dir)
    source_files.update(eval_files)  # inputs too: in the quick key, never inside the output
    # Every recipe key, less the few that cannot change a byte of the shards (build/fingerprint.py).
    parts = fingerprint_parts(
        recipe,
        Resolved(
            tokenizer_sha256=tokenizer.sha256,
            tokenizer_config_sha256=hashlib.sha256(
                canonical_json(tokenizer.config).encode()
            ).hexdigest(),
            renderer_options=renderer.options,
            template_sha256=hashlib.sha256(renderer.template_text().encode()).hexdigest(),
            source_files=source_files,
            hub_sources=hub_sources,
            eval_files=list(eval_files.values()),
        ),
    )
    output = Output(
        resolve_path(recipe.output, base_dir), storage_options=recipe.output_storage_options
    )
    refuse_foreign(output)  # before the lock file or anything else is written there
    _refuse_inputs_in_output(output, source_files)
    return Plan(
        recipe,
        base_dir,
        tokenizer,
        renderer,
        output,
        sources,
        source_files,
        fingerprint(parts),
        parts,
        quick_probe(recipe, base_dir, recipe_file),
    )


def _refuse_inputs_in_output(output: Output, source_files: dict[str, list[dict[str, Any]]]) -> None:
    """A source whose files lie inside the output folder (a glob that matches the build's own
    shards or skipped sample) would read what the build writes and remove."""
    import os

    if output.is_local:
        root = os.path.realpath(output.root) + os.sep

        def in_output(uri: str) -> bool:
            return "://" not in uri and os.path.realpath(uri).startswith(root)
    else:
        prefix = output.url.rstrip("/") + "/"

        def in_output(uri: str) -> bool:
            return uri.startswith(prefix)

    inside = [
        (name, str(f["uri"]))
        for name, files in source_files.items()
        for f in files
        if in_output(str(f["uri"]))
    ]
    if inside:
        name, uri = inside[0]
        more = f" and {len(inside) - 1} more" if len(inside) > 1 else ""
        err = BuildError(
            f"source {name!r} reads {uri}{more}, inside the output {output.url}: a build never "
            "reads its own output folder (its shards, its skipped sample)"
        )
        err.hint = "narrow the source's `path:` glob, or choose an `output:` outside the inputs"
        raise err


def _prefetch_encoder(recipe: Recipe, base_dir: Path) -> None:
    """Start fastokens' parse of the tokenizer now, on a thread (if `prep build` has not already):
    it is the longest step of a build's start and needs nothing the rest of planning does."""
    from shardprep.encode.fast_parse import prefetch_encoder

    prefetch_encoder(recipe.tokenizer, base_dir, recipe.encoder)


def _test_ordinals(recipe: Recipe, units: list[WorkUnit]) -> frozenset[int]:
    """Global input-row ordinals held out for the test split; independent of workers and resumes."""
    from shardprep.build.units import selected_total

    if recipe.split.test_fraction is not None:
        return frozenset()  # hashed per row inside the units instead
    total = selected_total(units)
    # tinker-cookbook's rule: a test split only when there are more rows than test_size.
    if recipe.split.test_size <= 0 or total <= recipe.split.test_size:
        return frozenset()
    return frozenset(random.Random(recipe.split.seed).sample(range(total), recipe.split.test_size))


def build(
    recipe: Recipe,
    base_dir: Path,
    *,
    force: bool = False,
    workers: int | str | None = None,
    progress: ProgressSink | None = None,
    lock_wait_s: float = 0.0,
    engine: str = "local",
    address: str | None = None,
    recipe_file: str | None = None,
) -> BuildResult:
    """engine: "local" (this process or a process pool) or "ray" (Ray tasks; `address` None starts
    a local Ray instance, "auto" / "ray://host:port" joins a cluster). Neither is fingerprinted:
    both engines write the same bytes. recipe_file: see plan_build."""
    # Resolved before anything is read, so a wrong engine name fails at once.
    chosen = workers if workers is not None else recipe.workers
    runner = make_engine(
        engine,
        workers=resolve_workers(chosen),
        address=address,
        ray_cpus=None if chosen in (None, "auto") else resolve_workers(chosen),
    )
    if not force:
        # Up to date without loading the tokenizer: file stats and the recipe decide.
        output = Output(
            resolve_path(recipe.output, base_dir), storage_options=recipe.output_storage_options
        )
        existing = _current_manifest(output, force=False)
        probe = quick_probe(recipe, base_dir, recipe_file)
        if existing is not None and existing.get("quick_key") and probe is not None:
            files = _source_identities(recipe, _open_sources(recipe, base_dir))[0]
            files.update(_eval_identities(recipe, base_dir))
            if quick_key(probe, files, existing) == existing["quick_key"] and not shard_problems(
                output, existing
            ):
                if existing.get("quick_probe") != probe.to_json():  # the recipe file was edited
                    record_quick(
                        output,
                        build_fingerprint=existing["fingerprint"],
                        probe=probe,
                        source_files=files,
                    )
                return up_to_date(output, existing)
    from shardprep.build.lock import build_lock

    plan = plan_build(recipe, base_dir, recipe_file=recipe_file)
    output = plan.output
    existing = _current_manifest(output, force=force)
    if not force and _holds(existing, output, plan.fingerprint):
        if plan.quick_probe is not None:
            record_quick(
                output,
                build_fingerprint=plan.fingerprint,
                probe=plan.quick_probe,
                source_files=plan.source_files,
            )
        return up_to_date(output, existing)
    with build_lock(output, wait_s=lock_wait_s):
        # Another build may have finished while we waited for the lock.
        existing = _current_manifest(output, force=force)
        if not force and _holds(existing, output, plan.fingerprint):
            return BuildResult("up_to_date", output.url, existing)
        if existing is not None and any(
            s["path"].startswith(plan.data_dir + "/") for s in manifest_shards(existing)
        ):
            plan.rebuild_tag = f"-{uuid.uuid4().hex[:8]}"
        elif output.listdir(plan.data_dir) and not owns(output, plan.data_dir):
            # A folder of that name this version did not make (an older build's): never written
            # into, never removed; the build goes beside it.
            plan.rebuild_tag = f"-{uuid.uuid4().hex[:8]}"
        return _build_locked(plan, force=force, progress=progress or _NoProgress(), engine=runner)


def _build_locked(
    plan: Plan,
    *,
    force: bool,
    progress: ProgressSink,
    engine: Engine,
) -> BuildResult:
    from shardprep.build.runtime import build_runtime
    from shardprep.build.units import plan_units

    recipe, output = plan.recipe, plan.output
    sweep_scratch(output)  # temporaries of a killed build; never referenced
    units = plan_units(recipe, plan.sources)
    _refuse_empty_sources(recipe, units)
    # The owner record goes in before any data: cleanup removes only folders that hold it.
    claim(output, plan.data_dir)
    try:
        with build_runtime():
            return _build_claimed(plan, progress=progress, engine=engine, units=units)
    except BaseException:
        # A store that lost the owner record (an object store restarted empty) while this build
        # kept writing: what is there now this build wrote, and the rerun must take it over.
        reclaim(output, plan.data_dir)
        raise


def _build_claimed(
    plan: Plan, *, progress: ProgressSink, engine: Engine, units: list[WorkUnit]
) -> BuildResult:
    from shardprep.build.compact import DamagedUnitShard, Streaming, compact_manifest
    from shardprep.build.units import UnitContext, load_done, unit_encoder
    from shardprep.encode.conformance import mismatch_warning
    from shardprep.encode.special import special_tokens_warning
    from shardprep.tasks.conformance import unit_share

    recipe, output = plan.recipe, plan.output
    started = time.monotonic()
    done = load_done(output, plan.data_dir)
    todo = [u for u in units if u.index not in done]
    input_check = _InputCheck(plan, todo)
    ctx = UnitContext(
        recipe=recipe,
        base_dir=plan.base_dir,
        output_url=output.url,
        data_dir=plan.data_dir,
        test_ordinals=_test_ordinals(recipe, units),
        conformance_rows=unit_share(recipe.conformance_rows, len(units)),
    )
    # In this process the plan's tokenizer and renderer serve the units (and forked pool workers
    # inherit them; spawned ones load their own).
    ctx._loaded = (plan.renderer, unit_encoder(recipe, plan.tokenizer, plan.renderer), output)
    total_rows = sum(u.kept for u in units)
    results = dict(done)
    # Without dedup or decontaminate (decided over every unit at commit), unit shards are merged
    # as their turn comes, while later units run, rather than in one pass after the last.
    streamed = (
        Streaming(
            output,
            plan.data_dir,
            TASKS[recipe.task].schema,
            [u.index for u in units],
            [recipe.sources[u.source].resolved_name for u in units],
            max_rows=recipe.shards.max_rows,
            max_bytes=recipe.shards.max_bytes,
            row_group_rows=recipe.shards.row_group_rows,
        )
        if not _filters_rows(recipe)
        else None
    )

    def on_done(res: UnitResult) -> None:
        input_check.unit_done(res.index)
        results[res.index] = res
        if streamed is not None:
            streamed.offer(results)
        progress.advance(res.rows_read, res.tokens)
        units_done = getattr(progress, "units", None)  # optional: sinks that show units done
        if units_done is not None:
            units_done(len(results), len(units))

    try:
        if isinstance(engine, LocalEngine) and sum(u.rows for u in todo) < _MIN_ROWS_FOR_POOL:
            engine = LocalEngine(workers=1)  # starting processes would cost more than the whole job
        if recipe.decontaminate is not None:  # loaded before a pool forks: its workers inherit them
            from shardprep.build.dedup import warm

            warm(recipe.decontaminate, plan.base_dir, ctx.loaded()[1])
        engine.start(ctx, todo)  # a pool forks here, before the progress display runs a thread
        try:
            progress.start(total_rows, done_rows=sum(u.kept for u in units if u.index in done))
            try:
                engine.run(ctx, todo, on_done)
            except ShardprepError as exc:
                input_check.check_all()
                raise exc
        finally:
            progress.finish()
        ordered = [results[u.index] for u in units]
        manifest = _manifest(plan, ordered, elapsed=time.monotonic() - started, resumed=len(done))
        # dedup / decontaminate: decided over every unit's rows at once, counted before the checks
        # below (a source all of whose rows were duplicates gave nothing).
        keep = _row_filters(plan, manifest)
        if ordered and not any(manifest["splits"][s]["rows"] for s in manifest["splits"]):
            reasons = ", ".join(f"{k} {v}" for k, v in manifest["stats"]["dropped"].items())
            remove_owned(output, plan.data_dir)
            raise BuildError(
                f"no examples: all {manifest['stats']['rows_read']} rows were dropped ({reasons}); "
                "check train_on, max_length and the data"
            )
        # A source that gave nothing fails the build (its finished units stay: they are reused
        # under `allow_empty_sources: true`, which is not fingerprinted); allowed, it is a warning.
        empty_warnings = _empty_sources(manifest, allow=recipe.allow_empty_sources)
        mismatch = mismatch_warning(manifest.get("conformance"), recipe.renderer.name)
        if mismatch is not None and recipe.template_mismatch == "fail":
            # Finished units stay: with `template_mismatch: warn` (not fingerprinted) they are reused.
            first = mismatch["first_difference"] or {}
            raise BuildError(
                f"{mismatch['message']}; first difference at source {first.get('source')!r} row "
                f"{first.get('index')}:\n{first.get('diff', '')}"
                "(template_mismatch: fail; set it to warn to build anyway)"
            )
        # Every warning of the build in one list (the summary, --json and show print it): the template
        # check's and the task's own (sft: turns trained as history).
        task_warnings = TASKS[recipe.task].counter_warnings(
            manifest["stats"]["task_counters"], manifest["recipe"]
        )
        special = special_tokens_warning(manifest["stats"]["special_tokens"])
        from shardprep.build.dedup import eval_warnings

        manifest["warnings"] = [
            *empty_warnings,
            *eval_warnings(manifest),
            *([mismatch] if mismatch is not None else []),
            *([special] if special is not None else []),
            *task_warnings,
        ]
        if manifest["skipped_sample"]:
            output.write_text_atomic(
                manifest["skipped_sample"],
                "".join(_json_line(s) for s in _skipped(ordered, recipe.skipped_sample)),
            )
        # Many small unit shards -> files of the size asked for; the unit shards go after the manifest.
        try:
            replaced = compact_manifest(
                output,
                plan.data_dir,
                manifest,
                TASKS[recipe.task].schema,
                max_rows=recipe.shards.max_rows,
                max_bytes=recipe.shards.max_bytes,
                row_group_rows=recipe.shards.row_group_rows,
                keep=keep,
                streamed=streamed,
            )
        except DamagedUnitShard as exc:
            raise _damaged_unit(plan, exc.rel) from None
        # Never a manifest listing a shard that is not there (an object store that lost writes).
        lost = shard_problems(output, manifest)
        if lost:
            raise BuildError(
                f"{len(lost)} shard(s) this build wrote are not in {output.url} ({'; '.join(lost[:3])}); "
                "the store lost them: run the build again to redo their units"
            )
        if plan.quick_probe is not None:
            manifest = sealed(manifest, plan.quick_probe, plan.source_files)
        write_manifest(output, manifest)
        for rel in replaced:
            output.fs.rm(output.path(rel))  # merged into the manifest's shards
        # The previous build (now unreferenced) and scratch of a worker killed mid-unit: only what a
        # build provably made (store/ownership.py), never by name.
        remove_unreferenced(output, manifest)
        return BuildResult("built", output.url, manifest, resumed_units=len(done))
    finally:
        if streamed is not None:
            streamed.close()  # a shard file streamed but never finished (the build stopped)


class _InputCheck:
    """Each input file's identity taken again when its last unit of this run finishes: a file
    rewritten, truncated or replaced while the build read it would give shards of old and new rows
    under the identity recorded before (and the fingerprint of a file that no longer exists)."""

    def __init__(self, plan: Plan, units: list[WorkUnit]) -> None:
        import os

        self._plan = plan
        self._units_left: Counter[tuple[int, str]] = Counter()
        self._unit_file: dict[int, tuple[int, str]] = {}
        self._planned: dict[tuple[int, str], dict[str, Any]] = {}
        for si, src in enumerate(plan.recipe.sources):
            if not src.path:
                continue  # a Hub source is pinned to its resolved commit
            for ident in plan.source_files[src.resolved_name]:
                uri = str(ident.get("uri"))
                self._planned[(si, os.path.normpath(uri) if "://" not in uri else uri)] = ident
        for u in units:
            key = (u.source, os.path.normpath(u.file) if "://" not in u.file else u.file)
            if key in self._planned:
                self._unit_file[u.index] = key
                self._units_left[key] += 1

    def unit_done(self, index: int) -> None:
        key = self._unit_file.get(index)
        if key is None:
            return
        self._units_left[key] -= 1
        if not self._units_left[key]:
            self._check(key)

    def check_all(self) -> None:
        """After a unit failed: an input that changed under it is the cause to report (a row cut
        in half by a truncation reads as malformed JSON)."""
        for key in self._planned:
            self._check(key)

    def _check(self, key: tuple[int, str]) -> None:
        from shardprep.sources.paths import file_identity

        planned = self._planned[key]
        src = self._plan.recipe.sources[key[0]]
        try:
            now = file_identity(str(planned["uri"]), src.storage_options)
        except ShardprepError:
            now = {"uri": planned["uri"], "missing": True}
        if {k: v for k, v in now.items() if k != "uri"} != {
            k: v for k, v in planned.items() if k != "uri"
        }:
            raise BuildError(
                f"input {planned['uri']} (source {src.resolved_name!r}) changed while the build "
                f"read it ({_identity_change(planned, now)}); its rows would mix two versions. "
                "Run the build again once the file stays unchanged"
            )


def _identity_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    if after.get("missing"):
        return "it is gone"
    changed = [
        k for k in sorted(set(before) | set(after)) if k != "uri" and before.get(k) != after.get(k)
    ]
    return ", ".join(f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in changed[:3])


def _refuse_empty_sources(recipe: Recipe, units: list[WorkUnit]) -> None:
    """A source that gives no rows at all is a mistake (an empty or whitespace-only file, a
    selection of nothing), never a 0-row build that exits 0."""
    empty = [s for i, s in enumerate(recipe.sources) if not any(u.source == i for u in units)]
    if empty:
        names = ", ".join(f"{s.resolved_name!r} ({s.path or 'hf:' + str(s.hf)})" for s in empty)
        raise BuildError(
            f"source {names} {NO_ROWS}" if len(empty) == 1 else f"sources {names}: each {NO_ROWS}"
        )


def _current_manifest(output: Output, *, force: bool) -> dict[str, Any] | None:
    """The output's manifest; a damaged one (not JSON, a field a build never writes, a `data_dir`
    that disagrees with its shards) stops a plain build with the way out, and is rebuilt over by
    `--force` (as if there were none: nothing it names is kept or removed)."""
    from shardprep.errors import ManifestError

    try:
        return read_manifest(output)
    except ManifestError as exc:
        if force:
            return None
        exc.hint = "`prep build RECIPE --force` builds it again and replaces the damaged manifest"
        raise


def _damaged_unit(plan: Plan, rel: str) -> BuildError:
    """A unit shard whose bytes are not its unit's: its unit is not finished any more (its
    marker goes), so the next run redoes it, and only it."""
    from shardprep.build.units import marker_path, unit_of_shard

    index = unit_of_shard(rel)
    if index is not None:
        plan.output.remove_tree(marker_path(plan.data_dir, index))
    return BuildError(
        f"unit shard {rel} in {plan.output.url} is damaged (its bytes are not the ones its "
        "unit wrote); nothing was merged from it. Run the build again: that unit is redone"
    )


def _filters_rows(recipe: Recipe) -> bool:
    """`dedup` or `decontaminate` is on: rows are dropped by a decision over every unit at commit."""
    return recipe.dedup != "none" or recipe.decontaminate is not None


def _row_filters(plan: Plan, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """`dedup` and `decontaminate` (build/dedup.py): the rows compaction leaves out, per unit
    shard, counted in `manifest`; None when the recipe asks for neither."""
    recipe = plan.recipe
    if not _filters_rows(recipe):
        return None
    from shardprep.build.compact import DamagedUnitShard, read_unit_shard
    from shardprep.build.dedup import apply_drops, eval_ngrams, find_drops
    from shardprep.build.units import unit_encoder

    spec = recipe.decontaminate
    task = TASKS[recipe.task]
    try:
        drops = find_drops(
            plan.output,
            manifest,
            task.schema_for(task.options(recipe)),
            dedup=recipe.dedup == "exact",
            # loaded by then (warm): an encoder of the plan's tokenizer finds them
            evals=(
                eval_ngrams(
                    spec, plan.base_dir, unit_encoder(recipe, plan.tokenizer, plan.renderer)
                )
                if spec is not None
                else None
            ),
            read=read_unit_shard,
        )
    except DamagedUnitShard as exc:
        raise _damaged_unit(plan, exc.rel) from None
    apply_drops(manifest, drops)
    return drops.keep


def _empty_sources(manifest: dict[str, Any], *, allow: bool) -> list[dict[str, Any]]:
    """A warning per source that yields no example (every row dropped or skipped), or, unless
    allowed, the build's failure naming the first: a source lost whole is never silent."""
    warnings = []
    for s in manifest["sources"]:
        if s["examples"] or not s["rows_read"]:
            continue
        reasons = ", ".join(f"{k} {v:,}" for k, v in s["dropped_by_reason"].items())
        first = next(iter(s["drop_samples"].items()), None)
        example = ""
        if first is not None:
            reason, (sample, *_) = first
            where = sample.get("file") or ""
            if where and sample.get("line") is not None:
                unit = sample.get("unit", "line")
                where += f":{sample['line']}" if unit == "line" else f" {unit} {sample['line']}"
            if sample.get("duplicate_of"):
                of = sample["duplicate_of"]
                where = f"a copy of {of['source']} row {of['row']}"
            note = f": {sample['message']}" if sample.get("message") else ""
            example = f"; e.g. row {sample['row']}{f' ({where})' if where else ''} {reason}{note}"
        message = (
            f"source {s['name']!r} yields no example: all {s['rows_read']:,} rows were dropped "
            f"or skipped ({reasons}){example}"
        )
        if not allow:
            raise BuildError(f"{message} (set allow_empty_sources: true to build without it)")
        warnings.append({"code": "empty_source", "message": message, "source": s["name"]})
    return warnings


def _holds(
    manifest: dict[str, Any] | None, output: Output, fingerprint: str
) -> TypeGuard[dict[str, Any]]:
    """Whether the output holds the build of `fingerprint`: "up to date" needs the shards, not
    just the manifest, each present with its recorded size."""
    return (
        manifest is not None
        and manifest.get("fingerprint") == fingerprint
        and not shard_problems(output, manifest)
    )


def _json_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _skipped(results: list[UnitResult], limit: int) -> list[dict[str, Any]]:
    return [s for r in results for s in r.skipped][:limit]


def _histogram(counter: Counter[int]) -> dict[str, Any]:
    if not counter:
        return {"edges": [], "counts": []}
    top = max(counter)
    # bucket b holds lengths in (2**(b-1), 2**b]
    return {
        "edges": [2**b for b in range(top + 1)],
        "counts": [counter.get(b, 0) for b in range(top + 1)],
    }


def _manifest(
    plan: Plan, results: list[UnitResult], *, elapsed: float, resumed: int
) -> dict[str, Any]:
    from shardprep.build.units import encoder_record
    from shardprep.encode.conformance import merge_conformance
    from shardprep.encode.special import special_tokens_record
    from shardprep.formats import normalizations
    from shardprep.tasks.base import DROP_SAMPLES_PER_REASON

    recipe = plan.recipe
    splits: dict[str, dict[str, Any]] = {}
    for split in ("train", "test"):
        shards = [s for r in results for s in r.shards.get(split, [])]
        if shards or split == "train":
            splits[split] = {
                "rows": sum(s["rows"] for s in shards),
                "tokens": sum(s["tokens"] for s in shards),
                "trained_tokens": sum(s["trained_tokens"] for s in shards),
                "shards": shards,
            }
    per_source: dict[str, Counter[str]] = {s.resolved_name: Counter() for s in recipe.sources}
    by_reason: dict[str, Counter[str]] = {s.resolved_name: Counter() for s in recipe.sources}
    dropped: Counter[str] = Counter()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        s.resolved_name: {} for s in recipe.sources
    }
    hist: Counter[int] = Counter()
    task_counters: Counter[str] = Counter()
    special: dict[str, Counter[str]] = {s.resolved_name: Counter() for s in recipe.sources}
    for r in results:
        task_counters.update(r.counters)
        special[r.source].update(r.special_tokens)
        per_source[r.source]["special_token_rows"] += r.special_token_rows
        c = per_source[r.source]
        c["rows_read"] += r.rows_read
        c["examples"] += r.examples
        c["tokens"] += r.tokens
        c["trained_tokens"] += r.trained_tokens
        c["dropped"] += sum(r.dropped.values())
        c["truncated"] += r.truncated
        for reason, n in r.dropped.items():
            by_reason[r.source][reason] += n
        for sample in r.drop_samples:  # in unit order: the same samples whatever the engine
            kept = samples[r.source].setdefault(sample["reason"], [])
            if len(kept) < DROP_SAMPLES_PER_REASON:
                kept.append({k: v for k, v in sample.items() if k != "reason"})
        dropped.update(r.dropped)
        hist.update(r.length_log2)
    rows_read = sum(r.rows_read for r in results)
    tokens = sum(r.tokens for r in results)
    task = TASKS[recipe.task]
    has_skipped = any(r.skipped for r in results) and recipe.skipped_sample > 0
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "shardprep_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": plan.fingerprint,
        "quick_key": None,  # sealed over the finished manifest (reuse.sealed)
        "task": recipe.task,
        "schema": task.schema_for(task.options(recipe)).id,
        "recipe": recipe.model_dump(mode="json"),
        # The encoder the units used (not fingerprinted: the ids are the same either way).
        "tokenizer": {**plan.tokenizer.describe(), "encoder": encoder_record(results)},
        "renderer": plan.fingerprint_parts["renderer"],
        "train_on": recipe.train_on.value,
        "sources": [
            {
                "name": s.resolved_name,
                "path": plan.sources[i].path,
                **(
                    {"hub": hub} if (hub := plan.fingerprint_parts["sources"][i].get("hub")) else {}
                ),
                "format": s.format,
                "files": plan.source_files[s.resolved_name],
                **{
                    k: per_source[s.resolved_name][k]
                    for k in (
                        "rows_read",
                        "examples",
                        "tokens",
                        "trained_tokens",
                        "dropped",
                        "truncated",
                    )
                },
                "dropped_by_reason": dict(sorted(by_reason[s.resolved_name].items())),
                # Rows whose message text spells control tokens, per literal (encode/special.py).
                "special_tokens": special_tokens_record(
                    recipe.special_tokens_in_content,
                    per_source[s.resolved_name]["special_token_rows"],
                    special[s.resolved_name],
                ),
                # A few rows of each reason (source row, file, line): where to look.
                "drop_samples": dict(sorted(samples[s.resolved_name].items())),
                # What the format changed in rows before rendering (documented, deliberate).
                "normalizations": list(normalizations(s.format)),
            }
            for i, s in enumerate(recipe.sources)
        ],
        "splits": splits,
        "stats": {
            "rows_read": rows_read,
            "examples": sum(v["rows"] for v in splits.values()),
            "dropped": dict(sorted(dropped.items())),
            "truncated": sum(r.truncated for r in results),
            "length_histogram": _histogram(hist),
            "task_counters": dict(sorted(task_counters.items())),
            "special_tokens": special_tokens_record(
                recipe.special_tokens_in_content,
                sum(r.special_token_rows for r in results),
                sum(special.values(), Counter()),
            ),
            # Figures the task derives from its counters (sft per_turn: examples per conversation).
            **(
                {"task_summary": summary}
                if (summary := task.counter_summary(task_counters))
                else {}
            ),
            "units": len(results),
            "units_resumed": resumed,
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(rows_read / elapsed, 1) if elapsed > 0 else None,
            "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 else None,
        },
        "data_dir": plan.data_dir,
        "skipped_sample": f"{plan.data_dir}/skipped.jsonl" if has_skipped else None,
        **(
            {"conformance": conf}
            if (
                conf := merge_conformance(
                    [r.extras["conformance"] for r in results if r.extras.get("conformance")]
                )
            )
            else {}
        ),
    }
