"""The adoption rule (adopt.py) and registry entries with and without an owner."""

from __future__ import annotations

import json
import os
import socket

from jobmesh.common.messages import JobReady
from jobmesh.executor.adopt import Registered, claimable_at_start, dead, pid_gone
from jobmesh.executor.app import _registered


def job_json() -> bytes:
    return json.dumps({"workflow": "wf", "run": "r1", "job": "a", "attempt": 1,
                       "pool": "local", "spec": {"name": "a", "exec": "true"}, "base_dir": "/tmp",
                       "time": 1.0}).encode()


def test_an_entry_written_before_owners_reads_with_no_owner() -> None:
    old = _registered(job_json(), "123")
    reg = Registered.model_validate_json(old)
    assert reg.native_id == "123" and reg.owner == "" and reg.pid == 0
    assert isinstance(reg.job, JobReady) and reg.job.job == "a"


def test_an_entry_names_its_owner_host_and_pid() -> None:
    reg = Registered.model_validate_json(_registered(job_json(), "", "ex-a"))
    assert (reg.owner, reg.host, reg.pid) == ("ex-a", socket.gethostname(), os.getpid())


def test_a_peer_is_dead_after_the_timeout_from_its_last_beat_or_our_start() -> None:
    seen = {"b": 100.0}
    assert not dead("b", seen, since=50.0, now=119.0, after=20.0)
    assert dead("b", seen, since=50.0, now=120.0, after=20.0)
    # never heard: counted from when the listener started
    assert not dead("c", seen, since=110.0, now=125.0, after=20.0)
    assert dead("c", seen, since=110.0, now=130.0, after=20.0)
    # a beat heard before the listener started does not shorten the wait
    assert not dead("b", seen, since=115.0, now=130.0, after=20.0)


def test_what_a_starting_executor_claims_at_once() -> None:
    job = JobReady.model_validate_json(job_json())
    host = socket.gethostname()
    assert claimable_at_start(Registered(job=job), "me", host)  # no owner: legacy entry
    assert not claimable_at_start(Registered(job=job, owner="me"), "me", host)  # own
    live = Registered(job=job, owner="peer", host=host, pid=os.getpid())
    assert not claimable_at_start(live, "me", host)
    elsewhere = Registered(job=job, owner="peer", host="other-host", pid=2**22 + 7)
    assert not claimable_at_start(elsewhere, "me", host)
    assert pid_gone(2**22 + 7)
    gone = Registered(job=job, owner="peer", host=host, pid=2**22 + 7)
    assert claimable_at_start(gone, "me", host)
