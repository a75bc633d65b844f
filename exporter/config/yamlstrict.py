"""YAML loading that refuses duplicate mapping keys, shared by the config and web-config readers."""

from __future__ import annotations

import json
from typing import IO

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exporter.config.reader import join
from exporter.core.smallfile import read_capped

_MERGE = "tag:yaml.org,2002:merge"
MAX_DEPTH = 64
MAX_NODES = 150_000  # ~15,000 static targets; PyYAML holds ~800 bytes per node
MAX_EXPANDED = 300_000  # values once aliases are expanded (nothing here walks them all)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice; plain YAML would silently keep the last one."""

    def __init__(self, path: str, key: str, first: yaml.Mark, again: yaml.Mark) -> None:
        where = path or "(top level)"
        problem = f"{where}: duplicate key {_quote(key)} (first at line {first.line + 1})"
        super().__init__(None, None, problem, again)
        self.path, self.key, self.first_line = path, key, first.line + 1


class LimitError(yaml.YAMLError):
    """The document is bigger, deeper or more repetitive than a config may be."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class ValueYAMLError(yaml.constructor.ConstructorError):
    """A scalar YAML resolves to a type but cannot build, like the date 2024-02-30."""


class WrittenFloat(float):
    """A YAML float that keeps how it was written, so that a reader needing the exact value
    (a price) can tell ``0.27`` (what the float prints back) from ``1.000000000000000001``
    (which no float holds: it reads as 1.0)."""

    written: str

    def __new__(cls, value: float, written: str) -> WrittenFloat:
        number = super().__new__(cls, value)
        number.written = written
        return number


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with limits, that checks each document for duplicate keys.

    Limits: nesting depth, the number of nodes (PyYAML keeps ~300 bytes per node), and the
    size of the document once aliases are expanded, so a few hundred bytes of aliases (a
    "billion laughs") cannot make anything that walks the values run out of memory or time.
    """

    max_depth, max_nodes, max_expanded = MAX_DEPTH, MAX_NODES, MAX_EXPANDED

    def __init__(self, stream: str | bytes | IO[str] | IO[bytes]) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        #: The line (1-based) of each value, by its path as config problems name it.
        self.lines: dict[str, int] = {}

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """One node, refused past ``max_depth`` levels or ``max_nodes`` nodes."""
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > self.max_depth:
                raise LimitError(f"nested more than {self.max_depth} levels deep", self._mark())
            if self._nodes > self.max_nodes:
                raise LimitError(f"more than {self.max_nodes} values", self._mark())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _mark(self) -> yaml.Mark | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        return getattr(event, "start_mark", None)

    def get_single_node(self) -> Node | None:
        """The document's node tree, after the alias budget and duplicate-key checks."""
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, self.max_expanded)
            _check(node, "", set())
            self.lines = _lines(node)
        return node

    def construct_written_float(self, node: Node) -> float:
        """A float, as a :class:`WrittenFloat` that remembers its spelling."""
        if not isinstance(node, ScalarNode):  # "!!float" on a list or a mapping
            raise ValueYAMLError(None, None, "not a valid float", node.start_mark)
        return WrittenFloat(self.construct_yaml_float(node), str(node.value))

    def construct_object(self, node: Node, deep: bool = False) -> object:
        """A value, or ValueYAMLError where PyYAML would raise ValueError or OverflowError."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            kind = str(node.tag).rsplit(":", 1)[-1]
            reason = str(exc).split(";")[0].split(":")[0][:80]
            raise ValueYAMLError(None, None, f"not a valid {kind} ({reason})",
                                 node.start_mark) from None


StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_written_float)


def load_strict(stream: str | bytes | IO[str] | IO[bytes]) -> object:
    """Like ``yaml.safe_load``, with StrictLoader's limits; every problem is a YAMLError."""
    return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 -- StrictLoader is a SafeLoader


def load_file(path: str, cap: int) -> object:
    """The YAML document in the regular file ``path`` of at most ``cap`` bytes.

    OSError when it cannot be read (core.smallfile.FileRefusedError: not a regular file, too
    large), UnicodeDecodeError when it is not UTF-8, a YAMLError when it is not usable YAML.
    """
    return load_strict(read_capped(path, cap).decode("utf-8"))


def load_file_lines(path: str, cap: int) -> tuple[object, dict[str, int]]:
    """Like :func:`load_file`, with the line of each value by its path (``targets[1].key``)."""
    loader = StrictLoader(read_capped(path, cap).decode("utf-8"))
    try:
        return loader.get_single_data(), loader.lines
    finally:
        loader.dispose()


def _expanded_size(root: Node, limit: int) -> None:
    """Refuse a document whose aliases expand to more than ``limit`` values, without
    expanding anything: each node's expanded size is computed once."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done:
            open_.discard(id(node))
            # A recursive alias counts once: nothing here expands it (renderings are bounded).
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[id(node)] > limit:
                raise LimitError(f"aliases expand to more than {limit} values",
                                 node.start_mark)
            continue
        if id(node) in open_:
            continue
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


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


def _lines(root: Node) -> dict[str, int]:
    """Each value's line by its path as config problems spell it (a mapping value's is its
    key's line); an alias's value keeps the line where it was first seen."""
    lines: dict[str, int] = {}
    seen: set[int] = set()
    stack: list[tuple[Node, str, int]] = [(root, "", root.start_mark.line + 1)]
    while stack:
        node, path, line = stack.pop()
        lines.setdefault(path, line)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend((item, f"{path}[{i}]", item.start_mark.line + 1)
                         for i, item in enumerate(node.value))
        elif isinstance(node, MappingNode):
            stack.extend((value, join(path, key.value), key.start_mark.line + 1)
                         for key, value in node.value
                         if isinstance(key, ScalarNode) and key.tag != _MERGE)
    return lines


def _join(path: str, key: str) -> str:
    plain = key and all(c.isalnum() or c in "_-/" for c in key)
    if not plain:
        return f"{path}[{_quote(key)}]"
    return f"{path}.{key}" if path else key


def _quote(key: str) -> str:
    # A lone surrogate cannot be printed or encoded: show it escaped.
    text = json.dumps(key, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= 60 else text[:57] + "..."
