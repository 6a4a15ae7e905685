"""AttemptKey: one attempt's key, message ids and registry key, in one place."""

from __future__ import annotations

import pytest

from jobmesh.common.attempt import AttemptKey, submission_id
from jobmesh.common.messages import CancelJob, JobFailed, JobReady
from jobmesh.common.spec import JobSpec

pytestmark = pytest.mark.unit


def ready(job: str = "fetch.sh", attempt: int = 2) -> JobReady:
    return JobReady(workflow="paper", run="20261204T061200-3fa2", job=job, attempt=attempt,
                    pool="local", spec=JobSpec(name=job, exec="true"), base_dir="/tmp",
                    time=0.0)


def test_the_key_of_a_job_ready_an_event_and_a_cancel_is_the_same() -> None:
    job = ready()
    failed = JobFailed(workflow="paper", run=job.run, job="fetch.sh", attempt=2, time=1.0)
    cancel = CancelJob(workflow="paper", run=job.run, job="fetch.sh", attempt=2, time=1.0)
    assert AttemptKey.of(job) == AttemptKey.of(failed) == AttemptKey.of(cancel)
    # a plain tuple finds the same entry in a dict keyed by AttemptKey (and back)
    assert {AttemptKey.of(job): 1}[("paper", job.run, "fetch.sh", 2)] == 1
    assert AttemptKey.of(job).ids() == {"workflow": "paper", "run": job.run,
                                        "job": "fetch.sh", "attempt": 2}


def test_message_ids_as_the_bus_has_always_had_them() -> None:
    key = AttemptKey.of(ready())
    assert key.msg_id == "paper.20261204T061200-3fa2.fetch.sh.2" == ready().msg_id
    assert key.event_id("ready") == "paper.20261204T061200-3fa2.fetch.sh.2.ready"
    assert key.event_id("succeeded").endswith(".fetch.sh.2.succeeded")
    assert submission_id("paper", "r1") == "paper.r1"
    # the registry key encodes the job's dots, which separate KV key tokens
    assert key.registry_key("slurm") == "slurm.paper.fetch=sh.2"


@pytest.mark.parametrize("job", ["fetch.sh", "a.b.c", "train-gpu_v100", "x"])
def test_parse_takes_back_what_format_wrote(job: str) -> None:
    key = AttemptKey("wf", "20261204T061200-3fa2", job, 12)
    assert AttemptKey.parse(key.format()) == key
    assert AttemptKey.parse(key.msg_id) == key


@pytest.mark.parametrize("text", ["", "wf", "wf.run.job", "wf.run.job.x", "wf.run.job.0",
                                  "wf..job.1", "wf.run..1", ".run.job.1", "wf.run.job.-1"])
def test_parse_refuses_what_is_no_attempt_key_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="not an attempt key"):
        AttemptKey.parse(text)


def test_registry_key_refuses_a_pool_that_is_no_subject_token() -> None:
    with pytest.raises(ValueError):
        AttemptKey("wf", "r1", "a", 1).registry_key("bad pool")
