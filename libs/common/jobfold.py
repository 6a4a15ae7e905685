"""The job-event rule, written once: how one job event changes one job's status.

Used by the monitor's fold, the gateway's run tracking and the CLI's live view; the GUI's
``static/jobstate.js`` keeps a copy that is checked against the same fixture of event
sequences (``tests/fixtures/job_events.json``). Pure: a status and an event in, a status out.

The rule, in order:
1. An event of an older attempt changes nothing.
2. An event of a newer attempt first archives the current attempt into ``history`` and
   starts the job afresh (PENDING) at that attempt, then applies the event.
3. Progress moves no state and stops once the job is final.
4. A state event applies only when its state ranks above the job's (``should_apply``);
   a second ``pending`` of the same attempt and a repeated ``queued`` only refresh the
   reason (a batch system's pending reason changes while a job waits).

A status's ``outputs`` and ``history`` may be shared with other statuses (a big run's
empty ones, ``services/monitor/fold.py``): the rule replaces them, never changes them in
place.
"""

from __future__ import annotations

import sys
from typing import Any

from jobmesh.common.messages import EVENT_STATE, JobProgressed, JobStatus
from jobmesh.common.states import JobState, should_apply

# The fields of an attempt kept in history when a newer attempt starts.
HISTORY = frozenset({"attempt", "state", "exit_code", "reason", "started", "ended",
                     "native_id", "run_dir"})
HISTORY_REPEAT = HISTORY | {"iteration", "outputs"}  # a repeat loop keeps each iteration's


def apply(js: JobStatus, ev: Any, repeat: bool = False) -> JobStatus | None:
    """Apply job event ``ev`` to ``js``. Returns the job's status afterwards (``js``
    changed in place, or a new status when ``ev`` starts a newer attempt), or None when
    ``ev`` changes nothing. ``repeat``: the job is a repeat loop (history keeps outputs)."""
    if ev.attempt < js.attempt:
        return None
    fresh = ev.attempt > js.attempt
    if fresh:
        keep = HISTORY_REPEAT if repeat else HISTORY
        history = [*js.history, {k: v for k, v in js.model_dump(include=set(keep)).items()
                                 if v is not None}]
        iteration = getattr(ev, "iteration", None)
        js = JobStatus(attempt=ev.attempt, kind=js.kind, host=js.host, history=history,
                       iteration=iteration or js.iteration)
    if isinstance(ev, JobProgressed):
        if js.state.terminal:
            return js if fresh else None
        if ev.progress is not None:
            js.progress = ev.progress
        if ev.msg is not None:
            js.msg = ev.msg
        if ev.outputs:
            js.outputs = {**js.outputs, **ev.outputs}  # (never in place: may be shared)
        js.modified = ev.time
        return js
    target = EVENT_STATE.get(ev.type)
    if target is None:  # not a job state event (jobs_expanded is the fold's own business)
        return js if fresh else None
    if target is JobState.PENDING:
        if js.state is not JobState.PENDING:
            return js if fresh else None  # a duplicate of the event that started it
        js.reason = ev.reason
    elif not should_apply(js.state, target):
        if ev.type == "queued" and js.state is JobState.QUEUED:  # a new pending reason
            js.native_id = ev.native_id or js.native_id
            js.reason, js.modified = ev.reason, ev.time
            return js
        return js if fresh else None
    js.state, js.modified = target, ev.time
    _fields(js, ev, target)
    return js


def _fields(js: JobStatus, ev: Any, target: JobState) -> None:
    """The fields an event that moved the job to ``target`` carries."""
    t = ev.type
    if t == "queued":
        js.native_id = ev.native_id or js.native_id
        js.reason = ev.reason
    elif t == "started":
        js.started = js.started or ev.time
        js.native_id = ev.native_id or js.native_id
        js.host = sys.intern(ev.host) if ev.host else js.host  # one string per host
        # (interned: the scheduler's cache entry of the job holds the same string)
        js.run_dir = sys.intern(ev.run_dir) if ev.run_dir else js.run_dir
        js.reason = None
    elif target.terminal:
        js.ended = ev.time
        js.exit_code = getattr(ev, "exit_code", None)
        js.reason = getattr(ev, "reason", None)
        js.benign = bool(getattr(ev, "benign", False))
        if getattr(ev, "outputs", None):
            js.outputs = {**js.outputs, **ev.outputs}
        if getattr(ev, "progress", None) is not None:
            js.progress = ev.progress
        if getattr(ev, "msg", None) is not None:
            js.msg = ev.msg
        if target is JobState.SUCCEEDED:
            js.progress = 100.0
            cached = getattr(ev, "cached_from", None)
            if cached:  # reused: show where it ran
                js.cached_from = cached
                js.run_dir = js.run_dir or cached.get("run_dir")
                js.host = cached.get("host") or js.host
