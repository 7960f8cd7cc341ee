"""The package's shape: subpackages form layers (no two import each other), and the library API."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import shardprep

PKG = Path(shardprep.__file__).parent


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Top-level part of shardprep -> (part it imports, file), TYPE_CHECKING blocks left out."""
    edges: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).parts
        if rel == ("__init__.py",):
            continue  # the API facade imports lazily from everywhere by design
        part = rel[0].removesuffix(".py")

        def visit(node: ast.AST, part: str = part, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                names: list[str] = []
                if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                    names = [child.module]
                elif isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                for name in names:
                    bits = name.split(".")
                    if bits[0] == "shardprep" and len(bits) > 1 and bits[1] != part:
                        edges[part].add((bits[1], str(path.relative_to(PKG))))
                visit(child)

        visit(ast.parse(path.read_text(encoding="utf-8")))
    return edges


def test_no_two_subpackages_import_each_other() -> None:
    edges = _imports()
    targets = {k: {d for d, _ in v} for k, v in edges.items()}
    cycles = [(a, b, f) for a, v in edges.items() for b, f in v if a in targets.get(b, set())]
    assert not cycles, cycles


def test_renderers_depend_on_nothing_above_them() -> None:
    allowed = {"errors", "tokenizer", "messages"}
    assert {d for d, _ in _imports()["renderers"]} <= allowed


def test_library_api_imports_from_the_package() -> None:
    from shardprep import (  # noqa: F401
        TrainOnWhat,
        build,
        get_renderer,
        inspect_build,
        load_recipe,
        load_tokenizer,
        preview,
        render_prompt_batch,
        render_supervised_batch,
        verify_build,
    )

    assert TrainOnWhat.ALL_ASSISTANT_MESSAGES.value == "all_assistant_messages"
    assert set(shardprep.__all__) >= {
        "build",
        "preview",
        "inspect_build",
        "verify_build",
        "BatchEncoder",
    }


def test_import_shardprep_is_light() -> None:
    code = (
        "import sys, shardprep; print(sorted(m for m in sys.modules if "
        "m.startswith(('shardprep.', 'pyarrow', 'numpy'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
