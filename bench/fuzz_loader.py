"""Fuzz the workflow loader: every input must end as a Loaded workflow or a clean
SpecError (exit 2 in the CLI, a 4xx over REST: the gateway calls the same loader),
within a time and memory bound. Seeded, so a crash is reproducible by its case number.

Usage: .venv/bin/python bench/fuzz_loader.py [--cases 20000] [--seed 14] [--show 5]

Cases are random mutations of valid workflows: values replaced by hostile ones (huge
numbers, control characters, long and deep values, placeholders, ranges), keys added and
removed, YAML tags (``!!int a``, ``!!timestamp``, ``!!set``, ``!!python/object``...),
anchors and aliases (bombs, recursion), deep nesting, byte flips and truncation. A
workflow that loads is also sent through JSON (as it travels on the bus) and one
scheduler decision. A crash is any other exception, or a SpecError that only says
jobmesh could not check the workflow (the loader's safety net). Prints a summary and
exits 1 on a crash or a case over the time bound.
"""

from __future__ import annotations

import argparse
import copy
import random
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jobmesh.common.loader import UNEXPECTED, SpecError, parse_workflow  # noqa: E402
from jobmesh.common.messages import WorkflowSubmitted  # noqa: E402
from jobmesh.common.spec import Workflow  # noqa: E402
from jobmesh.scheduler.core import SchedulerCore  # noqa: E402

TIME_BOUND = 5.0  # seconds per case (a typical case takes about a millisecond)

BASES: list[dict[str, Any]] = [
    {"name": "fz", "workflow": {"nodes": {"a": {"exec": "echo {x}"}, "b": {
        "exec": "echo {parents.a.outputs.v}"}}, "dependencies": ["a,b"]},
     "variables": {"x": "1"}},
    {"workflow": {"nodes": {"t": {"exec": "run {gpu} {ep}", "foreach": {
        "gpu": ["a100", "v100"], "ep": "e[1-3]"}, "pool": "p-{gpu}"},
        "s": {"exec": "true", "foreach": "{parents.p.outputs.list}"}, "p": {}},
        "dependencies": ["p,t", "p,s"]}},
    {"defaults": {"kind": "slurm", "host": "h", "partition": "debug"},
     "workflow": {"nodes": {"n[1-3]": {"time": "10", "mem": "1G"},
                            "z": {"kind": "ssh", "port": 22, "max_sessions": 4}},
                  "dependencies": ["n[1-3],z"]}},
    {"workflow": {"nodes": {"w": {"exec": "true", "when": "parents.v.outputs.ok == true",
                                  "repeat": {"until": "outputs.loss < 0.1", "max": 3,
                                             "delay": "1s"}, "retries": 2, "timeout": "5m",
                                  "env": {"A": "1"}, "args": ["--x", 3]},
                            "v": {"exec": "true"}}, "dependencies": ["v,w"]},
     "colors": {"status": {"done": "#CCFFCC"}}},
    {"workflow": {"nodes": {"a": {"name": "a", "kind": "local", "label": "{name}\n{x}",
                                  "instance": "a", "script": "a.sh", "exec": None}},
                  "dependencies": {"a-b": {"source": "a", "destination": "b"}}}},
]

HOSTILE: list[Any] = [
    10 ** 100, -1, 0, 2 ** 63, 1e308, float("inf"), float("nan"), True, False, None, "",
    "x" * 10_000, "a\nb", "a\x00b", "\x1b[31m", "\u2028", "²", "é" * 300, "../../etc/passwd",
    "/etc/passwd", "~/x", "$HOME/x", "{parents.a.outputs.v}", "{x}", "{x:raw}", "{}",
    "{parents.zz.outputs.k}", "n[0-99999999]", "n[5-1]", "a[1-2][3]", "a,,b", "bad.pool>",
    "$(touch PWN)", "`touch PWN`", "'; touch PWN; '", [], {}, [[[[[]]]]], {"a": {"b": {}}},
    ["x"] * 1000, {"k" * 300: 1}, "1s", "-5s", "99999999999d", "product", "zip", "cross",
    "local", "ssh", "slurm", "lsf", "wsl", "nope", b"bytes".decode(), "*", "&", "!", "%",
    "cat <<EOF\n{x}\nEOF", "cat <<'E'\n{x}{x}\nE", "echo '{x}' \"{x}\" $'{x}' `echo {x}` # {x}",
    "echo \"$(printf %s '{parents.a.outputs.v}')\" {x:raw}", "echo {x}\\", "echo '{x}",
    "echo $'{x}\\'", "<<", "echo {item} {gpu}", {"x": "{x}"}, ["{x}", "$(x)"],
]
TAGS = ["!!int", "!!float", "!!timestamp", "!!binary", "!!set", "!!omap", "!!pairs",
        "!!str", "!!null", "!!bool", "!!seq", "!!map", "!!python/object:os.system",
        "!!python/name:os.system", "!custom", "!"]
KEYS = ["exec", "script", "pool", "kind", "host", "user", "venv", "args", "env", "label",
        "timeout", "retries", "retry_delay", "foreach", "foreach_mode", "when", "repeat",
        "group", "after", "inputs", "outputs", "parameters", "partition", "time", "mem",
        "port", "max_sessions", "python", "name", "allow_failure", "slurm_dependencies",
        "sbatch", "queue", "cache", "nodes", "dependencies", "workflow", "variables"]


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        data = data[p]
    return data


def _hostile(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(HOSTILE))  # never the shared object: no cycles


def _mutate_data(rng: random.Random, data: Any) -> Any:
    for _ in range(rng.randint(1, 4)):
        paths = _paths(data)
        path = rng.choice(paths)
        op = rng.random()
        if not path:
            continue
        parent = _get(data, path[:-1])
        if op < 0.5:
            parent[path[-1]] = _hostile(rng)
        elif op < 0.7 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            target = _get(data, path)
            if isinstance(target, dict):
                target[rng.choice(KEYS)] = _hostile(rng)
            elif isinstance(target, list):
                target.append(_hostile(rng))
    return data


def _bomb(rng: random.Random) -> str:
    width, depth = rng.randint(2, 10), rng.randint(3, 12)
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
    lines += ["workflow:", "  nodes:", f"    a: {{exec: 'true', parameters: {{x: *a{depth - 1}}}}}"]
    return "\n".join(lines) + "\n"


def _mutate_text(rng: random.Random, text: str) -> str:
    op = rng.random()
    if op < 0.25:  # a tag before a random scalar value
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        if ": " in lines[i]:
            k, v = lines[i].split(": ", 1)
            junk = rng.choice(["a", '""', "1", "2001-13-99", "@@", "[1]", "{a: 1}", v])
            lines[i] = f"{k}: {rng.choice(TAGS)} {junk}"
        return "\n".join(lines) + "\n"
    if op < 0.35:
        return _bomb(rng)
    if op < 0.4:
        return rng.choice(["x: &x [*x]\nworkflow: {nodes: {a: {}}}\n",
                           "d: &d {a: *d}\nworkflow: {nodes: {a: *d}}\n",
                           "workflow: &w {nodes: *w}\n"])
    if op < 0.5:
        depth = rng.choice([50, 500, 999, 1001, 5000])
        kind = rng.random()
        if kind < 0.5:
            nest = "[" * depth + "]" * depth
        else:
            nest = "".join(f"{' ' * i}k:\n" for i in range(min(depth, 800))) + " " * 800 + "v\n"
            return "workflow:\n  nodes:\n    a:\n      parameters:\n" + "\n".join(
                "        " + x for x in nest.splitlines()) + "\n"
        return f"workflow:\n  nodes:\n    a: {{parameters: {{x: {nest}}}}}\n"
    if op < 0.65:  # byte flips
        chars = list(text)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(chars))
            chars[i] = rng.choice(["\x00", "\t", "\n", ":", "-", "[", "{", "&", "*", "!",
                                   "'", '"', "\ufeff", "\x85", "#", "|", ">", "%", "@"])
        return "".join(chars)
    if op < 0.75:
        return text[:rng.randrange(len(text))]
    if op < 0.85:  # a duplicated block of lines
        lines = text.splitlines()
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i + 1] + lines[i:]) + "\n"
    return text.replace("nodes:", rng.choice(["nodes: !!set", "nodes: &n", "nodes: !!omap",
                                              "nodes:\n  <<: {a: {}}\n ", "nodes:"]), 1)


def make_case(seed: int, n: int) -> str:
    """Case ``n`` of run ``seed``: YAML text."""
    rng = random.Random(f"{seed}:{n}")
    data = yaml.safe_load(yaml.safe_dump(rng.choice(BASES)))
    if rng.random() < 0.6:
        data = _mutate_data(rng, data)
    try:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000)
    except (yaml.YAMLError, RecursionError):
        text = "workflow: {nodes: {a: {}}}\n"
    if rng.random() < 0.6:
        text = _mutate_text(rng, text)
    return text


def check(text: str, folder: Path) -> str | None:
    """None when the loader handled ``text`` cleanly, else what went wrong."""
    try:
        loaded = parse_workflow(text, "fuzz.yaml", base_dir=folder, stem="fuzz")
    except SpecError as exc:
        if UNEXPECTED in str(exc):
            return f"safety net: {exc}"
        if not exc.issues or any(not str(i).startswith("fuzz.yaml") for i in exc.issues):
            return f"an issue without the file name: {exc}"
        return None
    except Exception:  # noqa: BLE001 - that is the finding
        return traceback.format_exc(limit=6)
    try:  # what happens to a workflow that loads: it travels as JSON, the scheduler runs it
        wf = Workflow.model_validate_json(loaded.workflow.model_dump_json())
        core = SchedulerCore()
        core.apply(WorkflowSubmitted(workflow=wf.name, run="r", spec=wf, time=0.0))
        core.decide(1.0)
        if wf.name not in core.runs:
            return "the scheduler dropped a workflow the loader accepted"
    except Exception:  # noqa: BLE001
        return "after loading: " + traceback.format_exc(limit=6)
    return None


def run(seed: int, cases: int, start: int = 0) -> tuple[list[tuple[int, str]], float, float]:
    """(crashes as (case, what), slowest case in seconds, total seconds)."""
    crashes: list[tuple[int, str]] = []
    slowest = 0.0
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "a.sh").write_text("echo a\n")
        for n in range(start, start + cases):
            text = make_case(seed, n)
            t0 = time.perf_counter()
            problem = check(text, folder)
            took = time.perf_counter() - t0
            slowest = max(slowest, took)
            if took > TIME_BOUND:
                problem = (problem or "") + f" (took {took:.1f} s)"
            if problem:
                crashes.append((n, problem))
    return crashes, slowest, time.perf_counter() - began


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--show", type=int, default=5, help="crashes to print in full")
    p.add_argument("--memory", type=int, default=2048, help="address-space limit, MB")
    args = p.parse_args()
    limit = args.memory * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    crashes, slowest, total = run(args.seed, args.cases)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{args.cases} cases (seed {args.seed}): {len(crashes)} crashes; slowest case "
          f"{slowest * 1000:.0f} ms; {total:.1f} s in all; peak memory {peak} MB "
          f"(limit {args.memory} MB)")
    for n, what in crashes[:args.show]:
        print(f"--- case {n}:\n{make_case(args.seed, n)[:500]}\n{what[-1500:]}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
