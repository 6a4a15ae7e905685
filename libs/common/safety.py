"""Values that reach a batch directive or a command line are one line of plain text.

``partition: "x\\ntouch PWN"`` would otherwise become a line of ``batch.sh`` of its own.
The loader refuses such values when a workflow is validated, the scheduler again once
placeholders are filled, and the batch executors a last time before writing a script.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Node attributes that become a batch directive, part of a command line or a path
# (Slurm, LSF, SSH, WSL, the job's python); exec, args and env are quoted instead.
LINE_FIELDS = ("pool", "host", "user", "venv", "script", "partition", "time", "nodes",
               "ntasks", "cpus_per_task", "mem", "gres", "account", "qos", "sbatch",
               "queue", "project", "bsub", "slurm_conf", "batch_setup", "python", "identity",
               "workdir", "distribution", "port", "max_sessions", "known_hosts", "wsl_exe")
# C0 controls except TAB, DEL, and NEL (U+0085, a line break to some tools).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


class UnsafeValue(ValueError):
    """A value holding a line break or another control character."""


def check_line(value: Any, what: str) -> Any:
    """``value`` unchanged when it is one line without control characters; lists and
    mappings are checked item by item. Raises UnsafeValue naming ``what``."""
    if isinstance(value, str):
        m = _CONTROL.search(value)
        if m:
            raise UnsafeValue(f"{what} holds the control character {m.group()!r} (a line "
                              "break or similar); it must be one line of plain text")
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_line(item, what)
    elif isinstance(value, Mapping):
        for k, item in value.items():
            check_line(str(k), what)
            check_line(item, what)
    return value


def check_fields(values: Mapping[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Every text value of a node's attributes (e.g. its extras) is one line."""
    for key, value in values.items():
        if key not in skip:
            check_line(value, f"'{key}'")
