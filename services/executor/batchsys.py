"""The hooks a batch system (Slurm, LSF) supplies: build its commands and parse their
output, with no I/O (as in psij-python). ``batch.py`` runs them; ``slurm.py`` and
``lsf.py`` implement them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from jobmesh.common.messages import JobReady

# What a batch system's state means for jobmesh: queued, running, or an ending with a reason.
QUEUED, RUNNING, DONE, FAILED, CANCELED = "queued", "running", "done", "failed", "canceled"


class BatchSystem(ABC):
    """Pure hooks: build commands, parse outputs. No I/O."""

    name: str
    directive: str  # "#SBATCH" or "#BSUB"

    @abstractmethod
    def header(self, job: JobReady, rdir: str, name: str) -> list[str]:
        """Directive lines from the node's attributes, ending with name and output."""

    @abstractmethod
    def submit(self, script: str) -> str:
        """The command that submits the script and prints the job id."""

    @abstractmethod
    def parse_submit(self, out: str) -> str:
        """The job id from the submit command's output; ValueError when there is none."""

    @abstractmethod
    def status(self, ids: list[str]) -> str:
        """One command that reports every given job."""

    @abstractmethod
    def parse_status(self, out: str) -> dict[str, tuple[str, str | None]]:
        """id -> (native state, reason) for the jobs the output lists."""

    @abstractmethod
    def meaning(self, state: str) -> tuple[str, str | None]:
        """(QUEUED | RUNNING | DONE | FAILED | CANCELED, reason) for a native state."""

    @abstractmethod
    def find(self, name: str) -> str:
        """A command printing the ids of jobs with this name."""

    @abstractmethod
    def cancel(self, ids: list[str]) -> str:
        """The command that cancels jobs."""

    def accounting(self, ids: list[str]) -> str | None:
        """A command for jobs that left the queue (e.g. sacct), or None."""
        return None

    def parse_accounting(self, out: str) -> dict[str, tuple[str, str | None]]:
        return {}

    # Job arrays (array.py) and escalation on retry: a system with ``arrays = True``
    # supplies index_var, array_header, array_submit, element_id, find_array, max_array.
    arrays = False
    index_var = ""
    first_index = 0
    element_format = "%s_%s"  # printf: array id, index -> an element's id
    ends: dict[str, str] = {}  # native end states -> the resource they escalate
    requeueable: frozenset[str] = frozenset()  # end states a requeue may follow

    def array_header(self, shared: list[str], name: str, group: str) -> list[str]:
        raise NotImplementedError

    def array_submit(self, script: str, name: str, spec: str,
                     limit: int | None) -> str:
        raise NotImplementedError

    def element_id(self, array_id: str, index: int) -> str:
        raise NotImplementedError

    def find_array(self, name_expr: str) -> str:
        return "false"

    def max_array(self) -> str:
        return "true"

    def escalate(self, extras: dict[str, Any], timeout: float | None, ended: list[str],
                 factors: dict[str, float]) -> dict[str, str]:
        return {}
