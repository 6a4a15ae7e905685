"""Run history: what the monitor keeps of each run once it ends. Pure: no I/O.

Bucket ``runs`` (KV), written only by the monitor:

| key | value |
| --- | --- |
| ``<wf>`` | the index: ``{"runs": [summary, ...]}``, oldest first, at most ``keep`` |
| ``<wf>.<run>`` | the run's record: ``{"snapshot": WorkflowSnapshot, "queued": {job: time}}`` |

and in the object store ``graphs``, beside ``<wf>`` (the current graph), ``<wf>.<run>``: the
graph of a run as it ended.

A run is recorded when it ends (and again if a retry ends it anew) and when a new run
replaces it. The current run, while it goes on, is the ``workflows`` snapshot itself.
Run ids reach keys only through ``check_run``.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

from jobmesh.common import bus, subjects
from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.names import check_workflow
from jobmesh.common.packing import compressed, pack, unpack
from jobmesh.common.states import WorkflowState

from .encode import BIG, pieces

BUCKET = "runs"
KEEP = 50  # runs kept per workflow unless the monitor is told otherwise


def index_key(wf: str) -> str:
    return check_workflow(wf)


def record_key(wf: str, run: str) -> str:
    return subjects.run_record_key(wf, run)


def graph_key(wf: str, run: str) -> str:
    """The object holding a run's final graph (object store ``graphs``)."""
    return subjects.run_record_key(wf, run)


def summary(snap: WorkflowSnapshot, replaced_by: str | None = None,
            now: float | None = None) -> dict[str, Any]:
    """One line of the run list. A run replaced while it still ran counts as canceled,
    ended when it was replaced."""
    state, ended = snap.state.value, snap.ended
    if replaced_by is not None and not snap.state.terminal:
        state, ended = WorkflowState.CANCELED.value, ended or now
    start = snap.started or snap.created
    return {"run": snap.run, "state": state, "created": snap.created,
            "started": snap.started, "ended": ended,
            "duration": round(ended - start, 3) if ended and start else None,
            "jobs": len(snap.jobs), "counts": {k: v for k, v in snap.counts().items() if v},
            "seq": snap.seq, "replaced_by": replaced_by}


def record(snap: WorkflowSnapshot, queued: dict[str, float]) -> bytes:
    """The stored record of one run: its last snapshot and its jobs' queue times, as
    ``pack`` stores it. The snapshot is encoded straight to bytes and compressed a job at
    a time: no text copy and no joined copy of it (a 100,000-job run's is ~45 MB)."""
    head = (b'{"queued":', json.dumps(queued).encode(), b',"snapshot":')
    if len(snap.jobs) >= BIG:  # a job at a time: its whole JSON is never held at once
        return compressed(chain(head, pieces(snap), (b"}",)))
    parts = (*head, bus.encode(snap), b"}")
    return pack(b"".join(parts))


def read_record(data: bytes) -> tuple[WorkflowSnapshot, dict[str, float]]:
    doc = json.loads(unpack(data))
    return WorkflowSnapshot.model_validate(doc["snapshot"]), {
        k: float(v) for k, v in (doc.get("queued") or {}).items()}


def merge(runs: list[dict[str, Any]], line: dict[str, Any], keep: int
          ) -> tuple[list[dict[str, Any]], list[str]]:
    """Put one run's summary into an index (replacing an older line of the same run);
    returns the new index, oldest first, and the runs it drops past ``keep``."""
    out = [r for r in runs if r.get("run") != line["run"]] + [line]
    out.sort(key=lambda r: (r.get("created") or 0, r.get("run") or ""))
    cut = max(0, len(out) - max(1, keep))
    return out[cut:], [r["run"] for r in out[:cut]]
