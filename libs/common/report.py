"""The documented JSON shape of a workflow's state (``jobmesh status -o json`` and the
REST API). It grows only by addition."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, TextIO

from .messages import WorkflowSnapshot

CSV_COLUMNS = ["job", "state", "progress", "msg", "attempt", "exit_code", "reason", "kind",
               "host", "native_id", "started", "ended"]


def iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat() if t else None


def job_json(snap: WorkflowSnapshot, name: str) -> dict[str, Any]:
    js = snap.jobs[name]
    return {
        "state": js.state.value, "progress": js.progress, "msg": js.msg,
        "attempt": js.attempt, "native_id": js.native_id, "exit_code": js.exit_code,
        "reason": js.reason, "started": iso(js.started), "ended": iso(js.ended),
        "kind": js.kind, "host": js.host, "outputs": js.outputs, "run_dir": js.run_dir,
        "log": f"{js.run_dir}/job.log" if js.run_dir else None, "attempts": js.history,
        "cached_from": js.cached_from,  # reused from an earlier run, not run
    }


def reused(snap: WorkflowSnapshot) -> dict[str, Any]:
    """How many jobs were reused from earlier runs and the run time that saved."""
    cached = [j.cached_from for j in snap.jobs.values() if j.cached_from]
    return {"jobs": len(cached),
            "seconds": round(sum(c.get("seconds") or 0.0 for c in cached), 3)}


def status_json(snap: WorkflowSnapshot, jobs: bool = True) -> dict[str, Any]:
    counts = {k: v for k, v in snap.counts().items() if v}
    head = {"name": snap.name, "run": snap.run, "state": snap.state.value,
            "created": iso(snap.created), "started": iso(snap.started),
            "ended": iso(snap.ended), "counts": counts, "reused": reused(snap)}
    if jobs:
        head["jobs"] = {name: job_json(snap, name) for name in snap.jobs}
    return head


def write_status_json(snap: WorkflowSnapshot, f: TextIO) -> None:
    """``json.dump(status_json(snap), f, indent=2)``, the same text, written a job at a
    time: the whole dict of a 100,000-job run is ~100 MB at the end of a big sweep."""
    head = json.dumps(status_json(snap, jobs=False), indent=2)
    f.write(head[:-2] + ',\n  "jobs": {')  # without its closing "\n}"
    sep = ""
    for name in snap.jobs:
        body = json.dumps(job_json(snap, name), indent=2).replace("\n", "\n    ")
        f.write(f"{sep}\n    {json.dumps(name)}: {body}")
        sep = ","
    f.write("\n  }\n}" if snap.jobs else "}\n}")


def csv_rows(snap: WorkflowSnapshot) -> list[list[Any]]:
    rows: list[list[Any]] = [CSV_COLUMNS]
    for name in snap.jobs:
        j = job_json(snap, name)
        rows.append([name, j["state"], j["progress"], j["msg"] or "", j["attempt"],
                     "" if j["exit_code"] is None else j["exit_code"], j["reason"] or "",
                     j["kind"], j["host"] or "", j["native_id"] or "", j["started"] or "",
                     j["ended"] or ""])
    return rows
