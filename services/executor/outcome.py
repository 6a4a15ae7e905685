"""How a job that has ended becomes its terminal event: one pure rule for every executor.

What decides it, in order: a ``cancel`` mark (``timeout`` fails, any other cancels), no
exit code (the process was killed before it could record one), a non-zero exit code (its
``reason`` file, or the code described), a log that said ``status=failed``. Otherwise the
job succeeded as far as its process goes; the executor then fetches its declared outputs
and sends ``JobSucceeded``, or ``JobFailed`` when an output is missing."""

from __future__ import annotations

from typing import Any

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import JobCanceled, JobFailed, JobReady
from jobmesh.common.progress import LogScan

from . import rundir


def ids(job: JobReady) -> dict[str, Any]:
    """The fields that name one attempt in every job event."""
    return AttemptKey.of(job).ids()


def ended(job: JobReady, code: int | None, cancel: str | None, told: str, s: LogScan,
          outputs: dict[str, Any], now: float, host: str | None = None) -> Any | None:
    """The terminal event of ``job`` whose process has ended with exit ``code`` (None: no
    exit code was recorded), ``cancel`` the run directory's cancel mark (None: none),
    ``told`` its reason file; None when the process succeeded (outputs come next)."""
    i = ids(job)
    common: dict[str, Any] = dict(progress=s.progress, msg=s.msg, outputs=outputs or None,
                                  time=now)
    if cancel == "timeout":
        return JobFailed(**i, exit_code=code, reason="timeout", **common)
    if cancel is not None:
        return JobCanceled(**i, exit_code=code, reason=cancel or "canceled", time=now)
    if code is None:
        where = f" on {host}" if host else ""
        return JobFailed(**i, reason=f"the job's process{where} was killed before it could "
                         "record an exit code", **common)
    if code != 0:
        return JobFailed(**i, exit_code=code, reason=told or rundir.describe_exit(code),
                         **common)
    if s.status == "failed":
        return JobFailed(**i, exit_code=0, reason="the job reported status=failed", **common)
    return None
