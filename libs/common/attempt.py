"""One attempt of one job: its key, and every NATS message id and registry key built from
it, written here and nowhere else.

``AttemptKey`` is a NamedTuple, so it equals and hashes like the plain
``(workflow, run, job, attempt)`` tuple; any message with those four fields gives one
(``AttemptKey.of(msg)``).

    JobReady (stream JOBS)          <wf>.<run>.<job>.<attempt>
    a job event (stream EVENTS)     <wf>.<run>.<job>.<attempt>.<what>   (what: the event's
                                    type, or ``ready``, ``cached``, ``expanded``)
    a submission (stream EVENTS)    <wf>.<run>
    executions registry (KV)        <pool>.<wf>.<job as a token>.<attempt>

Workflow names and run ids hold no dots; job names may, so ``parse`` takes the workflow
and run from the front and the attempt from the back.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import subjects


class AttemptKey(NamedTuple):
    workflow: str
    run: str
    job: str
    attempt: int

    @classmethod
    def of(cls, msg: Any) -> AttemptKey:
        """The key of anything that has workflow, run, job and attempt (a JobReady, a job
        event, a CancelJob, a scheduler instruction)."""
        return cls(msg.workflow, msg.run, msg.job, msg.attempt)

    @classmethod
    def parse(cls, text: str) -> AttemptKey:
        """The key a ``msg_id`` (``<wf>.<run>.<job>.<attempt>``) names; ValueError for
        anything else."""
        head, dot, attempt = text.rpartition(".")
        parts = head.split(".", 2)
        if not dot or len(parts) != 3 or not all(parts) or not attempt.isdigit() \
                or int(attempt) < 1:
            raise ValueError(f"not an attempt key: {text!r} (expected "
                             "<workflow>.<run>.<job>.<attempt>)")
        return cls(parts[0], parts[1], parts[2], int(attempt))

    def format(self) -> str:
        """``<wf>.<run>.<job>.<attempt>``: the attempt's text form, also its JobReady's
        message id."""
        return f"{self.workflow}.{self.run}.{self.job}.{self.attempt}"

    @property
    def msg_id(self) -> str:
        """The Nats-Msg-Id of this attempt's JobReady."""
        return self.format()

    def event_id(self, what: str) -> str:
        """The Nats-Msg-Id of this attempt's event ``what`` (its type, or ``ready``,
        ``cached``, ``expanded``): a repeat of the same event is deduplicated."""
        return f"{self.format()}.{what}"

    def registry_key(self, pool: str) -> str:
        """This attempt's key in the KV bucket ``executions`` (what ``pool`` launched)."""
        return f"{subjects.execution_key(pool, self.workflow, self.job)}.{self.attempt}"

    def ids(self) -> dict[str, Any]:
        """The fields that name this attempt in every job event."""
        return {"workflow": self.workflow, "run": self.run, "job": self.job,
                "attempt": self.attempt}


def submission_id(workflow: str, run: str) -> str:
    """The Nats-Msg-Id of a run's submission."""
    return f"{workflow}.{run}"
