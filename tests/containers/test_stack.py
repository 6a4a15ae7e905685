"""deploy/compose.yml on a real Docker engine: a workflow uploaded and run over REST with
the token, executors scaled out, and containers crashing mid-run.

One stack serves the whole module (starting one costs ~15 s on two cores); each test uses
its own workflow. Every job appends "<job> <attempt> <hostname>" to a ledger on the
shared jobmesh-home volume, so the tests see which replica ran what, and how often.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Stack, ledger, started, submit, wait_for


@pytest.fixture(scope="module")
def stack(stack_factory: Any) -> Stack:
    return stack_factory("--scale", "executor-local=2")  # type: ignore[no-any-return]


def test_gui_and_api_need_the_token_and_a_workflow_runs(stack: Stack, tmp_path: Path) -> None:
    page = httpx.get(f"{stack.url}/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    refused = httpx.get(f"{stack.url}/api/workflows", timeout=10)
    assert refused.status_code == 401

    client = submit(stack, tmp_path, "hello", jobs=3, seconds=0)
    status = client.wait("hello", timeout=120)
    assert status["state"] == "SUCCEEDED", status
    assert set(status["jobs"]) == {"j00", "j01", "j02"}
    assert "ran on" in client.log("hello", "j00")["data"]


def test_jobs_spread_over_scaled_executors(stack: Stack, tmp_path: Path) -> None:
    stack.up("--scale", "executor-local=3")
    hosts = {stack.hostname(cid) for cid in wait_for(
        lambda: len(stack.ids("executor-local")) == 3 and stack.ids("executor-local"),
        60, "three executor replicas")}
    name = "spread"
    client = submit(stack, tmp_path, name, jobs=12, seconds=3)
    status = client.wait(name, timeout=180)
    assert status["state"] == "SUCCEEDED", status
    ran = collections.Counter(host for _, _, host in ledger(stack, name))
    by_host = {h: ran[h] for h in hosts}
    assert all(by_host.values()), f"every replica runs some jobs: {by_host}"


def test_a_crashed_executor_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    """A replica crashes while it runs jobs: those end as killed and their retries run
    (on a replica its restart or another); the other jobs are not touched, and no job
    runs twice except as a counted retry."""
    name = "crash"
    client = submit(stack, tmp_path, name, jobs=9, seconds=8, retries=2)
    wait_for(lambda: started(client, name, 3), 90, "three jobs running")
    rows = wait_for(lambda: len(ledger(stack, name)) >= 1 and ledger(stack, name), 30,
                    "the ledger")
    ids = stack.ids("executor-local")
    host_of = {stack.hostname(cid): cid for cid in ids}
    victim_host = next(h for _, _, h in rows if h in host_of)
    victim = host_of[victim_host]
    before = stack.inspect(victim)["RestartCount"]
    stack.crash(victim)
    wait_for(lambda: stack.restarted(victim, before), 60, "the restart policy to restart it")

    status = client.wait(name, timeout=240)
    assert status["state"] == "SUCCEEDED", status
    starts = collections.Counter((job, attempt) for job, attempt, _ in ledger(stack, name))
    assert max(starts.values()) == 1, f"an attempt ran twice: {starts}"
    for job, js in status["jobs"].items():
        attempts = {a for (j, a) in starts if j == job}
        assert attempts == set(range(1, js["attempt"] + 1)), (job, attempts, js)
    retried = {job for job, js in status["jobs"].items() if js["attempt"] > 1}
    on_victim = {job for job, attempt, host in ledger(stack, name)
                 if host == victim_host and attempt == 1}
    assert retried, "the jobs the crashed replica ran were killed and retried"
    assert retried <= on_victim, f"only the crashed replica's jobs ran again: {retried}"


@pytest.mark.parametrize("service", ["scheduler", "monitor", "gateway"])
def test_a_crashed_service_comes_back_and_nothing_is_lost(stack: Stack, tmp_path: Path,
                                                          service: str) -> None:
    name = f"svc-{service}"
    client = submit(stack, tmp_path, name, jobs=6, seconds=4)
    wait_for(lambda: started(client, name, 1), 90, "a job running")
    (cid,) = stack.ids(service)
    before = stack.inspect(cid)["RestartCount"]
    stack.crash(cid)
    wait_for(lambda: stack.restarted(cid, before), 60, f"the {service} to be restarted")
    wait_for(stack.healthy, 90, "the gateway to answer again")
    status = stack.client().wait(name, timeout=180)
    assert status["state"] == "SUCCEEDED", status
    assert all(js["attempt"] == 1 for js in status["jobs"].values()), status["jobs"]
