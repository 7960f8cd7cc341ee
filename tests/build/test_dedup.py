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


def test_decontaminate_drops_rows_sharing_an_ngram_with_eval_files(tmp_path: Path) -> None:
    alpaca = json.loads(gzip.decompress((LF / "alpaca_en_demo.json.gz").read_bytes()))
    # Eval sets quoting some real answers: a JSONL file, and a Parquet one with another field.
    jsonl = tmp_path / "eval.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"text": "Q: ... A: " + alpaca[i]["output"]}) + "\n" for i in (3, 8))
    )
    parquet = tmp_path / "eval.parquet"
    pq.write_table(pa.table({"answer": [alpaca[i]["output"] for i in (20, 21, 3)]}), parquet)
    n = 13

    def grams(text: str) -> set[tuple[str, ...]]:
        w = _words(text)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    evals = {
        "eval.jsonl": set().union(*(grams(alpaca[i]["output"]) for i in (3, 8))),
        "eval.parquet": set().union(*(grams(alpaca[i]["output"]) for i in (20, 21, 3))),
    }
    want = {
        name: {i for i, r in enumerate(alpaca) if grams(r["output"]) & g}
        for name, g in evals.items()
    }
    assert want["eval.jsonl"] >= {3, 8} and want["eval.parquet"] >= {3, 20, 21}
    sources = [SFT_SOURCES[0]]
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
    # one eval file whose field is not there: a clear error naming file, row and field
    res = runner.invoke(app, ["build", str(recipe_path), "--quiet"])
    assert res.exit_code == 0, res.output
    data["decontaminate"] = {"paths": ["eval.parquet"], "field": "text"}
    recipe_path.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["build", str(recipe_path), "--quiet"])
    assert res.exit_code == 2
    assert "eval.parquet row 0: field 'text' is missing" in res.output
    # both files: a row is dropped once, counted under each file it shares an n-gram with
    data["decontaminate"] = {"paths": ["eval.jsonl", "eval.parquet"], "field": "answer"}
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
        assert {x["row"] for x in e["samples"]} <= want[name] and e["samples"]
    kept = {r["source_row"] for r in _rows(tmp_path / "out", m)["train"]}
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


def test_match_many_equals_the_word_ngram_definition(tmp_path: Path) -> None:
    """The batched matcher (one regex pass, rolling hashes, binary search) finds exactly the
    texts sharing a lowercased word n-gram with each eval file."""
    from shardprep.build.dedup import EvalNgrams
    from shardprep.recipe import DecontaminateSpec

    alpaca = json.loads(gzip.decompress((LF / "alpaca_en_demo.json.gz").read_bytes()))
    evals = [[alpaca[i]["output"] for i in (1, 2)], [alpaca[i]["output"] for i in (2, 5)]]
    for k, texts in enumerate(evals):
        (tmp_path / f"e{k}.jsonl").write_text(
            "".join(json.dumps({"text": t}) + "\n" for t in texts)
        )
    n = 6
    spec = DecontaminateSpec(paths=["e0.jsonl", "e1.jsonl"], ngram=n)
    matcher = EvalNgrams.load(spec, tmp_path)

    def grams(text: str) -> set[tuple[str, ...]]:
        w = _words(text)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    owned = [set().union(*(grams(t) for t in texts)) for texts in evals]
    rows = [r["output"] for r in alpaca[:150]]
    rows += [
        "",
        "\0".join(rows[1:3]),  # a NUL inside a text stays inside it
        rows[2].upper(),  # words are compared lowercased
        "İ " + rows[5],  # lower() that changes the length
        " ".join(_words(rows[2])[:n]),  # exactly one n-gram
        " ".join(_words(rows[2])[: n - 1]),  # one word short
    ]
    want = {}
    for i, text in enumerate(rows):
        mask = sum(1 << k for k, g in enumerate(owned) if grams(text) & g)
        if mask:
            want[i] = mask
    assert matcher.match_many(rows) == want
    assert {i: matcher.match(t) for i, t in enumerate(rows) if matcher.match(t)} == want
    assert len(want) >= 5
    assert len(rows) - 2 in want and len(rows) - 1 not in want  # one n-gram is enough
    assert want[len(rows) - 4] == 0b11  # upper-cased: still rows[2], in both eval files


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
    assert res.exit_code == 2 and "missing.jsonl" in res.output, res.output
    res = runner.invoke(app, ["build", str(path), "--quiet"])
    assert res.exit_code == 2 and "missing.jsonl" in res.output, res.output


@pytest.mark.parametrize(
    "name", ["qwen3", "llama3", "deepseek_v3", "gpt_oss", "mistral_nemo_tekken", "mistral_v3"]
)
def test_trained_text_equals_decode_batch(name: str) -> None:
    """The byte-table decoding of a table's trained ids equals the tokenizer's own decode_batch
    (special tokens skipped), text by text, where masks cut multi-byte characters apart."""
    import random

    import numpy as np

    from shardprep.build.dedup import trained_text
    from shardprep.store.columns import flat_lists
    from shardprep.tasks import TASKS
    from shardprep.tokenizer import load_tokenizer

    tok = load_tokenizer(str(ROOT / "tests/fixtures/tokenizers" / name))
    glaive = json.loads(gzip.decompress((LF / "glaive_toolcall_en_demo.json.gz").read_bytes()))
    texts = [json.dumps(r, ensure_ascii=False) for r in glaive[:20]]
    texts += ["héllo wörld 日本語のテキスト 🤖🎉 emoji", "a\0b nul", "<|im_end|> <think>x</think>"]
    rng = random.Random(0)
    rows, weights = [], []
    for t in texts:
        ids = tok.tokenizer.encode(t, add_special_tokens=False).ids
        specials = [i for i in (tok.special_id("eos_token"), tok.special_id("bos_token")) if i]
        ids = ids[:3] + specials + ids[3:]  # a special token inside the trained text
        rows.append(ids)
        weights.append([float(rng.random() < 0.7) for _ in ids])
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    flat = np.array([i for r in rows for i in r], dtype=np.int32)
    w = np.array([x for r in weights for x in r], dtype=np.float32)
    table = pa.table(
        {
            "input_ids": flat_lists(flat, offsets, pa.int32()),
            "target_ids": flat_lists(flat, offsets, pa.int32()),
            "weights": flat_lists(w, offsets, pa.float32()),
        }
    )
    trained = [
        [i for i, x in zip(r, ws, strict=True) if x] for r, ws in zip(rows, weights, strict=True)
    ]
    want = tok.tokenizer.decode_batch(trained, skip_special_tokens=True)
    got = trained_text(table, TASKS["sft"].schema, tok).split("\0")
    assert got == [t.replace("\0", " ") for t in want]


@pytest.mark.parametrize("name", ["qwen3", "mistral_v3"])
def test_trained_text_of_pairs_and_prompts(name: str) -> None:
    """A dpo pair's trained text is its chosen then its rejected trained tokens; an rl prompt's
    is the whole prompt."""
    import numpy as np

    from shardprep.build.dedup import trained_text
    from shardprep.store.columns import flat_lists
    from shardprep.tasks import TASKS
    from shardprep.tokenizer import load_tokenizer

    tok = load_tokenizer(str(ROOT / "tests/fixtures/tokenizers" / name))
    texts = ["first answer über", "second ünïcode 🤖", "third", "a" * 5]
    ids = [tok.tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    off = np.concatenate([[0], np.cumsum([len(r) for r in ids])]).astype(np.int64)
    flat = np.array([i for r in ids for i in r], dtype=np.int32)
    ones = np.ones(len(flat), dtype=np.float32)
    half = np.array([float(k % 2) for k in range(len(flat))], dtype=np.float32)
    cols = {}
    for side, w in (("chosen_", ones), ("rejected_", half)):
        cols[f"{side}input_ids"] = flat_lists(flat, off, pa.int32())
        cols[f"{side}target_ids"] = flat_lists(flat, off, pa.int32())
        cols[f"{side}weights"] = flat_lists(w, off, pa.float32())
    pairs = trained_text(pa.table(cols), TASKS["dpo"].schema, tok).split("\0")
    want = []
    for r, (a, b) in enumerate(zip(off[:-1], off[1:], strict=True)):
        rejected = [flat[k] for k in range(a, b) if half[k]]
        want.append(tok.tokenizer.decode([*ids[r], *rejected], skip_special_tokens=True))
    assert pairs == want
    prompts = pa.table({"prompt_ids": flat_lists(flat, off, pa.int32())})
    got = trained_text(prompts, TASKS["rl_prompts"].schema, tok).split("\0")
    assert got == tok.tokenizer.decode_batch(ids, skip_special_tokens=True)
