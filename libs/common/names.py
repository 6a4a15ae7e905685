"""Names that end up in NATS subjects, KV keys, paths and shell commands.

Workflow names are plain tokens. Job names may also hold dots (cloudmesh-cc names such
as ``fetch.sh``), and are encoded before they go into a subject.
"""

from __future__ import annotations

import re

WORKFLOW_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# '.' is allowed in job names but never as the first character and never as '..'.
JOB_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
POOL_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RUN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class InvalidName(ValueError):
    """A name that would be unsafe in a subject, key, path or command."""


def check_workflow(name: str) -> str:
    if not isinstance(name, str) or not WORKFLOW_RE.match(name):
        raise InvalidName(
            f"invalid workflow name {name!r}: use 1-64 letters, digits, '-' or '_'"
        )
    return name


def check_job(name: str) -> str:
    if not isinstance(name, str) or not JOB_RE.match(name) or ".." in name:
        raise InvalidName(
            f"invalid job name {name!r}: use letters, digits, '-', '_' and '.' "
            "(not first, no '..'), at most 128 characters"
        )
    return name


def check_pool(name: str) -> str:
    if not isinstance(name, str) or not POOL_RE.match(name):
        raise InvalidName(f"invalid pool name {name!r}: use letters, digits, '-' or '_'")
    return name


def check_run(run: str) -> str:
    if not isinstance(run, str) or not RUN_RE.match(run):
        raise InvalidName(f"invalid run id {run!r}: use 1-64 letters, digits, '-' or '_' "
                          "(e.g. 20261203T230512-3fa20c1d)")
    return run


def token(name: str) -> str:
    """Encode a checked job name as one subject token ('.' is a separator there)."""
    return name.replace(".", "=")


def untoken(tok: str) -> str:
    return tok.replace("=", ".")
