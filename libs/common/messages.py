"""Every message on the bus is one of these typed models (one ``type`` discriminator).

Wire formats grow by addition: new fields are optional, readers ignore what they do not
know (``extra="ignore"``). Times are epoch seconds set by whoever publishes the message.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    TypeAdapter,
    field_serializer,
)

from .attempt import AttemptKey
from .spec import JobSpec, Workflow
from .states import JobState, WorkflowState


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _compact(model: BaseModel, info: FieldSerializationInfo) -> Any:
    """Specs travel without their default values (a 10,000-job sweep is ~3x smaller);
    the reader fills the defaults back in."""
    return model.model_dump(mode=info.mode, exclude_defaults=True)


# -- workflow commands: jobmesh.workflows.<wf> (stream EVENTS) -----------------------------

class WorkflowSubmitted(Wire):
    type: Literal["workflow_submitted"] = "workflow_submitted"
    workflow: str
    run: str
    spec: Workflow
    parallel: int = 1
    time: float
    cache: bool = True  # reuse earlier runs' jobs whose cache key matches (not --restart)

    @field_serializer("spec")
    def _spec(self, spec: Workflow, info: FieldSerializationInfo) -> Any:
        return _compact(spec, info)


class WorkflowCancelRequested(Wire):
    type: Literal["workflow_cancel"] = "workflow_cancel"
    workflow: str
    run: str
    time: float
    reason: str = "canceled by user"


class WorkflowRetryRequested(Wire):
    type: Literal["workflow_retry"] = "workflow_retry"
    workflow: str
    run: str
    time: float


class JobCancelRequested(Wire):
    type: Literal["job_cancel"] = "job_cancel"
    workflow: str
    run: str
    job: str
    time: float


class WorkflowDeleted(Wire):
    type: Literal["workflow_deleted"] = "workflow_deleted"
    workflow: str
    run: str
    time: float


# -- job events: jobmesh.events.<wf>.<run> (stream EVENTS) ---------------------------------

class _JobEvent(Wire):
    workflow: str
    run: str
    job: str
    attempt: int = 1
    time: float


class JobPending(_JobEvent):
    """A new attempt exists (a retry) and waits for its parents."""
    type: Literal["pending"] = "pending"
    reason: str | None = None
    not_before: float | None = None  # a retry's backoff: not released before this time
    iteration: int | None = None  # set when a repeat loop starts its next iteration


class JobReadied(_JobEvent):
    type: Literal["ready"] = "ready"
    pool: str | None = None
    native_deps: list[str] = Field(default_factory=list)  # Slurm --dependency terms
    cache_key: str | None = None    # this attempt's cache key (scheduler/cache.py)
    cached_from: str | None = None  # the earlier run it is reused from (no JobReady sent)


class JobQueued(_JobEvent):
    type: Literal["queued"] = "queued"
    native_id: str | None = None
    reason: str | None = None  # e.g. a batch system's pending reason


class JobStarted(_JobEvent):
    type: Literal["started"] = "started"
    native_id: str | None = None
    host: str | None = None
    run_dir: str | None = None


class JobProgressed(_JobEvent):
    type: Literal["progress"] = "progress"
    progress: float | None = None
    msg: str | None = None
    outputs: dict[str, Any] | None = None


class JobSucceeded(_JobEvent):
    type: Literal["succeeded"] = "succeeded"
    exit_code: int = 0
    progress: float | None = None
    msg: str | None = None
    outputs: dict[str, Any] | None = None
    reason: str | None = None  # "cached": not run, reused from an earlier run
    # the reused attempt: {run, attempt, run_dir, host, seconds (its run time)}
    cached_from: dict[str, Any] | None = None


class JobFailed(_JobEvent):
    type: Literal["failed"] = "failed"
    exit_code: int | None = None
    reason: str = "failed"
    progress: float | None = None
    msg: str | None = None
    outputs: dict[str, Any] | None = None


class JobCanceled(_JobEvent):
    type: Literal["canceled"] = "canceled"
    reason: str = "canceled"
    exit_code: int | None = None


class JobSkipped(_JobEvent):
    type: Literal["skipped"] = "skipped"
    reason: str = "an upstream job did not succeed"
    benign: bool = False  # not a failure: a condition was false (or upstream, that way)


class JobsExpanded(_JobEvent):
    """A dynamic foreach node (``job``) became ``jobs``, once its parents had finished.

    Published by the scheduler; the scheduler core and the monitor fold both apply it, so
    a replay of the log rebuilds the grown workflow. Applying it means: remove ``job`` and
    every edge touching it, add ``jobs`` (PENDING, in this order, where ``job`` was) and
    ``edges`` (all edges of the new jobs). Applying it twice changes nothing (``job`` is
    gone the second time)."""
    type: Literal["jobs_expanded"] = "jobs_expanded"
    jobs: dict[str, JobSpec]
    edges: list[tuple[str, str]] = Field(default_factory=list)

    @field_serializer("jobs")
    def _jobs(self, jobs: dict[str, JobSpec], info: FieldSerializationInfo) -> Any:
        return {name: _compact(job, info) for name, job in jobs.items()}


JobEvent = Union[JobPending, JobReadied, JobQueued, JobStarted, JobProgressed, JobSucceeded,
                 JobFailed, JobCanceled, JobSkipped, JobsExpanded]
WorkflowCommand = Union[WorkflowSubmitted, WorkflowCancelRequested, WorkflowRetryRequested,
                        JobCancelRequested, WorkflowDeleted]

# The state each event moves a job to; progress moves nothing.
EVENT_STATE: dict[str, JobState] = {
    "pending": JobState.PENDING,
    "ready": JobState.READY,
    "queued": JobState.QUEUED,
    "started": JobState.RUNNING,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "canceled": JobState.CANCELED,
    "skipped": JobState.SKIPPED,
}

EventLog = Annotated[Union[WorkflowCommand, JobEvent], Field(discriminator="type")]
EVENT_LOG: TypeAdapter[Any] = TypeAdapter(EventLog)


# -- work for executors: jobmesh.jobs.<pool> (stream JOBS, work queue) ----------------------

class JobReady(Wire):
    """Run this attempt. ``spec`` has its placeholders resolved already."""
    type: Literal["job_ready"] = "job_ready"
    workflow: str
    run: str
    job: str
    attempt: int
    pool: str
    spec: JobSpec
    base_dir: str
    time: float
    # Submit now, waiting in the batch queue on these (e.g. "afterok:123"); see
    # services/scheduler/native.py.
    native_deps: list[str] = Field(default_factory=list)
    cache_key: str | None = None  # recorded in the run directory's job.json

    @property
    def msg_id(self) -> str:
        return AttemptKey.of(self).msg_id


class CancelJob(Wire):
    """Core pub/sub on jobmesh.cancel.<pool>: kill this attempt if you run it."""
    type: Literal["cancel_job"] = "cancel_job"
    workflow: str
    run: str
    job: str
    attempt: int
    reason: str = "canceled by user"
    time: float


class ExecutorHeartbeat(Wire):
    type: Literal["heartbeat"] = "heartbeat"
    pool: str
    instance: str
    kind: str
    host: str
    active: int = 0
    time: float
    # Cumulative calls of this instance since it started, e.g. {"poll.<cluster>": 12,
    # "submit.<cluster>": 3}; the gateway exports them (jobmesh_executor_calls_total).
    counters: dict[str, int] = Field(default_factory=dict)


# -- state: KV bucket "workflows", key <wf> -------------------------------------------------

class JobStatus(Wire):
    state: JobState = JobState.PENDING
    attempt: int = 1
    progress: float = 0.0
    msg: str | None = None
    native_id: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    started: float | None = None
    ended: float | None = None
    modified: float | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    kind: str = "local"
    host: str | None = None
    run_dir: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    benign: bool = False  # SKIPPED, but not a failure (condition false)
    iteration: int = 1    # the repeat loop's iteration
    cached_from: dict[str, Any] | None = None  # reused, not run: JobSucceeded.cached_from


class WorkflowSnapshot(Wire):
    name: str
    run: str
    state: WorkflowState = WorkflowState.PENDING
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    parallel: int = 1
    cancel_requested: bool = False
    jobs: dict[str, JobStatus] = Field(default_factory=dict)
    edges: list[tuple[str, str]] = Field(default_factory=list)
    seq: int = 0  # the last EVENTS stream sequence folded in
    expansions: int = 0  # dynamic foreach expansions applied: the graph's shape changed

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in JobState}
        for j in self.jobs.values():
            out[j.state.value] += 1
        return out


SNAPSHOT: TypeAdapter[WorkflowSnapshot] = TypeAdapter(WorkflowSnapshot)
