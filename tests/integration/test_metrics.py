"""/metrics against a real stack (`jobmesh up --port 0`): the histograms, end and retry
counters a run leaves, the token it needs, and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from jobmesh.client import Client
from jobmesh.common.messages import (
    ExecutorHeartbeat,
    JobFailed,
    JobReadied,
    JobStarted,
    JobSucceeded,
)
from jobmesh.gateway.metrics import Metrics
from tests.conftest import wait_until, write_workflow

pytestmark = pytest.mark.integration
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                              "_created"), "gauge": ("",)}


def scrape(stack: dict[str, Any]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted labels: value}."""
    resp = httpx.get(f"{stack['url']}/metrics", timeout=30,
                     headers={"Authorization": f"Bearer {stack['token']}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == CONTENT_TYPE_LATEST  # Prometheus' text format
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(samples: dict[str, dict[Any, float]], name: str, **labels: str) -> float:
    return sum(v for k, v in samples.get(name, {}).items()
               if all((lk, lv) in k for lk, lv in labels.items()))


def test_a_run_shows_in_metrics(stack: dict[str, Any], tmp_path: Path) -> None:
    flag = tmp_path / "failed-once"
    nodes = {"flaky": {"exec": f"test -e {flag} || (touch {flag}; exit 1)", "retries": 1},
             "a": {"exec": "echo a"}, "b": {"exec": "echo b"}, "c": {"exec": "echo c"},
             "doomed": {"exec": "exit 3"}, "after": {"exec": "echo never"}}
    path = write_workflow(tmp_path / "wf", "graphs", nodes, ["doomed,after"])
    unauth = httpx.get(f"{stack['url']}/metrics", timeout=30)
    assert unauth.status_code == 401 and "token" in unauth.json()["detail"]
    before = scrape(stack)
    assert total(before, "jobmesh_job_ends_total") == 0  # nothing ran yet
    assert {dict(k)["state"] for k in before["jobmesh_job_ends_total"]} == {
        "SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}  # every end state shows, at 0

    with Client(stack["url"], token=stack["token"], timeout=30) as c:
        c.add(path)
        c.run("graphs")
        final = c.wait("graphs", timeout=120)
    assert final["state"] == "FAILED", final  # 'doomed' failed, 'after' was skipped
    ran = 6  # flaky twice, a, b, c, doomed once each

    def settled() -> Any:
        m = scrape(stack)
        return m if total(m, "jobmesh_job_run_seconds_count") >= ran and total(
            m, "jobmesh_job_ends_total") >= 7 else None

    m = wait_until(settled, 30, "the run's events in /metrics")
    assert total(m, "jobmesh_job_queue_seconds_count") == ran
    assert total(m, "jobmesh_job_run_seconds_count") == ran
    assert total(m, "jobmesh_job_queue_seconds_count", pool="local", kind="local") == ran
    assert total(m, "jobmesh_job_run_seconds_bucket", pool="local", le="+Inf") == ran
    assert total(m, "jobmesh_job_run_seconds_sum") > 0
    ends = {s: total(m, "jobmesh_job_ends_total", state=s)
            for s in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")}
    assert ends == {"SUCCEEDED": 4, "FAILED": 2, "CANCELED": 0, "SKIPPED": 1}
    assert total(m, "jobmesh_job_retries_total") == 1
    assert total(m, "jobmesh_job_retries_total", pool="local") == 1
    # the gauges kept their names
    assert total(m, "jobmesh_jobs", state="SUCCEEDED") == 4
    assert total(m, "jobmesh_jobs", state="SKIPPED") == 1
    assert total(m, "jobmesh_workflows", state="FAILED") == 1
    assert total(m, "jobmesh_executors", pool="local") >= 1
    assert total(m, "jobmesh_events_total") > 0 and "jobmesh_jobs_queue_depth" in m


def exported(text: str) -> set[str]:
    """Every sample name a /metrics text can carry (a family with no samples yet
    included, by its type's suffixes)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + sfx for sfx in SUFFIXES.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def test_dashboard_queries_use_exported_metrics(stack: dict[str, Any]) -> None:
    dash = json.loads(DASHBOARD.read_text())  # well-formed JSON, or this fails
    assert dash["title"] and dash["panels"]
    assert any(v["type"] == "datasource" and v["query"] == "prometheus"
               for v in dash["templating"]["list"])
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
    resp = httpx.get(f"{stack['url']}/metrics", timeout=30,
                     headers={"Authorization": f"Bearer {stack['token']}"})
    names = exported(resp.text)
    used = {n for e in exprs for n in re.findall(r"\bjobmesh_[a-z_]+", e)}
    assert used and used <= names, sorted(used - names)
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for what in ("jobs by state", "job ends", "queue time", "run time", "retries",
                 "executors per pool", "polls", "submits"):
        assert what in titles, what
    assert any("histogram_quantile(0.95" in e for e in exprs)


def test_replayed_events_count_once_and_executor_calls() -> None:
    """The fold alone: a redelivered sequence changes nothing; the latest heartbeat's
    counters become labelled counters."""
    now = time.time()
    beat = ExecutorHeartbeat(pool="hpc", instance="ex-1", kind="slurm", host="h", time=now,
                             counters={"poll.alpha": 7, "submit.alpha": 2, "bad": 1})
    m = Metrics({"hpc/ex-1": beat.model_dump(mode="json")})
    common = {"workflow": "w", "run": "r1", "job": "j"}
    events = [JobReadied(**common, pool="hpc", time=now), JobStarted(**common, time=now + 2),
              JobFailed(**common, time=now + 5),
              JobReadied(**common, attempt=2, pool="hpc", time=now + 6),
              JobStarted(**common, attempt=2, time=now + 7),
              JobSucceeded(**common, attempt=2, time=now + 9)]
    for seq, ev in enumerate(events, 1):
        m.apply(seq, ev)
        m.apply(seq, ev)  # a replay of the same sequence
    for seq, ev in enumerate(events, 1):
        m.apply(seq, ev)  # a whole replay
    samples: dict[str, dict[Any, float]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    assert total(samples, "jobmesh_job_queue_seconds_count", pool="hpc", kind="slurm") == 2
    assert total(samples, "jobmesh_job_queue_seconds_sum") == pytest.approx(3)
    assert total(samples, "jobmesh_job_run_seconds_sum") == pytest.approx(5)
    assert total(samples, "jobmesh_job_retries_total", pool="hpc") == 1
    assert total(samples, "jobmesh_job_ends_total", state="FAILED") == 1
    assert total(samples, "jobmesh_job_ends_total", state="SUCCEEDED") == 1
    calls = samples["jobmesh_executor_calls_total"]
    assert calls == {(("call", "poll"), ("cluster", "alpha"), ("executor", "ex-1"),
                      ("pool", "hpc")): 7,
                     (("call", "submit"), ("cluster", "alpha"), ("executor", "ex-1"),
                      ("pool", "hpc")): 2}
    assert total(samples, "jobmesh_executors", pool="hpc") == 1
