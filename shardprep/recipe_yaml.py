"""Recipe YAML, read safely: no alias bombs, no duplicate keys, no stack exhaustion.

`yaml.safe_load` shares one object per anchor, so a "billion laughs" recipe loads small and only
explodes later, when validation or the fingerprint walks every reference (2.4 GB for one bomb in
`renderer.template_kwargs`). Here the composed node graph is measured as if every alias were
expanded, and refused past a bound far above any real recipe. A key given twice would silently
keep the last value; it is refused with both lines.
"""

from __future__ import annotations

from typing import Any

import yaml

from shardprep.errors import RecipeError

# Nodes after expanding every alias; a large real recipe has a few thousand.
MAX_EXPANDED_NODES = 100_000
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue  # `<<: *base` merges are meant to be overridden
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first != line:
                raise _Duplicate(f"line {line}: key {key!r} is given twice (first on line {first})")
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-untyped-call,no-any-return]


class _Duplicate(Exception):
    """A problem found while reading (a repeated key, a recursive alias); becomes a RecipeError."""


def expanded_size(root: yaml.Node) -> int:
    """Nodes in the tree the graph stands for (each alias counted as a copy); stops past the bound."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            if sizes[key] > MAX_EXPANDED_NODES:
                return sizes[key]
            continue
        if key in open_nodes:
            raise _Duplicate("an alias refers to a node that contains it (a recursive alias)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def load_yaml(text: str, *, origin: str | None = None) -> Any:
    """The recipe's data; RecipeError for YAML that is invalid, a bomb, or repeats a key."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()  # type: ignore[no-untyped-call]
        if node is None:
            return None
        size = expanded_size(node)
        if size > MAX_EXPANDED_NODES:
            raise RecipeError(
                [
                    f"aliases expand to more than {MAX_EXPANDED_NODES:,} values (a YAML alias bomb?); "
                    "write the values out or use fewer nested aliases"
                ],
                path=origin,
            )
        return loader.construct_document(node)  # type: ignore[no-untyped-call]
    except _Duplicate as exc:
        raise RecipeError([str(exc)], path=origin) from None
    except RecursionError:
        raise RecipeError(["the YAML nests too deeply to read"], path=origin) from None
    except yaml.YAMLError as exc:
        raise RecipeError([f"not valid YAML: {exc}"], path=origin) from None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
