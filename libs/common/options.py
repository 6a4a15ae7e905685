"""The node attributes each executor kind reads, listed once. The loader checks a node's
attributes against them: a name close to a known option (``partiton``) is an error that
suggests the right one, an option of another kind (``partition`` on a local node) is a
warning that it does nothing there. Other names are kept, as cloudmesh-cc keeps them, for
labels (``{owner}``), and ``extra:`` holds free values explicitly.

The executors' own tables (``slurm.OPTIONS``, ``lsf.OPTIONS``) must stay within these
sets; tests/unit/test_options.py checks that.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from .spec import BATCH_KINDS

# Reaching a host: the ssh transport, and the batch kinds through a login node.
HOST = frozenset({"port", "identity", "known_hosts", "max_sessions", "python", "workdir"})
BATCH = frozenset({"time", "nodes", "ntasks", "mem", "account", "batch_setup",
                   "squeue_interval", "workdir", "escalate", "array", "max_queued"})
BY_KIND: dict[str, frozenset[str]] = {
    "local": frozenset(),
    "ssh": HOST,
    "wsl": frozenset({"wsl_exe", "distribution", "python", "workdir"}),
    "slurm": HOST | BATCH | {"partition", "cpus_per_task", "gres", "qos", "sbatch",
                             "slurm_conf", "slurm_dependencies"},
    "lsf": HOST | BATCH | {"queue", "project", "bsub"},
}
ALL = frozenset().union(*BY_KIND.values())
# What cloudmesh-cc writes into its nodes and labels read; jobmesh keeps them quietly.
CLOUDMESH = frozenset({"label_format", "instance", "progress", "status", "created",
                       "modified", "number", "parent", "color", "fillcolor", "fontcolor",
                       "description", "comment", "extra"})


def owner(attr: str) -> list[str]:
    """The kinds that read ``attr``."""
    return [k for k, names in BY_KIND.items() if attr in names]


def check(kind: str, attrs: Iterable[str], fields: Iterable[str],
          used: str = "") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, warnings) as (attribute, message) for a node of ``kind`` whose own
    attributes are ``attrs``. ``fields`` are the spec's common fields (name, exec, ...),
    ``used`` the label templates, whose ``{names}`` keep an unknown attribute quiet."""
    common = set(fields)
    mine = BY_KIND.get(kind, frozenset())
    known = sorted(common | ALL | CLOUDMESH)
    errors: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    for attr in attrs:
        if attr in common or attr in mine or attr in CLOUDMESH:
            continue
        if attr in ALL:
            kinds = " and ".join(owner(attr))
            warnings.append((attr, f"'{attr}' is an option of kind {kinds}; this node is "
                             f"kind {kind}, so it does nothing here"))
            continue
        if "{" + attr in used:
            continue  # a value for the label
        close = difflib.get_close_matches(attr, known, n=1, cutoff=0.75)
        if close:
            errors.append((attr, f"unknown attribute '{attr}'; did you mean '{close[0]}'? "
                           "(free values go under 'extra:')"))
        else:
            warnings.append((attr, f"unknown attribute '{attr}' does nothing; it is kept "
                             "for labels (put free values under 'extra:')"))
    return errors, warnings


# Values of the batch kinds' own options: (attribute, problem) for the loader and the
# executors (a bad value is an error naming the field, never a traceback or a silent 30 s).
ESCALATABLE = ("mem", "time")


def escalation(value: object) -> dict[str, float]:
    """``escalate: {mem: 2, time: 1.5}`` -> factors; ValueError naming what is wrong."""
    if value in (None, "", {}):
        return {}
    if not isinstance(value, dict):
        raise ValueError("escalate must be a mapping such as {mem: 2, time: 2}")
    out: dict[str, float] = {}
    for key, factor in value.items():
        if key not in ESCALATABLE:
            raise ValueError(f"escalate: '{key}' cannot be escalated (use "
                             f"{' or '.join(ESCALATABLE)})")
        try:
            number = float(factor)
        except (TypeError, ValueError):
            raise ValueError(f"escalate: {key} factor {factor!r} is not a number") from None
        if isinstance(factor, bool) or not 1 <= number <= 100:
            raise ValueError(f"escalate: {key} factor {factor!r} must be between 1 and 100")
        out[str(key)] = number
    return out


# Slurm's --time (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or no limit) and --mem (a whole
# size with an optional K/M/G/T unit, MB by default), as sbatch takes them.
SLURM_TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(:\d{1,2}){0,2})$"
                        r"|^(UNLIMITED|INFINITE)$", re.IGNORECASE)
SLURM_MEM = re.compile(r"^\d+(\.\d+)?\s*[KMGT]?B?$", re.IGNORECASE)


def _slurm_values(attrs: dict[str, object]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for attr, pattern, example in (("time", SLURM_TIME, "30, 2:00:00 or 1-00:00"),
                                   ("mem", SLURM_MEM, "500M or 4G")):
        value = attrs.get(attr)
        if value is None:
            continue
        text = str(value).strip()
        if "{" in text:
            continue  # a placeholder: checked once it is filled, at submission
        if isinstance(value, bool) or not pattern.match(text):
            what = "a Slurm time limit" if attr == "time" else "a Slurm memory size"
            problems.append((attr, f"{attr} {value!r} is not {what} (e.g. {example})"))
    return problems


def check_values(kind: str, attrs: dict[str, object]) -> list[tuple[str, str]]:
    """Problems with the values of a batch node's ``squeue_interval``, ``array``,
    ``max_queued`` and ``escalate``, and a Slurm node's ``time`` and ``mem`` (other kinds
    have none to check here). The loader reports them at validate time, the batch
    executor again at submission."""
    if kind not in BATCH_KINDS:
        return []
    problems: list[tuple[str, str]] = _slurm_values(attrs) if kind == "slurm" else []
    interval = attrs.get("squeue_interval")
    if interval is not None:
        try:
            seconds = float(str(interval))
        except ValueError:
            seconds = -1.0
        if isinstance(interval, bool) or not 0 <= seconds <= 86400:
            problems.append(("squeue_interval", f"squeue_interval {interval!r} must be a "
                             "number of seconds from 0 to 86400 (default 30)"))
    flag = attrs.get("array")
    if flag is not None and not isinstance(flag, bool) and str(flag) not in ("true", "false"):
        if not str(flag).isdigit() or int(str(flag)) < 1:
            problems.append(("array", f"array {flag!r} must be true, false or the most "
                             "elements to run at once (a whole number above 0)"))
    cap = attrs.get("max_queued")
    if cap is not None and (isinstance(cap, bool) or not str(cap).isdigit() or int(str(cap)) < 1):
        problems.append(("max_queued", f"max_queued {cap!r} must be a whole number above 0 "
                         "(the most jobs of the cluster queued or running at once)"))
    try:
        escalation(attrs.get("escalate"))
    except ValueError as exc:
        problems.append(("escalate", str(exc)))
    return problems
