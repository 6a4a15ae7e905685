"""Read a workflow's YAML once, within bounds, and keep the line of every key.

A hostile file must not take the service down: aliases (``*name``) are counted as the
values they stand for (a "billion laughs" file is refused before anything is built),
every node is visited once, and a tag whose value cannot be read (``!!int a``) is an
error naming its line, not a crash.
"""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's safe loader when PyYAML has it: ten times faster on big workflows.
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_CHARS = 20_000_000       # a 10,000-job workflow is about 1 MB
MAX_VALUES = 1_000_000       # values once aliases are expanded (10,000 jobs: ~100,000)
MAX_DEPTH = 64               # nesting of mappings and lists (JSON on the bus allows more)


class YamlProblem(Exception):
    """The text cannot be read as a workflow; ``line`` is 1-based or None."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _key(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "?"


class Lines:
    """Line numbers (1-based) of the keys in the YAML document, by key path. Each node is
    walked once: a node reached again through an alias keeps its first path."""

    def __init__(self, root: yaml.Node | None = None):
        self.lines: dict[tuple[str, ...], int] = {}
        self.duplicates: list[tuple[tuple[str, ...], int]] = []
        self.nodes: list[yaml.Node] = []
        self.shared = False  # a node is reached twice: aliases (or a recursive one)
        self.depth = 0       # how deep the values nest, aliases not followed
        if root is None:
            return
        seen: set[int] = set()
        stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
        while stack:
            node, path = stack.pop()
            if id(node) in seen:
                self.shared = True
                continue
            seen.add(id(node))
            self.nodes.append(node)
            self.depth = max(self.depth, len(path) + 1)
            todo: list[tuple[yaml.Node, tuple[str, ...]]] = []
            if isinstance(node, yaml.MappingNode):
                keys: set[str] = set()
                for k, v in node.value:
                    key = _key(k)
                    if key in keys:  # YAML keeps the last silently; a lost node is worse
                        self.duplicates.append((path + (key,), k.start_mark.line + 1))
                    keys.add(key)
                    self.lines[path + (key,)] = k.start_mark.line + 1
                    todo += [(k, path + (key, "<key>")), (v, path + (key,))]
            elif isinstance(node, yaml.SequenceNode):
                for i, v in enumerate(node.value):
                    self.lines.setdefault(path + (str(i),), v.start_mark.line + 1)
                    todo.append((v, path + (str(i),)))
            stack.extend(reversed(todo))

    def get(self, *path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def expanded_size(root: yaml.Node) -> tuple[int, int]:
    """How many values the document holds once its aliases are expanded (each node
    counted once per place it appears), and how deep it nests. Raises YamlProblem for a
    recursive alias."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        nid = id(node)
        if closing:
            open_.discard(nid)
            kids = _children(node)
            size[nid] = min(1 + sum(size[id(k)] for k in kids), MAX_VALUES + 1)
            height[nid] = 1 + max((height[id(k)] for k in kids), default=0)
            continue
        if nid in size:
            continue
        if nid in open_:
            raise YamlProblem(node.start_mark.line + 1, "an alias refers to a value that "
                              "holds it (a recursive alias); write the value out instead")
        open_.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    return size[id(root)], height[id(root)]


def value_problem(value: Any) -> str | None:
    """Why a value given from outside the file (``-v``, REST ``variables``) cannot be a
    variable, or None: the same bounds as the file's values, and plain JSON types."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > MAX_VALUES:
            return f"nests deeper than {MAX_DEPTH} levels or holds too many values"
        if isinstance(item, float) and (item != item or item in (float("inf"), -float("inf"))):
            return "holds a number that is not finite"
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return "holds a mapping whose keys are not text"
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            return f"holds a {type(item).__name__}, not text, a number, a list or a mapping"
    return None


def _bad_tag(nodes: list[yaml.Node]) -> tuple[int | None, str]:
    """The first scalar whose tag cannot be constructed: (line, tag)."""
    probe = yaml.SafeLoader("")
    for node in nodes:
        if isinstance(node, yaml.ScalarNode) and node.tag.startswith("tag:yaml.org,2002:"):
            try:
                probe.construct_object(node)
            except Exception:  # noqa: BLE001 - any failure is this value's
                return node.start_mark.line + 1, "!!" + node.tag.rsplit(":", 1)[-1]
    return None, "?"


def read_yaml(text: str) -> tuple[Any, Lines]:
    """The document's data and the lines of its keys. Raises YamlProblem."""
    if len(text) > MAX_CHARS:
        raise YamlProblem(None, f"the file has {len(text):,} characters; jobmesh reads "
                          f"workflows of at most {MAX_CHARS:,}")
    loader = FAST_LOADER(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _syntax(exc) from None
        except RecursionError:
            raise YamlProblem(None, "the YAML is nested too deeply") from None
        if root is None:
            return None, Lines()
        lines = Lines(root)
        values, depth = expanded_size(root) if lines.shared else (len(lines.nodes),
                                                                  lines.depth)
        if values > MAX_VALUES:
            raise YamlProblem(None, f"aliases (*name) make this file hold more than "
                              f"{MAX_VALUES:,} values; write the values out or use fewer "
                              "aliases" if lines.shared else f"the file holds more than "
                              f"{MAX_VALUES:,} values")
        if depth > MAX_DEPTH:
            raise YamlProblem(None, f"values nest {depth} levels deep; jobmesh reads at "
                              f"most {MAX_DEPTH}")
        binary = next((n for n in lines.nodes if n.tag == "tag:yaml.org,2002:binary"), None)
        if binary is not None:  # bytes travel nowhere (JSON on the bus is text)
            raise YamlProblem(binary.start_mark.line + 1, "a !!binary value cannot be used; "
                              "write the value as text")
        try:
            return loader.construct_document(root), lines
        except yaml.YAMLError as exc:
            raise _syntax(exc) from None
        except RecursionError:
            raise YamlProblem(None, "the YAML is nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 - a tagged value PyYAML cannot convert
            line, tag = _bad_tag(lines.nodes)
            raise YamlProblem(line, f"a value tagged {tag} cannot be read "
                              f"({type(exc).__name__}: {exc}); fix the value or remove "
                              "the tag") from None
    finally:
        loader.dispose()


def _syntax(exc: yaml.YAMLError) -> YamlProblem:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return YamlProblem(line, f"YAML syntax error: {problem}")
