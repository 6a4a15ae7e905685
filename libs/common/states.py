"""Job and workflow states: an enum, a rank and one table of moves.

An event whose target rank is not above the job's current rank is stale or a duplicate
and is dropped, so applying an event twice changes nothing.
"""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    PENDING = "PENDING"
    READY = "READY"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return RANK[self]

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


RANK = {
    JobState.PENDING: 0,
    JobState.READY: 1,
    JobState.QUEUED: 2,
    JobState.RUNNING: 3,
    JobState.SUCCEEDED: 4,
    JobState.FAILED: 4,
    JobState.CANCELED: 4,
    JobState.SKIPPED: 4,
}
TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.SKIPPED})

# The one table of moves: every step to a higher rank. Events can arrive out of order
# (an executor's `started` may land before the scheduler's `ready`), so any forward step
# is taken and anything else is stale.
MOVES: frozenset[tuple[JobState, JobState]] = frozenset(
    (a, b) for a in JobState for b in JobState if RANK[b] > RANK[a]
)


def should_apply(old: JobState, new: JobState) -> bool:
    """True when moving old -> new is a real step forward; False for stale duplicates."""
    return (old, new) in MOVES


class WorkflowState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in (WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELED)


# cloudmesh-cc status words, as progress lines and colour tables use them.
CLOUDMESH_STATUS = {
    JobState.PENDING: "ready",
    JobState.READY: "ready",
    JobState.QUEUED: "submitted",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "done",
    JobState.FAILED: "failed",
    JobState.CANCELED: "canceled",
    JobState.SKIPPED: "skipped",
}
