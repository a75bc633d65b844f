"""YAML loading that refuses duplicate mapping keys, shared by the config and web-config readers."""

from __future__ import annotations

import json
from typing import IO

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice; plain YAML would silently keep the last one."""

    def __init__(self, path: str, key: str, first: yaml.Mark, again: yaml.Mark) -> None:
        where = path or "(top level)"
        problem = f"{where}: duplicate key {_quote(key)} (first at line {first.line + 1})"
        super().__init__(None, None, problem, again)
        self.path, self.key, self.first_line = path, key, first.line + 1


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that checks each document for duplicate keys before building it."""

    def get_single_node(self) -> Node | None:
        """The document's node tree, after the duplicate-key check."""
        node = super().get_single_node()
        if node is not None:
            _check(node, "", set())
        return node


def load_strict(stream: str | bytes | IO[str] | IO[bytes]) -> object:
    """Like ``yaml.safe_load``, but a duplicate key raises DuplicateKeyError (a YAMLError)."""
    return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 -- StrictLoader is a SafeLoader


def _check(node: Node, path: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias repeats a node already checked (and may even be recursive)
        return
    seen.add(id(node))
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _check(item, f"{path}[{i}]", seen)
    elif isinstance(node, MappingNode):
        firsts: dict[str, yaml.Mark] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name is None or key.tag == _MERGE:
                continue  # merge keys and complex keys: not ours to police
            if name in firsts:
                raise DuplicateKeyError(path, name, firsts[name], key.start_mark)
            firsts[name] = key.start_mark
            _check(value, _join(path, name), seen)


def _join(path: str, key: str) -> str:
    plain = key and all(c.isalnum() or c in "_-/" for c in key)
    if not plain:
        return f"{path}[{_quote(key)}]"
    return f"{path}.{key}" if path else key


def _quote(key: str) -> str:
    text = json.dumps(key, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
