"""The stack with every override, as a site with more than one machine would run it: a
three-node NATS cluster with R3 streams (deploy/compose.cluster.yml), an SSH host with its
own executor (deploy/compose.ssh.yml) and two local executor replicas.

One compose project serves the module (it costs ~25 s to start on two cores), so the
tests run in the order written: the SSH resource, then a replica killed for good whose
job a survivor adopts, then a NATS node killed mid-run, which leaves the cluster on two
nodes. Local jobs append "<wf> <job> <attempt> <hostname>" to a ledger on the
jobmesh-home volume.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    LEDGER,
    RECORD,
    Stack,
    final,
    ledger,
    started,
    submit,
    wait_for,
    write_spec,
)

HERE = Path(__file__).parent
URLS = "nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222"
NODES = {"nats-1": "nats", "nats-2": "nats-2", "nats-3": "nats-3"}  # server_name -> service


@pytest.fixture(scope="module")
def stack(stack_factory: Any) -> Stack:
    return stack_factory(  # type: ignore[no-any-return]
        "--scale", "executor-local=2",
        files=("compose.yml", "compose.cluster.yml", "compose.ssh.yml",
               str(HERE / "compose.test.yml")),
        # executor-ssh (compose.ssh.yml) takes the cluster's URLs from the environment
        env={"JOBMESH_NATS_URL": URLS, "JOBMESH_REPLICAS": "3"})


def nats_call(stack: Stack, fn: Any) -> Any:
    """Run ``fn(js)`` against the cluster through node 1's port published on 127.0.0.1."""
    import asyncio

    import nats

    async def go() -> Any:
        nc = await nats.connect(f"nats://127.0.0.1:{stack.env['NATS_PORT']}",
                                token=stack.env["JOBMESH_NATS_TOKEN"], connect_timeout=5,
                                allow_reconnect=False)
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


def test_ssh_executor_runs_jobs_on_the_sshd_container(stack: Stack, tmp_path: Path) -> None:
    """Jobs with `kind: ssh, host: sshd` go to executor-ssh, which logs in to the sshd
    container by its service name with the generated key; a local job uses their
    outputs."""
    (sshd,) = stack.ids("sshd")
    sshd_host = stack.hostname(sshd)
    out = 'echo "# jobmesh output host=$(hostname)"; echo "# jobmesh output user=$(id -un)"'
    nodes: dict[str, Any] = {
        "where": {"kind": "ssh", "host": "sshd", "exec": f"{out}; sleep 1"},
        **{f"s{i}": {"kind": "ssh", "host": "sshd", "exec": "sleep 1; hostname"}
           for i in range(4)},
        "here": {"exec": f"{RECORD} >> {LEDGER}; "
                         'echo "# jobmesh output got={parents.where.outputs.host}"'},
    }
    client = stack.client()
    client.add(write_spec(tmp_path / "ssh", "ssh", nodes, ["where,here"]))
    client.run("ssh", parallel=6)
    status = final(stack, "ssh", 120)
    assert status["state"] == "SUCCEEDED", status
    jobs = status["jobs"]
    assert jobs["where"]["outputs"] == {"host": sshd_host, "user": "jobmesh"}, jobs["where"]
    assert jobs["here"]["outputs"] == {"got": sshd_host}, jobs["here"]
    assert all(jobs[f"s{i}"]["state"] == "SUCCEEDED" for i in range(4)), jobs
    # the jobs' run directories are on the sshd host, in the jobmesh user's home
    runs = stack.compose("exec", "-T", "sshd", "ls", "/home/jobmesh/.jobmesh/runs/ssh",
                         check=False).stdout
    assert runs.strip(), "run directories on the sshd container"
    # key login only, and the executor's one connection is shared by the five jobs (a
    # reconnect under load may add a login, never one per job)
    config = stack.compose("exec", "-T", "sshd", "/usr/sbin/sshd", "-T").stdout
    assert "passwordauthentication no" in config and "kbdinteractiveauthentication no" in config
    logins = stack.logs("sshd", tail=500).count("Accepted publickey for jobmesh")
    assert 1 <= logins < 5, stack.logs("sshd")


def test_a_killed_replica_s_job_is_adopted_by_a_survivor(stack: Stack, tmp_path: Path) -> None:
    """`docker kill` of the replica running a job, never restarted: a survivor adopts the
    job once the replica has been silent for --adopt-after (10 s here). The job's process
    died with its container, so the survivor reports it killed and the retry runs on the
    survivor; the workflow succeeds."""
    ids = wait_for(lambda: len(stack.ids("executor-local")) == 2 and stack.ids("executor-local"),
                   60, "two executor replicas")
    host_of = {stack.hostname(cid): cid for cid in ids}
    name = "adopt"
    # the first attempt runs until it is killed; the retry ends at once
    nodes = {"first": {"exec": f'{RECORD} >> {LEDGER}; [ "$JOBMESH_ATTEMPT" != 1 ] || sleep 60',
                       "retries": 1,
                       "retry_delay": "1s"},
             "child": {"exec": f"{RECORD} >> {LEDGER}"}}
    client = stack.client()
    client.add(write_spec(tmp_path / name, name, nodes, ["first,child"]))
    client.run(name)
    wait_for(lambda: started(client, name, 1), 90, "'first' running")
    rows = wait_for(lambda: ledger(stack, name), 30, "'first' in the ledger")
    victim_host = rows[0][2]
    victim = host_of[victim_host]
    (survivor,) = set(ids) - {victim}
    before = stack.inspect(victim)["RestartCount"]
    stack.docker("kill", victim)

    status = final(stack, name, 120)
    assert status["state"] == "SUCCEEDED", status
    assert not stack.running(victim) and stack.inspect(victim)["RestartCount"] == before, \
        "the killed replica stayed down"
    ran = ledger(stack, name)
    assert ran[0] == ("first", 1, victim_host), ran
    assert {(job, attempt) for job, attempt, _ in ran} == {("first", 1), ("first", 2),
                                                            ("child", 1)}, ran
    assert all(host != victim_host for _, _, host in ran[1:]), ran
    assert status["jobs"]["first"]["attempt"] == 2, status["jobs"]["first"]
    said = stack.docker("logs", survivor, timeout=30)
    assert f"adopted {name}/first attempt 1" in said or \
        f"adopted {name}/first attempt 1" in stack.logs("executor-local", tail=200), said


def test_a_killed_nats_node_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    """The node leading the EVENTS stream is killed (and stays down) while jobs run: the
    cluster elects another leader, the services reconnect to the other nodes, and every
    job runs exactly once and succeeds."""
    async def info(js: Any) -> Any:
        return await js.stream_info("EVENTS")

    events = nats_call(stack, info)
    assert events.config.num_replicas == 3, events.config
    leader = events.cluster.leader
    assert leader in NODES, events.cluster
    name = "failover"
    client = submit(stack, tmp_path, name, jobs=10, seconds=3)
    wait_for(lambda: started(client, name, 2), 90, "two jobs running")
    (node,) = stack.ids(NODES[leader])
    stack.docker("kill", node)

    status = final(stack, name, 180)
    assert status["state"] == "SUCCEEDED", status
    assert all(js["attempt"] == 1 for js in status["jobs"].values()), status["jobs"]
    starts = collections.Counter(job for job, _, _ in ledger(stack, name))
    assert starts == {f"j{i:02d}": 1 for i in range(10)}, f"each job ran once: {starts}"
    assert not stack.running(node)
