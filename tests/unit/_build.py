"""Small builders shared by the unit tests (no I/O)."""

from __future__ import annotations

from typing import Any

from jobmesh.common.spec import JobSpec, Workflow


def workflow(edges: list[tuple[str, str]] = (), names: list[str] = (), name: str = "w",
             variables: dict[str, Any] | None = None, **specs: dict[str, Any]) -> Workflow:
    """A Workflow whose jobs are `names`, then every job named in `edges`, then `specs`'
    keys, in that order. `specs` gives extra JobSpec fields per job."""
    order: list[str] = list(names)
    for a, b in edges:
        for n in (a, b):
            if n not in order:
                order.append(n)
    for n in specs:
        if n not in order:
            order.append(n)
    jobs = {n: JobSpec(name=n, **specs.get(n, {})) for n in order}
    return Workflow(name=name, jobs=jobs, edges=list(edges), variables=variables or {})
