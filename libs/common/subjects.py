"""Every subject, stream, consumer and bucket name lives here and nowhere else.

Tokens from user input are checked names; job names are encoded with ``token`` because
'.' separates subject tokens.
"""

from __future__ import annotations

from .names import check_job, check_pool, check_run, check_workflow, token

PREFIX = "jobmesh"
STREAM_EVENTS = "EVENTS"   # workflow commands and job events: one ordered log
STREAM_JOBS = "JOBS"       # work for executors, work-queue retention
EVENTS_SUBJECTS = [f"{PREFIX}.workflows.>", f"{PREFIX}.events.>"]
LOG_PREFIXES = (f"{PREFIX}.workflows.", f"{PREFIX}.events.")  # subjects of EVENTS
JOBS_SUBJECTS = [f"{PREFIX}.jobs.>"]
KV_WORKFLOWS = "workflows"   # <wf> -> WorkflowSnapshot
KV_SPECS = "specs"           # <wf> -> the submitted Workflow spec
KV_EXECUTIONS = "executions"  # <pool>.<wf>.<job> -> what an executor launched (re-attach)
OBJ_GRAPHS = "graphs"        # <wf> -> SVG bytes; <wf>.<run> -> a past run's final graph
KV_RUNS = "runs"             # run history: <wf> -> index, <wf>.<run> -> record (monitor/history.py)


def workflow(wf: str) -> str:
    return f"{PREFIX}.workflows.{check_workflow(wf)}"


def events(wf: str, run: str) -> str:
    """A run's job events (the job is in each event). One subject per run, not per job
    (``DESIGN.md``'s ``events.<wf>.<job>``): nats-server keeps state per subject and
    rebuilds it when it restarts, which after a 100,000-job sweep took most of a 1-job
    run's start (docs/architecture.md). Old homes' per-job subjects match the same
    ``workflow_events`` filter."""
    return f"{PREFIX}.events.{check_workflow(wf)}.{check_run(run)}"


def workflow_events(wf: str) -> str:
    return f"{PREFIX}.events.{check_workflow(wf)}.>"


def jobs(pool: str) -> str:
    return f"{PREFIX}.jobs.{check_pool(pool)}"


def cancel(pool: str) -> str:
    return f"{PREFIX}.cancel.{check_pool(pool)}"


def heartbeat(pool: str, instance: str) -> str:
    return f"{PREFIX}.heartbeat.{check_pool(pool)}.{check_pool(instance)}"


HEARTBEATS = f"{PREFIX}.heartbeat.>"


def pool_consumer(pool: str) -> str:
    return f"pool-{check_pool(pool)}"


def execution_key(pool: str, wf: str, job: str) -> str:
    return f"{check_pool(pool)}.{check_workflow(wf)}.{token(check_job(job))}"


def run_record_key(wf: str, run: str) -> str:
    """A past run's record in ``KV_RUNS`` (the index is under ``<wf>``), and its final
    graph in ``OBJ_GRAPHS``: ``<wf>.<run>``."""
    return f"{check_workflow(wf)}.{check_run(run)}"
