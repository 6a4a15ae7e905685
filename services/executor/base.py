"""The executor contract. One contract test suite runs against every executor."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

from jobmesh.common.messages import JobReady

# emit(event) publishes one job event; the service supplies it.
Emit = Callable[[Any], Awaitable[None]]


class InvalidJobError(Exception):
    """Permanent: this job can never run here (bad spec, missing script). The job fails
    and is not retried by the bus."""


class SubmitError(Exception):
    """Transient: the backend could not take the job now (host down, queue full). The
    message is not acked and comes back later."""


def fail_waiting(waiting: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """A batched launch failed: every submission still waiting on it fails with ``exc``
    (an interruption, a cancel or the executor stopping, as "the executor is stopping")."""
    for fut in waiting:
        if not fut.done():
            fut.set_exception(exc if isinstance(exc, Exception) else
                              SubmitError("the executor is stopping"))


class Executor(ABC):
    """Runs jobs of one kind and reports what happens to them through ``emit``."""

    kind: ClassVar[str]

    @abstractmethod
    async def start(self) -> None:
        """Open connections and start pollers. Idempotent."""

    @abstractmethod
    async def submit(self, job: JobReady) -> str:
        """Launch the job. A normal return means the backend accepted it and returns its
        native id (a pid, host:pid, a Slurm id); everything after that, including its
        failure, arrives as events, with exactly one terminal event per attempt.

        If the job's run directory already exists (a redelivered message), the job is
        attached to, not launched again.

        :raises InvalidJobError: permanent; nothing was launched.
        :raises SubmitError: transient; nothing was launched, try again later.
        """

    @abstractmethod
    async def attach(self, job: JobReady, native_id: str) -> None:
        """Resume watching a job launched earlier (by this or a previous executor)."""

    @abstractmethod
    async def cancel(self, job: JobReady, reason: str) -> None:
        """Request cancellation. A normal return only means the request was passed on:
        the job may still finish on its own first, so wait for any terminal event."""

    @abstractmethod
    async def close(self) -> None:
        """Stop watching. Never kills jobs: they run on, and ``attach`` finds them."""

    def active(self) -> int:
        """How many jobs this executor watches now."""
        return 0
