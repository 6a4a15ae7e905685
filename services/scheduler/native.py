"""Native Slurm dependencies (opt-in ``slurm_dependencies: true``). Pure, like ``core.py``.

Normally a job waits in jobmesh until its parents succeed. With this option a Slurm job
whose unfinished parents are all Slurm jobs already queued on the same cluster is
released at once, with ``--dependency=afterok:<ids>`` (``afterany`` for a parent with
``allow_failure``) and ``--kill-on-invalid-dep=yes``, so the chain waits in Slurm's queue
and each step starts in the same scheduling cycle its parent ends in.

Only jobs that need nothing from their parents at submit time qualify: no parent outputs
in the command, no ``inputs:`` staged from the workflow folder, no ``when:``, ``foreach:``
or ``repeat:``. A parent that may still be retried (or repeat) does not chain, because
Slurm would kill the child after the first failed attempt. Anything that does not qualify
simply waits in jobmesh as usual.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from jobmesh.common.placeholders import parent_refs
from jobmesh.common.spec import JobSpec, will_retry
from jobmesh.common.states import JobState

if TYPE_CHECKING:
    from .flow import Job

OPTION = "slurm_dependencies"
_IN_QUEUE = (JobState.QUEUED, JobState.RUNNING)


def enabled(spec: JobSpec) -> bool:
    return spec.kind == "slurm" and spec.extras.get(OPTION) is True


def cluster(spec: JobSpec) -> tuple[Any, ...]:
    """Jobs with the same key go to the same Slurm controller."""
    x = spec.extras
    return (spec.host or "", spec.user or "", x.get("port"), x.get("slurm_conf"),
            x.get("batch_setup"))


def needs_parents(spec: JobSpec) -> bool:
    """Does the job need anything from its parents before it can be submitted?"""
    if spec.when is not None or spec.foreach is not None or spec.repeat is not None \
            or spec.group is not None or spec.inputs:
        return True
    texts = [spec.exec or "", spec.host or "", spec.user or "", *spec.args,
             *spec.env.values(), *(v for v in spec.extras.values() if isinstance(v, str))]
    return any(parent_refs(t) for t in texts if "{parents." in t)


# A Slurm job id, or an array element's (123_4): both work in --dependency=afterok:ID.
_ID = re.compile(r"[0-9]+(?:_[0-9]+)?")

def dependencies(job: Job, parents: list[Job], counts: list[bool]) -> tuple[str, ...]:
    """The ``--dependency`` terms that let ``job`` be submitted now, or () when it must
    wait in jobmesh. ``counts[i]``: parent i already ended in a way that lets job go on."""
    if not enabled(job.spec) or needs_parents(job.spec):
        return ()
    key = cluster(job.spec)
    terms: list[str] = []
    for parent, done in zip(parents, counts):
        if done:
            continue
        p = parent.spec
        if (p.kind != "slurm" or cluster(p) != key or parent.state not in _IN_QUEUE
                or not parent.native or not _ID.fullmatch(parent.native) or parent.retry_due
                or p.repeat is not None
                or will_retry(p, parent.attempt, parent.first_attempt)):
            return ()
        terms.append(f"{'afterany' if p.allow_failure else 'afterok'}:{parent.native}")
    return tuple(terms)
