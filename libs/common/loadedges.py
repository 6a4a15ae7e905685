"""The loader's reading of ``dependencies:``: chains (``a,b,c``, ranges) and cloudmesh-cc's
saved ``source/destination`` map into edges, and the cycle check. ``EdgeBuilder`` is a
mixin of the loader's ``_Builder`` (split from loader.py)."""

from __future__ import annotations

from typing import Any

from .loadchecks import single_chains
from .loadissues import SpecIssue
from .loadnodes import NodeBuilder
from .names import InvalidName, check_job
from .ranges import expand
from .spec import JobSpec


class EdgeBuilder(NodeBuilder):
    def _edges(self, deps: Any, raw: dict[str, tuple[str, dict[str, Any]]]
               ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], int | None]]:
        edges: list[tuple[str, str]] = []
        lines: dict[tuple[str, str], int | None] = {}
        if deps is None:
            return edges, lines
        if isinstance(deps, str):
            deps = [deps]
        keys: list[str] = []
        if isinstance(deps, dict):  # cloudmesh-cc's saved form: name -> {source, destination}
            deps, keys = self._edge_map(deps)
        if not isinstance(deps, list):
            self.err("'dependencies:' must be a list of chains such as 'a,b,c'",
                     "workflow", "dependencies")
            return edges, lines
        sizes: list[int] = []
        for i, chain in enumerate(deps):
            line = self.lines.get("workflow", "dependencies", keys[i] if keys else str(i))
            if isinstance(chain, list):
                chain = ",".join(str(x) for x in chain)
            if not isinstance(chain, str):
                self.issues.append(SpecIssue(self.file, line, f"dependency {chain!r} must be a "
                                             "comma-separated chain such as 'a,b,c'",
                                             field="dependencies"))
                continue
            try:
                names = expand(chain, self._name_budget(0))
            except ValueError as exc:
                self.issues.append(SpecIssue(self.file, line, str(exc), field="dependencies"))
                continue
            sizes.append(len(names))
            for n in names:
                if n not in raw:
                    try:
                        check_job(n)
                    except InvalidName as exc:
                        self.issues.append(SpecIssue(self.file, line, str(exc), node=n,
                                                     field="dependencies"))
                        continue
                    raw[n] = (n, {})
                    if n in ("start", "end"):  # cloudmesh-cc's idiom: nothing to run
                        continue
                    self.warnings.append(SpecIssue(
                        self.file, line, "appears only in dependencies; it is created "
                        "with default attributes", node=n))
            for a, b in zip(names, names[1:]):
                if (a, b) not in lines:
                    edges.append((a, b))
                    lines[(a, b)] = line
        single = None if keys else single_chains(deps, sizes)
        if single:
            self.warnings.append(SpecIssue(self.file, self.lines.get(
                "workflow", "dependencies"), single, field="dependencies"))
        return edges, lines

    def _edge_map(self, deps: dict[Any, Any]) -> tuple[list[Any], list[str]]:
        """cloudmesh-cc saves edges as ``a-b: {source: a, destination: b, name: a-b}`` (and
        none as ``{}``): each becomes the chain 'a,b'."""
        chains: list[Any] = []
        keys: list[str] = []
        for key, edge in deps.items():
            src = edge.get("source") if isinstance(edge, dict) else None
            dst = edge.get("destination") if isinstance(edge, dict) else None
            if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
                self.err(f"dependency '{key}' needs 'source:' and 'destination:' node names "
                         "(cloudmesh-cc's saved form), or write chains: "
                         "dependencies: ['a,b']", "workflow", "dependencies", str(key),
                         field="dependencies")
                continue
            chains.append([src, dst])
            keys.append(str(key))
        return chains, keys
    def _check_cycles(self, jobs: dict[str, JobSpec], edges: list[tuple[str, str]],
                      lines: dict[tuple[str, str], int | None]) -> None:
        children: dict[str, list[str]] = {n: [] for n in jobs}
        for a, b in edges:
            children[a].append(b)
        WHITE, GREY, BLACK = 0, 1, 2
        color = dict.fromkeys(jobs, WHITE)
        for root in jobs:
            if color[root] != WHITE:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            trail: list[str] = [root]
            color[root] = GREY
            while stack:
                node, i = stack[-1]
                if i < len(children[node]):
                    stack[-1] = (node, i + 1)
                    child = children[node][i]
                    if color[child] == GREY:
                        cycle = trail[trail.index(child):] + [child]
                        self.issues.append(SpecIssue(
                            self.file, lines.get((node, child)),
                            "dependency cycle: " + " -> ".join(cycle) +
                            "; remove one of these edges", field="dependencies"))
                        return
                    if color[child] == WHITE:
                        color[child] = GREY
                        stack.append((child, 0))
                        trail.append(child)
                else:
                    color[node] = BLACK
                    stack.pop()
                    trail.pop()
