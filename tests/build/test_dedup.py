"""`dedup: exact` and `decontaminate:` on the repo's LLaMA-Factory data: every duplicate and eval
leak is dropped and counted with samples, the copy kept is the same whatever the workers or
resumes, and a held-out row never reaches train through a copy."""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from shardprep.build import run as build_mod
from shardprep.build.run import build
from shardprep.cli.app import app
from shardprep.recipe import load_recipe

ROOT = Path(__file__).parents[2]
LF = ROOT / "tests/fixtures/data/llamafactory"
TOY = ROOT / "tests/fixtures/tokenizers/toy"
runner = CliRunner()

# v1_sft_demo repeats rows of alpaca_en_demo and identity (303 of its 500 on this data).
SFT_SOURCES = [
    {"name": "alpaca", "path": str(LF / "alpaca_en_demo.json.gz"), "format": "alpaca"},
    {"name": "identity", "path": str(LF / "identity.json.gz"), "format": "alpaca"},
    {"name": "v1", "path": str(LF / "v1_sft_demo.jsonl.gz"), "format": "messages"},
]


def _recipe(tmp_path: Path, output: str = "out", **overrides: Any) -> tuple[Any, Path]:
    data: dict[str, Any] = {
        "name": "t",
        "output": output,
        "tokenizer": str(TOY),
        "renderer": "qwen3",
        "sources": SFT_SOURCES,
        "split": {"test_size": 40},
        "work_unit_rows": 128,
        "workers": 1,
        **overrides,
    }
    p = tmp_path / f"{output}.yaml"
    p.write_text(yaml.safe_dump(data))
    return load_recipe(p)


def _rows(out: Path, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        split: [r for s in info["shards"] for r in pq.read_table(out / s["path"]).to_pylist()]
        for split, info in manifest["splits"].items()
    }


def _key(row: dict[str, Any], prefixes: tuple[str, ...] = ("",)) -> tuple[Any, ...]:
    return tuple(
        tuple(row[f"{p}{c}"]) for p in prefixes for c in ("input_ids", "target_ids", "weights")
    )


def _accounted(m: dict[str, Any]) -> None:
    rows = sum(v["rows"] for v in m["splits"].values())
    assert m["stats"]["rows_read"] == rows + sum(m["stats"]["dropped"].values())
    for s in m["sources"]:
        assert s["rows_read"] == s["examples"] + s["dropped"]
        assert s["dropped"] == sum(s["dropped_by_reason"].values())
    for split, info in m["splits"].items():
        assert info["rows"] == sum(sh["rows"] for sh in info["shards"]), split
        assert info["tokens"] == sum(sh["tokens"] for sh in info["shards"]), split


@pytest.fixture(scope="module")
def plain_and_dedup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    tmp = tmp_path_factory.mktemp("dedup")
    plain = build(*_recipe(tmp, "plain"))
    dedup = build(*_recipe(tmp, "dedup", dedup="exact"))
    return plain.manifest, dedup.manifest, tmp


def test_exact_dedup_drops_every_copy_and_counts_it(plain_and_dedup: Any) -> None:
    plain_m, m, tmp = plain_and_dedup
    plain = _rows(tmp / "plain", plain_m)
    rows = _rows(tmp / "dedup", m)
    # The oracle: the plain build's examples, test first then train, first copy of each kept.
    seen: dict[tuple[Any, ...], tuple[str, int]] = {}
    want: dict[str, list[tuple[str, int]]] = {"test": [], "train": []}
    for split in ("test", "train"):
        for r in plain[split]:
            if seen.setdefault(_key(r), (r["source"], r["source_row"])) == (
                r["source"],
                r["source_row"],
            ):
                want[split].append((r["source"], r["source_row"]))
    got = {s: [(r["source"], r["source_row"]) for r in rows[s]] for s in rows}
    assert got == want
    dupes = len(plain["train"]) + len(plain["test"]) - len(want["train"]) - len(want["test"])
    assert m["stats"]["dropped"]["duplicate"] == dupes
    by_source = {s["name"]: s["dropped_by_reason"].get("duplicate", 0) for s in m["sources"]}
    assert sum(by_source.values()) == dupes
    # On this data (v1 copies alpaca and identity rows; held-out copies keep the test one):
    assert by_source == {"alpaca": 20, "identity": 1, "v1": 299}
    # no two written examples are equal, and no held-out example is in train
    keys = [_key(r) for split in rows.values() for r in split]
    assert len(keys) == len(set(keys))
    _accounted(m)
    assert plain_m["stats"]["rows_read"] == m["stats"]["rows_read"]
    # a sample per source names the row it copies, whose tokens are the same
    by_row = {(r["source"], r["source_row"]): _key(r) for split in plain.values() for r in split}
    for s in m["sources"]:
        for sample in s["drop_samples"].get("duplicate", []):
            of = sample["duplicate_of"]
            assert by_row[(s["name"], sample["row"])] == by_row[(of["source"], of["row"])]
            assert (of["source"], of["row"]) in got[of["split"]]
    # the histogram and totals count what was written
    assert sum(m["stats"]["length_histogram"]["counts"]) == sum(len(v) for v in rows.values())
    assert m["splits"]["train"]["tokens"] == sum(r["length"] for r in rows["train"])


def test_a_train_copy_of_a_held_out_row_is_the_one_dropped(plain_and_dedup: Any) -> None:
    plain_m, m, tmp = plain_and_dedup
    plain = _rows(tmp / "plain", plain_m)
    rows = _rows(tmp / "dedup", m)
    test_keys = {_key(r) for r in plain["test"]}
    leaked = [r for r in plain["train"] if _key(r) in test_keys]
    assert leaked, "the data should hold a train copy of some held-out row"
    assert not test_keys & {_key(r) for r in rows["train"]}
    assert {_key(r) for r in rows["test"]} == test_keys


def test_the_same_copy_is_kept_whatever_the_workers_and_resumes(
    plain_and_dedup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ref, _ = plain_and_dedup

    def digest(m: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (s["path"].rsplit("/", 1)[1], s["sha256"])
            for v in m["splits"].values()
            for s in v["shards"]
        ]

    monkeypatch.setattr(build_mod, "_MIN_ROWS_FOR_POOL", 0)
    pooled = build(*_recipe(tmp_path, "pooled", dedup="exact"), workers=2)
    assert digest(pooled.manifest) == digest(ref)
    assert pooled.manifest["stats"]["dropped"] == ref["stats"]["dropped"]

    # interrupted after 5 units, then resumed from their markers
    from shardprep.build import units

    real = units.run_unit
    calls = Counter[str]()

    def failing(ctx: Any, unit: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(ctx, unit)

    monkeypatch.setattr(build_mod, "_MIN_ROWS_FOR_POOL", 10**9)
    monkeypatch.setattr(units, "run_unit", failing)
    with pytest.raises(KeyboardInterrupt):
        build(*_recipe(tmp_path, "resumed", dedup="exact"))
    monkeypatch.setattr(units, "run_unit", real)
    resumed = build(*_recipe(tmp_path, "resumed", dedup="exact"))
    assert resumed.resumed_units == 5
    assert digest(resumed.manifest) == digest(ref)
    assert [s["drop_samples"] for s in resumed.manifest["sources"]] == [
        s["drop_samples"] for s in ref["sources"]
    ]


def test_dpo_pairs_are_duplicates_as_a_whole(tmp_path: Path) -> None:
    path = str(LF / "dpo_en_demo.json.gz")
    sources = [
        {"name": "a", "path": path, "format": "sharegpt_pair"},
        {"name": "b", "path": path, "format": "sharegpt_pair", "take": 50},
    ]
    recipe = _recipe(tmp_path, task="dpo", sources=sources, split={}, dedup="exact")
    with pytest.raises(Exception, match="source 'b' yields no example.*duplicate 50"):
        build(*recipe)
    recipe = _recipe(
        tmp_path, task="dpo", sources=sources, split={}, dedup="exact", allow_empty_sources=True
    )
    m = build(*recipe).manifest
    b = next(s for s in m["sources"] if s["name"] == "b")
    assert b["examples"] == 0 and b["dropped_by_reason"] == {"duplicate": 50}
    for sample in b["drop_samples"]["duplicate"]:
        assert sample["duplicate_of"] == {"source": "a", "row": sample["row"], "split": "train"}
    rows = _rows(tmp_path / "out", m)["train"]
    pairs = [_key(r, ("chosen_", "rejected_")) for r in rows]
    assert len(pairs) == len(set(pairs))
    _accounted(m)
    # the histogram buckets each pair written by its longer side, as the build counts it
    longest = Counter(
        max(0, (max(r["chosen_length"], r["rejected_length"]) - 1).bit_length()) for r in rows
    )
    counts = m["stats"]["length_histogram"]["counts"]
    assert {b: c for b, c in enumerate(counts) if c} == dict(longest)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


# The reference matcher, plain Python: what `decontaminate` means, n-gram by n-gram.
def _grams(ids: list[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)}


def _eval_grams(tok: Any, texts: list[str], n: int) -> set[tuple[int, ...]]:
    """An eval file's n-grams: each text encoded alone, special-token text as plain text."""
    t = tok.tokenizer
    t.encode_special_tokens = True
    try:
        return set().union(*(_grams(t.encode(x, add_special_tokens=False).ids, n) for x in texts))
    finally:
        t.encode_special_tokens = False


def _trained_grams(ids: list[int], weights: list[float] | None, n: int) -> set[tuple[int, ...]]:
    """The n-grams lying wholly in one run of trained positions (weights None: all trained)."""
    if weights is None:
        return _grams(ids, n)
    out, run = set(), []
    for i, w in zip(ids, weights, strict=True):
        if w:
            run.append(i)
        else:
            out |= _grams(run, n)
            run = []
    return out | _grams(run, n)


def _reference(
    rows: list[dict[str, Any]], prefixes: tuple[str, ...], owned: list[set[Any]], n: int
) -> dict[int, int]:
    """{row: bitmask of the eval files} by the definition (prefixes: the row's sequences; ()
    for an rl prompt, all of it trained)."""
    found = {}
    for i, r in enumerate(rows):
        grams: set[tuple[int, ...]] = set()
        for p in prefixes:
            grams |= _trained_grams(r[f"{p}target_ids"], r[f"{p}weights"], n)
        if not prefixes:
            grams = _grams(r["prompt_ids"], n)
        mask = sum(1 << k for k, g in enumerate(owned) if grams & g)
        if mask:
            found[i] = mask
    return found


def test_decontaminate_drops_rows_sharing_an_ngram_with_eval_files(tmp_path: Path) -> None:
    from shardprep.tokenizer import load_tokenizer

    alpaca = json.loads(gzip.decompress((LF / "alpaca_en_demo.json.gz").read_bytes()))
    # Eval sets quoting some real answers: a JSONL file, and a Parquet one with another field.
    jsonl = tmp_path / "eval.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"text": "Q: ... A: " + alpaca[i]["output"]}) + "\n" for i in (3, 8))
    )
    parquet = tmp_path / "eval.parquet"
    pq.write_table(pa.table({"answer": [alpaca[i]["output"] for i in (20, 21, 3)]}), parquet)
    n = 40  # tokens of the toy tokenizer (about 3.6 a word): some 11 words
    sources = [SFT_SOURCES[0]]
    # The oracle: the reference matcher over a plain build's rows.
    plain_m = build(*_recipe(tmp_path, "plain", sources=sources, split={})).manifest
    plain = _rows(tmp_path / "plain", plain_m)["train"]
    tok = load_tokenizer(str(TOY))
    evals = {
        "eval.jsonl": _eval_grams(tok, [alpaca[i]["output"] for i in (3, 8)], n),
        "eval.parquet": _eval_grams(tok, [alpaca[i]["output"] for i in (20, 21, 3)], n),
    }
    want = {
        name: {plain[i]["source_row"] for i in _reference(plain, ("",), [g], n)}
        for name, g in evals.items()
    }
    assert want["eval.jsonl"] >= {3, 8} and want["eval.parquet"] >= {3, 20, 21}
    recipe_path = tmp_path / "recipe.yaml"
    data = {
        "name": "t",
        "output": "out",
        "tokenizer": str(TOY),
        "renderer": "qwen3",
        "sources": sources,
        "decontaminate": {"paths": ["eval.jsonl"], "ngram": n},
    }
    recipe_path.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["build", str(recipe_path), "--quiet"])
    assert res.exit_code == 0, res.output
    # one eval file whose field is not there: a clear error naming file, row and field
    data["decontaminate"] = {"paths": ["eval.parquet"], "field": "text", "ngram": n}
    recipe_path.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["build", str(recipe_path), "--quiet"])
    assert res.exit_code == 2
    assert "eval.parquet row 0: field 'text' is missing" in res.output
    # both files: a row is dropped once, counted under each file it shares an n-gram with
    data["decontaminate"] = {"paths": ["eval.jsonl", "eval.parquet"], "field": "answer", "ngram": n}
    (tmp_path / "eval.jsonl").write_text(
        "".join(json.dumps({"answer": alpaca[i]["output"]}) + "\n" for i in (3, 8))
    )
    recipe_path.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["build", str(recipe_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    dropped = want["eval.jsonl"] | want["eval.parquet"]
    assert m["sources"][0]["dropped_by_reason"]["contaminated"] == len(dropped)
    per_file = {e["path"].rsplit("/", 1)[1]: e for e in m["decontamination"]}
    assert {k: v["rows"] for k, v in per_file.items()} == {k: len(v) for k, v in want.items()}
    for name, e in per_file.items():
        assert e["ngrams"] == len(evals[name])
        assert [x["row"] for x in e["samples"]] == sorted(want[name])[:3]
    samples = m["sources"][0]["drop_samples"]["contaminated"]
    assert [x["row"] for x in samples] == sorted(dropped)[:3]
    for x in samples:  # the first eval file holding one of its n-grams
        first = "eval.jsonl" if x["row"] in want["eval.jsonl"] else "eval.parquet"
        assert x["eval_file"].endswith(first)
    written = _rows(tmp_path / "out", m)["train"]
    buckets = Counter(max(0, (r["length"] - 1).bit_length()) for r in written)
    assert dict(enumerate(m["stats"]["length_histogram"]["counts"])) == {
        b: buckets[b] for b in range(len(m["stats"]["length_histogram"]["counts"]))
    }
    assert m["splits"]["train"]["tokens"] == sum(r["length"] for r in written)
    assert m["splits"]["train"]["trained_tokens"] == sum(
        sum(1 for w in r["weights"] if w) for r in written
    )
    kept = {r["source_row"] for r in written}
    assert not kept & dropped and len(kept) == len(alpaca) - len(dropped)
    assert out["decontamination"] == m["decontamination"]
    _accounted(m)
    # terminal: the per-file line
    res = runner.invoke(app, ["build", str(recipe_path), "--force"])
    assert f"eval.parquet: {len(want['eval.parquet'])} rows" in res.output
    assert "contaminated" in res.output
    # an eval file is part of the build's identity: a changed one rebuilds
    again = runner.invoke(app, ["build", str(recipe_path), "--json"])
    assert json.loads(again.output)["status"] == "up_to_date"
    with jsonl.open("a") as f:
        f.write(json.dumps({"answer": alpaca[30]["output"]}) + "\n")
    os.utime(jsonl, ns=(jsonl.stat().st_atime_ns, jsonl.stat().st_mtime_ns + 10**9))
    changed = json.loads(runner.invoke(app, ["build", str(recipe_path), "--json"]).output)
    assert changed["status"] == "built" and changed["fingerprint"] != out["fingerprint"]


def test_a_prompt_in_an_eval_file_does_not_drop_its_sft_row(tmp_path: Path) -> None:
    """Untrained tokens never count: with 20 alpaca instructions (sft prompts, untrained) as the
    eval file, an sft build drops exactly the rows whose trained answer holds one of their
    n-grams (the reference matcher), so rows whose answer quotes none of them are kept."""
    from shardprep.tokenizer import load_tokenizer

    alpaca = json.loads(gzip.decompress((LF / "alpaca_en_demo.json.gz").read_bytes()))
    n = 24
    tok = load_tokenizer(str(TOY))
    picked = [i for i, r in enumerate(alpaca) if len(_words(r["instruction"])) >= 12][:20]
    (tmp_path / "eval.jsonl").write_text(
        "".join(json.dumps({"text": alpaca[i]["instruction"]}) + "\n" for i in picked)
    )
    sources = [SFT_SOURCES[0]]
    plain_m = build(*_recipe(tmp_path, "plain", sources=sources, split={})).manifest
    plain = _rows(tmp_path / "plain", plain_m)["train"]
    owned = _eval_grams(tok, [alpaca[i]["instruction"] for i in picked], n)
    want = {plain[i]["source_row"] for i in _reference(plain, ("",), [owned], n)}
    # every picked row holds the n-grams, untrained: all tokens would have dropped them
    assert all(_grams(r["input_ids"], n) & owned for r in plain if r["source_row"] in picked)
    spec = {"paths": [str(tmp_path / "eval.jsonl")], "ngram": n}
    m = build(*_recipe(tmp_path, sources=sources, split={}, decontaminate=spec)).manifest
    kept = {r["source_row"] for r in _rows(tmp_path / "out", m)["train"]}
    assert kept == {r["source_row"] for r in plain} - want
    assert set(picked) & kept, "rows whose prompt (only) is in the eval file are kept"
    assert m["stats"]["dropped"].get("contaminated", 0) == len(want)


def test_unit_facts_equal_the_facts_taken_from_the_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The units take each row's facts in parallel (shard_facts, in the shard entries); the same
    decision from facts taken again from the unit shards themselves is identical."""
    import copy

    from shardprep.build import dedup

    alpaca = json.loads(gzip.decompress((LF / "alpaca_en_demo.json.gz").read_bytes()))
    (tmp_path / "eval.jsonl").write_text(
        "".join(json.dumps({"text": alpaca[i]["output"]}) + "\n" for i in (3, 8, 40))
    )
    real = dedup.find_drops
    compared = []

    def both(output: Any, manifest: dict[str, Any], *a: Any, **kw: Any) -> Any:
        got = real(output, manifest, *a, **kw)
        bare, other = copy.deepcopy(manifest), copy.deepcopy(manifest)
        for info in bare["splits"].values():
            for shard in info["shards"]:
                assert "filter" in shard
                del shard["filter"]
        for info in other["splits"].values():  # facts as another version might record them
            for k, shard in enumerate(info["shards"]):
                del shard["filter"][("longest", "digests", "source_rows")[k % 3]]
        again = real(output, bare, *a, **kw)
        assert real(output, other, *a, **kw).by_source == got.by_source
        assert {k: v.tolist() for k, v in got.keep.items()} == {
            k: v.tolist() for k, v in again.keep.items()
        }
        assert (got.by_source, got.samples, got.length_log2) == (
            again.by_source,
            again.samples,
            again.length_log2,
        )
        assert [e.__dict__ for e in got.eval_files] == [e.__dict__ for e in again.eval_files]
        compared.append(sum(len(v) for v in got.keep.values()))
        return got

    monkeypatch.setattr(dedup, "find_drops", both)
    recipe = _recipe(
        tmp_path,
        dedup="exact",
        decontaminate={"paths": [str(tmp_path / "eval.jsonl")], "ngram": 13},
    )
    m = build(*recipe).manifest
    assert compared and m["stats"]["dropped"]["contaminated"] >= 3
    assert m["stats"]["dropped"]["duplicate"] > 300


def test_rl_prompts_rows_are_deduplicated_and_decontaminated_by_their_prompt(
    tmp_path: Path,
) -> None:
    """rl_prompts writes row by row (facts read back from the unit shards); its trained text is
    the whole prompt."""
    alpaca = json.loads(gzip.decompress((LF / "alpaca_en_demo.json.gz").read_bytes()))
    long_ones = [i for i, r in enumerate(alpaca) if len(_words(r["instruction"])) >= 20][:2]
    (tmp_path / "eval.jsonl").write_text(
        "".join(json.dumps({"text": alpaca[i]["instruction"]}) + "\n" for i in long_ones)
    )
    recipe = _recipe(
        tmp_path,
        task="rl_prompts",
        split={},
        dedup="exact",
        decontaminate={"paths": [str(tmp_path / "eval.jsonl")], "ngram": 13},
    )
    m = build(*recipe).manifest
    rows = _rows(tmp_path / "out", m)["train"]
    prompts = [tuple(r["prompt_ids"]) for r in rows]
    assert len(prompts) == len(set(prompts))
    assert m["stats"]["dropped"]["duplicate"] > 300
    alpaca_src = next(s for s in m["sources"] if s["name"] == "alpaca")
    assert alpaca_src["dropped_by_reason"]["contaminated"] >= len(long_ones)
    kept = {r["source_row"] for r in rows if r["source"] == "alpaca"}
    assert not kept & set(long_ones)
    _accounted(m)


def _table(rows: list[list[int]], weights: list[list[float]], prefixes: tuple[str, ...]) -> Any:
    import numpy as np

    from shardprep.store.columns import flat_lists

    off = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    flat = np.array([i for r in rows for i in r], dtype=np.int32)
    w = np.array([x for r in weights for x in r], dtype=np.float32)
    if not prefixes:
        return pa.table({"prompt_ids": flat_lists(flat, off, pa.int32())})
    cols = {}
    for p in prefixes:
        cols[f"{p}input_ids"] = flat_lists(flat, off, pa.int32())
        cols[f"{p}target_ids"] = flat_lists(flat, off, pa.int32())
        cols[f"{p}weights"] = flat_lists(w, off, pa.float32())
    return pa.table(cols)


@pytest.mark.parametrize("name", ["qwen3", "toy"])
def test_the_vectorized_matcher_equals_the_reference(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EvalNgrams.match_table (every window hashed at once, looked up, confirmed on the ids)
    finds exactly the rows the plain reference finds, per eval file, on real text: seeded
    random trained spans over alpaca and glaive answers, and crafted rows (an n-gram wholly
    trained; the same with one untrained token inside; an n-gram split across two rows or a
    pair's two sides; one token short; special-token text escaped or as its id)."""
    import random

    from shardprep.build import dedup
    from shardprep.build.dedup import EvalNgrams
    from shardprep.encode.tokenize import BatchEncoder
    from shardprep.recipe import DecontaminateSpec
    from shardprep.tasks import TASKS
    from shardprep.tokenizer import load_tokenizer

    tok = load_tokenizer(str(ROOT / "tests/fixtures/tokenizers" / name))
    enc = tok.tokenizer
    alpaca = json.loads(gzip.decompress((LF / "alpaca_en_demo.json.gz").read_bytes()))
    glaive = json.loads(gzip.decompress((LF / "glaive_toolcall_en_demo.json.gz").read_bytes()))
    special = "the end <|im_end|> of the text, spelled out in an eval answer here"
    evals = [
        [alpaca[i]["output"] for i in (1, 2)] + [special],
        [alpaca[i]["output"] for i in (2, 5)] + [json.dumps(glaive[0])],
    ]
    for k, texts in enumerate(evals):
        (tmp_path / f"e{k}.jsonl").write_text(
            "".join(json.dumps({"text": t}) + "\n" for t in texts)
        )
    n = 8
    spec = DecontaminateSpec(paths=["e0.jsonl", "e1.jsonl"], ngram=n)
    matcher = EvalNgrams.load(spec, tmp_path, BatchEncoder(tok))  # as a build's encoder
    owned = [_eval_grams(tok, texts, n) for texts in evals]
    assert [f.ngrams for f in matcher.files] == [len(g) for g in owned]

    def ids(text: str) -> list[int]:
        return enc.encode(text, add_special_tokens=False).ids

    rng = random.Random(0)
    rows, weights = [], []
    texts = [r["output"] for r in alpaca[:120]] + [json.dumps(r) for r in glaive[:20]]
    for text in texts:
        r = ids("Question: " + text[:40]) + ids(text)
        w, at = [], 0
        while at < len(r):  # runs of trained and untrained tokens, some shorter than n
            span = rng.choice([1, 3, n - 1, n, 2 * n, 200])
            w += [float(rng.random() < 0.6)] * min(span, len(r) - at)
            at += span
        rows.append(r)
        weights.append(w)
    gram = list(sorted(owned[1] - owned[0])[0])  # an n-gram of e1 only
    filler = ids(" unrelated words about nothing in particular at all")
    crafted = [
        (filler + gram + filler, [1.0] * (2 * len(filler) + n), 0b10),
        # 2n - 1 tokens: every window holds the untrained middle one
        ((gram + gram)[: 2 * n - 1], [1.0] * (n - 1) + [0.0] + [1.0] * (n - 1), 0),
        (filler + gram[: n // 2], [1.0] * (len(filler) + n // 2), 0),  # ... then the next row
        (gram[n // 2 :] + filler, [1.0] * (n - n // 2 + len(filler)), 0),
        (gram[:-1], [1.0] * (n - 1), 0),
        (filler + ids(special)[:n], [1.0] * (len(filler) + n), None),  # None: as the reference
    ]
    escaped_special = _eval_grams(tok, [special], n)
    for r, w, _ in crafted:
        rows.append(r)
        weights.append(w)
    want = _reference(
        [{"target_ids": r, "weights": w} for r, w in zip(rows, weights, strict=True)],
        ("",),
        owned,
        n,
    )
    first = len(texts)
    for k, (_, _, mask) in enumerate(crafted):
        if mask is not None:
            assert want.get(first + k, 0) == mask, k
    assert want.get(first + 5, 0) & 1 == (1 if escaped_special & _grams(rows[first + 5], n) else 0)
    assert len(want) >= 10 and len(rows) - len(want) >= 50
    assert matcher.match_table(_table(rows, weights, ("",)), TASKS["sft"].schema) == want

    # dpo: each side on its own (an n-gram split across chosen and rejected is none)
    pairs = list(zip(rows[:-1], rows[1:], strict=True))
    pw = list(zip(weights[:-1], weights[1:], strict=True))
    pair_rows = [
        {
            "chosen_target_ids": a,
            "chosen_weights": wa,
            "rejected_target_ids": b,
            "rejected_weights": wb,
        }
        for (a, b), (wa, wb) in zip(pairs, pw, strict=True)
    ]
    want_pairs = _reference(pair_rows, ("chosen_", "rejected_"), owned, n)
    assert want_pairs.get(first + 2, 0) == 0  # the split n-gram: chosen's tail, rejected's head
    import numpy as np

    from shardprep.store.columns import flat_lists

    cols = {}
    for side, (rs, ws) in {
        "chosen_": (rows[:-1], weights[:-1]),
        "rejected_": (rows[1:], weights[1:]),
    }.items():
        off = np.concatenate([[0], np.cumsum([len(r) for r in rs])]).astype(np.int64)
        flat = np.array([i for r in rs for i in r], dtype=np.int32)
        cols[f"{side}input_ids"] = flat_lists(flat, off, pa.int32())
        cols[f"{side}target_ids"] = flat_lists(flat, off, pa.int32())
        cols[f"{side}weights"] = flat_lists(
            np.array([x for w in ws for x in w], dtype=np.float32), off, pa.float32()
        )
    assert matcher.match_table(pa.table(cols), TASKS["dpo"].schema) == want_pairs
    # rl prompts: the whole prompt counts
    prompts = [{"prompt_ids": r} for r in rows]
    want_prompts = _reference(prompts, (), owned, n)
    assert want_prompts.get(first + 1, 0) == 0b10  # its untrained token counts here
    table = _table(rows, weights, ())
    assert matcher.match_table(table, TASKS["rl_prompts"].schema) == want_prompts
    # A hash that collides all the time (257 values): every hit is still confirmed on the ids,
    # and n-grams sharing a hash are still told apart when the eval files are loaded.
    real = dedup.window_hashes
    monkeypatch.setattr(dedup, "window_hashes", lambda ids, n: real(ids, n) % np.uint64(257))
    weak = EvalNgrams.load(spec, tmp_path, BatchEncoder(tok))
    assert weak.run > 2 and [f.ngrams for f in weak.files] == [len(g) for g in owned]
    assert weak.match_table(_table(rows, weights, ("",)), TASKS["sft"].schema) == want
    assert weak.match_table(pa.table(cols), TASKS["dpo"].schema) == want_pairs


def test_build_and_show_name_each_duplicate_and_its_copy(tmp_path: Path) -> None:
    recipe, _ = _recipe(tmp_path, dedup="exact")
    path = tmp_path / "out.yaml"
    res = runner.invoke(app, ["build", str(path), "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    v1 = next(s for s in m["sources"] if s["name"] == "v1")
    shown = ", ".join(
        f"row {x['row']} (= {x['duplicate_of']['source']} {x['duplicate_of']['split']} "
        f"row {x['duplicate_of']['row']})"
        for x in v1["drop_samples"]["duplicate"]
    )
    line = f"v1  duplicate: {shown}"
    assert line in res.output
    table = res.output[res.output.index("sources") :]
    assert f"duplicate {v1['dropped_by_reason']['duplicate']}" in table
    show = runner.invoke(app, ["show", str(tmp_path / "out")])
    # show wraps long lines at the terminal's width (80 here)
    assert show.exit_code == 0 and " ".join(line.split()) in " ".join(show.output.split())
    data = json.loads(runner.invoke(app, ["show", str(tmp_path / "out"), "--json"]).output)
    assert (
        next(s for s in data["sources"] if s["name"] == "v1")["drop_samples"]
        == (v1["drop_samples"])
    )


def test_validate_and_build_name_a_missing_eval_file(tmp_path: Path) -> None:
    recipe, _ = _recipe(tmp_path, decontaminate={"paths": ["missing.jsonl"]})
    path = tmp_path / "out.yaml"
    res = runner.invoke(app, ["validate", str(path)])
    assert res.exit_code == 2, res.output
    assert "decontaminate.paths: no such file" in res.output and "missing.jsonl" in res.output
    res = runner.invoke(app, ["build", str(path), "--quiet"])
    assert res.exit_code == 2, res.output
    # Named as the eval file it is, with the key to fix (not the hint for a source's `path:`).
    assert "decontaminate.paths: no such file" in res.output and "missing.jsonl" in res.output
    assert "check `decontaminate.paths`" in res.output and "source `path:`" not in res.output


def test_an_eval_file_without_ngrams_is_a_warning(tmp_path: Path) -> None:
    """An empty eval file (or one whose texts are all shorter than `ngram`) checks nothing: the
    build, `prep show` (terminal and --json) say so, rather than a quiet 0 rows."""
    (tmp_path / "short.jsonl").write_text('{"text": "two words"}\n')
    _recipe(tmp_path, decontaminate={"paths": ["short.jsonl"], "ngram": 16})
    res = runner.invoke(app, ["build", str(tmp_path / "out.yaml")])
    assert res.exit_code == 0, res.output
    assert "short.jsonl holds no n-gram" in res.output
    res = runner.invoke(app, ["show", str(tmp_path / "out"), "--json"])
    codes = [w["code"] for w in json.loads(res.output)["warnings"]]
    assert "eval_file_without_ngrams" in codes, res.output
    res = runner.invoke(app, ["show", str(tmp_path / "out")])
    assert "[eval_file_without_ngrams]" in res.output, res.output
