"""The scheduler core's control flow: ``when:`` conditions, dynamic ``foreach:`` and
``repeat:`` loops. Pure, like ``core.py``, whose ``WorkflowRun`` mixes this in.

- A ``when:`` is evaluated when the job would be released: false skips it with reason
  "condition false" (``benign``: not a failure), an error fails it.
- A dynamic foreach node is expanded instead of released: ``ExpandJob`` carries the new
  jobs and edges (the shell publishes them as ``JobsExpanded``), and they are applied
  here at once; the event, when it comes back or is replayed, changes nothing more.
- A repeat node that succeeded without its ``until`` holding starts its next iteration
  (and that of its ``group:``) as a new attempt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from jobmesh.common.control import scope
from jobmesh.common.expand import (
    ExpandError,
    count,
    dynamic_values,
    expand_node,
    sources,
    too_large,
)
from jobmesh.common.expr import ExprError, compile_expr
from jobmesh.common.spec import JobSpec
from jobmesh.common.states import JobState

CANCEL_RESEND = 5.0  # seconds between repeated cancel requests for a job still running
EXPAND_MAX_BYTES = 6_000_000  # a dynamic foreach's new jobs (NATS max_payload: 8 MB)


# -- instructions -----------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseJob:
    workflow: str
    run: str
    job: str
    attempt: int
    pool: str
    spec: JobSpec
    base_dir: str
    native_deps: tuple[str, ...] = ()  # Slurm --dependency terms (native.py)
    # Caching (cache.py): the parents' keys (a None makes this job keyless), whether it
    # may have a key at all, whether this run reuses earlier ones (not --restart), and
    # the decision a ready event in the log recorded already: (key, cached_from run).
    parent_keys: tuple[tuple[str, str | None], ...] = ()
    keyed: bool = False
    reuse: bool = False
    recorded: tuple[str | None, str | None] | None = None


@dataclass(frozen=True)
class MarkJob:
    """Publish a state event the scheduler decided: skipped, canceled, pending (retry or
    repeat) or failed (a job that cannot start, e.g. a missing parent output)."""
    workflow: str
    run: str
    job: str
    attempt: int
    state: JobState
    reason: str
    not_before: float | None = None
    benign: bool = False          # a skip that is not a failure (condition false)
    iteration: int | None = None  # a repeat's next iteration


@dataclass(frozen=True)
class CancelRunning:
    workflow: str
    run: str
    job: str
    attempt: int
    pool: str
    reason: str


@dataclass(frozen=True)
class ExpandJob:
    """Publish ``JobsExpanded``: the foreach node ``job`` became ``jobs``."""
    workflow: str
    run: str
    job: str
    attempt: int
    jobs: dict[str, JobSpec]
    edges: list[tuple[str, str]]


Instruction = Union[ReleaseJob, MarkJob, CancelRunning, ExpandJob]


# -- state ------------------------------------------------------------------------------

# Job.outputs, and a cache entry's, until it has some: one dict shared by every workflow,
# never changed: every writer replaces outputs, never updates them in place
NO_OUTPUTS: dict[str, Any] = {}


@dataclass(slots=True)  # one per job: a 100,000-job sweep keeps 100,000
class Job:
    spec: JobSpec
    parents: list[str]
    children: list[str]
    state: JobState = JobState.PENDING
    attempt: int = 1
    unmet: int = 0
    not_before: float = 0.0
    # One empty dict for all jobs until they have outputs (a big sweep's jobs have
    # none): outputs are replaced when they change, never changed in place.
    outputs: dict[str, Any] = field(default_factory=lambda: NO_OUTPUTS)
    cancel_sent: float | None = None
    retry_due: bool = False
    counted: bool = False  # it ended for good and its children were told
    benign: bool = False   # SKIPPED because a condition was false (not a failure)
    exit_code: int | None = None
    iteration: int = 1     # of a repeat loop
    first_attempt: int = 1  # the iteration's first attempt (retries count from here)
    repeat_due: bool = False
    repeat_why: str = ""
    native: str | None = None   # the batch system's id of the current attempt
    native_deps: tuple[str, ...] = ()  # released before its parents ended (native.py)
    readied: bool = False  # the current attempt's ready event is in the log
    cache_key: str | None = None    # ... with this key
    cached_from: str | None = None  # ... reused from this earlier run
    checked: bool = False  # its unfilled spec passed check_spec (_resolve)


class ControlFlow:
    if TYPE_CHECKING:  # provided by WorkflowRun
        name: str
        run: str
        jobs: dict[str, Job]
        variables: dict[str, Any]
        allow_large: bool
        groups: dict[str, list[str]]
        maybe_ready: deque[str]
        maybe_skip: deque[str]
        due: set[str]
        order: dict[str, int]

        def _set(self, name: str, new: JobState, force: bool = False) -> None: ...
        def _new_attempt(self, name: str, attempt: int, not_before: float,
                         iteration: int | None = None) -> None: ...
        def _satisfies(self, job: Job, state: JobState, child: Job | None = None
                       ) -> bool: ...
        def _counts_for(self, parent: Job, child: Job) -> bool: ...
        def _blocks(self, parent: Job, child: Job | None = None) -> bool: ...

    def _facts(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """What an expression may read about these jobs."""
        out: dict[str, dict[str, Any]] = {}
        for p in names:
            j = self.jobs[p]
            out[p] = {"outputs": j.outputs, "state": j.state.value, "exit_code": j.exit_code,
                      "attempt": j.attempt, "iteration": j.iteration}
        return out

    def _mark(self, name: str, job: Job, state: JobState, reason: str,
              out: list[Any], benign: bool = False) -> None:
        out.append(MarkJob(self.name, self.run, name, job.attempt, state, reason,
                           benign=benign))
        job.benign = benign
        self._set(name, state)

    def _condition(self, name: str, job: Job, out: list[Any]) -> bool:
        """Evaluate ``when:``; on false or error, mark the job and return False."""
        assert job.spec.when is not None
        lookup = scope(job.spec, self.variables, self._facts(job.parents))
        try:
            if compile_expr(job.spec.when).test(lookup):
                return True
        except ExprError as exc:
            self._mark(name, job, JobState.FAILED, f"when: {exc}", out)
            return False
        self._mark(name, job, JobState.SKIPPED, "condition false", out, benign=True)
        return False

    def _expand(self, name: str, job: Job, out: list[Any]) -> None:
        """A dynamic foreach whose parents have finished: make its jobs."""
        spec = job.spec
        try:
            lists = dynamic_values(sources(spec.foreach, self.variables),
                                   {p: self.jobs[p].outputs for p in job.parents})
            n = count(lists, spec.foreach_mode)
            if n == 0:
                self._mark(name, job, JobState.SKIPPED, "foreach over an empty list", out,
                           benign=True)
                return
            why = too_large(len(self.jobs) - 1 + n, 0, self.allow_large)
            if why:
                raise ExpandError(f"expanding into {n} jobs would make {why}")
            jobs, edges = expand_node(
                spec, lists, [(p, self.jobs[p].spec.params) for p in job.parents],
                [(c, self.jobs[c].spec.params) for c in job.children])
            clash = next((n for n in jobs if n in self.jobs), None)
            if clash is not None:
                raise ExpandError(f"it would make a job named '{clash}', which exists")
            size = sum(len(j.model_dump_json()) for j in jobs.values()) + 60 * len(edges)
            if size > EXPAND_MAX_BYTES:  # one JobsExpanded message must fit NATS's payload
                raise ExpandError(f"its {len(jobs)} jobs would be {size / 1e6:.1f} MB in one "
                                  f"message, more than {EXPAND_MAX_BYTES / 1e6:.0f} MB; "
                                  "expand over fewer values")
        except ExpandError as exc:
            self._mark(name, job, JobState.FAILED, f"foreach: {exc}", out)
            return
        out.append(ExpandJob(self.name, self.run, name, job.attempt, jobs, edges))
        self._apply_expansion(name, jobs, edges)

    def _apply_expansion(self, template: str, jobs: dict[str, JobSpec],
                         edges: list[tuple[str, str]]) -> None:
        """Replace ``template`` by ``jobs``; nothing happens if it is gone already."""
        tmpl = self.jobs.get(template)
        if tmpl is None or tmpl.state is not JobState.PENDING or template in jobs:
            return
        for p in tmpl.parents:
            self.jobs[p].children.remove(template)
        for c in tmpl.children:
            child = self.jobs[c]
            child.parents.remove(template)
            if not self._counts_for(tmpl, child):
                child.unmet -= 1
        rebuilt: dict[str, Job] = {}
        for n, j in self.jobs.items():
            if n != template:
                rebuilt[n] = j
                continue
            for new, spec in jobs.items():
                rebuilt[new] = Job(spec, [], [])
        self.jobs = rebuilt
        self.order = {n: i for i, n in enumerate(self.jobs)}
        for a, b in edges:
            pa, cb = self.jobs[a], self.jobs[b]
            pa.children.append(b)
            cb.parents.append(a)
            if not self._counts_for(pa, cb):
                cb.unmet += 1
        for n in jobs:
            j = self.jobs[n]
            if j.unmet == 0:
                self.maybe_ready.append(n)
            elif any(self._blocks(self.jobs[p], j) for p in j.parents):
                self.maybe_skip.append(n)
        for c in tmpl.children:
            if self.jobs[c].unmet == 0:
                self.maybe_ready.append(c)

    def _repeats(self, now: float, out: list[Any]) -> None:
        """Start the next iteration of each repeat node that asked for one, with its
        group; and catch up group members a crash left at an older iteration."""
        for name in sorted(self.due, key=self.order.__getitem__):
            job = self.jobs[name]
            if not job.repeat_due:
                continue
            assert job.spec.repeat is not None
            members = self.groups.get(job.spec.group, [name]) if job.spec.group else [name]
            nxt = job.iteration + 1
            not_before = now + job.spec.repeat.delay if job.spec.repeat.delay else 0.0
            for m in members + ([name] if name not in members else []):
                self._iterate(m, nxt, not_before, job.repeat_why, out)
        for members in self.groups.values():
            head = next((self.jobs[m] for m in members if self.jobs[m].spec.repeat), None)
            if head is None or head.iteration == 1:
                continue
            for m in members:
                j = self.jobs[m]
                if j.iteration < head.iteration and j.state.terminal and not j.retry_due:
                    self._iterate(m, head.iteration, head.not_before, "repeat", out)

    def _iterate(self, name: str, iteration: int, not_before: float, why: str,
                 out: list[Any]) -> None:
        job = self.jobs[name]
        if job.iteration >= iteration:
            return
        attempt = job.attempt + 1
        self._new_attempt(name, attempt, not_before, iteration)
        out.append(MarkJob(self.name, self.run, name, attempt, JobState.PENDING, why,
                           not_before or None, iteration=iteration))
