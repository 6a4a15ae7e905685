"""The scheduler core's releasing of jobs: which parents let a child go on, a ready job
turned into ``ReleaseJob`` (its placeholders filled in and checked), and Slurm chaining.
Pure, like ``core.py``, whose ``WorkflowRun`` mixes this in (split from core.py)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from jobmesh.common.names import InvalidName, check_pool
from jobmesh.common.placeholders import MissingOutput, PlaceholderError, substitute
from jobmesh.common.safety import UnsafeValue
from jobmesh.common.spec import JobSpec, check_spec
from jobmesh.common.states import JobState

from . import native
from .flow import ControlFlow, Instruction, Job, MarkJob, ReleaseJob


class Releases(ControlFlow):
    if TYPE_CHECKING:  # provided by WorkflowRun
        parallel: int
        active: int
        maybe_chain: deque[str]
        base_dir: str
        reuse: bool

    def _counts_for(self, parent: Job, child: Job) -> bool:
        """Has this parent ended in a way that lets the child go on?"""
        return parent.counted and self._satisfies(parent, parent.state, child)

    def _blocks(self, parent: Job, child: Job | None = None) -> bool:
        """A parent that ended for good without satisfying its children."""
        return (parent.state.terminal and not parent.retry_due and not parent.repeat_due
                and not self._satisfies(parent, parent.state, child))

    def _releases(self, now: float, out: list[Instruction]) -> None:
        waiting: list[str] = []
        while self.maybe_ready and self.active < self.parallel:
            name = self.maybe_ready.popleft()
            job = self.jobs.get(name)
            if job is None or job.state is not JobState.PENDING or job.unmet > 0 \
                    or job.retry_due:
                continue
            if job.not_before > now:
                waiting.append(name)
                continue
            if job.spec.when is not None and not self._condition(name, job, out):
                continue
            if job.spec.foreach is not None:
                self._expand(name, job, out)
                continue
            self._set(name, JobState.READY)
            out.append(self._release(name, job))
        self.maybe_ready.extendleft(reversed(waiting))
        while self.maybe_chain and self.active < self.parallel:
            name = self.maybe_chain.popleft()
            job = self.jobs.get(name)
            if job is None or job.state is not JobState.PENDING or job.unmet == 0 \
                    or job.retry_due or job.not_before > now:
                continue  # nothing to chain; the usual path releases it
            parents = [self.jobs[p] for p in job.parents]
            deps = native.dependencies(job, parents, [self._counts_for(p, job)
                                                      for p in parents])
            if deps:
                job.native_deps = deps
                self._set(name, JobState.READY)
                out.append(self._release(name, job))

    def _release(self, name: str, job: Job) -> Instruction:
        try:
            spec = self._resolve(job)
        except MissingOutput as exc:
            self._set(name, JobState.FAILED)
            return MarkJob(self.name, self.run, name, job.attempt, JobState.FAILED,
                           f"parent '{exc.job}' has no output '{exc.key}'")
        except (PlaceholderError, InvalidName, UnsafeValue) as exc:  # data that cannot go there
            self._set(name, JobState.FAILED)
            return MarkJob(self.name, self.run, name, job.attempt, JobState.FAILED, str(exc))
        parent_keys = tuple((p, self._key_of(self.jobs[p])) for p in job.parents)
        return ReleaseJob(self.name, self.run, name, job.attempt, job.spec.pool_name, spec,
                          self.base_dir, job.native_deps, parent_keys,
                          keyed=job.spec.cache and not job.native_deps,
                          reuse=self.reuse and not job.native_deps,
                          recorded=(job.cache_key, job.cached_from) if job.readied else None)

    @staticmethod
    def _key_of(parent: Job) -> str | None:
        """What a parent adds to its child's cache key: its own key when it succeeded;
        a condition-false skip is a fact of its own; anything else makes the child
        keyless (it runs)."""
        if parent.state is JobState.SUCCEEDED:
            return parent.cache_key
        if parent.state is JobState.SKIPPED and parent.benign:
            return "skipped (condition false)"
        return None

    def _resolve(self, job: Job) -> JobSpec:
        outputs = {p: self.jobs[p].outputs for p in job.parents}
        s = job.spec
        update: dict[str, Any] = {}
        if s.exec is not None:
            update["exec"] = substitute(s.exec, outputs, self.variables, shell=True)
        if s.args:
            update["args"] = [substitute(a, outputs, self.variables) for a in s.args]
        if s.env:
            update["env"] = {k: substitute(v, outputs, self.variables) for k, v in s.env.items()}
        for key in ("host", "user"):
            value = getattr(s, key)
            if value and "{" in value:
                update[key] = substitute(value, outputs, self.variables)
        extras = {k: substitute(v, outputs, self.variables) for k, v in s.extras.items()
                  if isinstance(v, str) and "{" in v and k != "label"}
        update = {k: v for k, v in update.items() if v != getattr(s, k)}  # what filled in
        resolved = s.model_copy(update={**update, **extras}) if update or extras else s
        if resolved is not s or not job.checked:  # an unchanged spec is checked once
            problems = check_spec(resolved)  # what the filled values brought in, e.g. a pool
            if problems:
                raise UnsafeValue(problems[0][1])
            check_pool(s.pool_name)
            job.checked = resolved is s
        return resolved
