"""Issue 15: a surviving replica of a pool adopts the jobs of a replica that died, without
any executor restarting (adopt.py). Three executor replicas of one pool, a real
nats-server, scheduler and monitor; the replica owning a running job is SIGKILLed."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until, write_workflow

pytestmark = pytest.mark.integration

REPLICAS = ("ex-a", "ex-b", "ex-c")
ADOPT_AFTER = 10.0  # the shortest --adopt-after allowed: two heartbeats

# Each job writes its name into the ledger once per run; the first waits for `go`.
FIRST = ('echo first >> "$JOBMESH_WORKFLOW_DIR/ledger"\n'
         'while [ ! -e "$JOBMESH_WORKFLOW_DIR/go" ]; do sleep 0.05; done\n'
         'sleep 1\n')
CHILD = 'echo child >> "$JOBMESH_WORKFLOW_DIR/ledger"\n'


def start_stack(services: Any, bus: Any) -> None:
    services.start("scheduler")
    services.start("monitor")
    for name in REPLICAS:
        services.start(f"executor:{name}", "--pool", "local", "--kind", "local",
                       "--instance", name, "--adopt-after", str(ADOPT_AFTER))
    wait_for_heartbeats(bus)


def wait_for_heartbeats(bus: Any, timeout: float = 60) -> None:
    """Until every replica has sent a heartbeat: it does so after its start-up scan of the
    registry. (A replica still starting when the owner is killed would find the dead pid
    in that scan and claim the job at once, with no 'adopted' line: also correct, but not
    what these tests watch.)"""
    import asyncio

    from jobmesh.common import subjects

    async def go(js: Any) -> set[str]:
        heard: set[str] = set()
        sub = await js._nc.subscribe(f"{subjects.PREFIX}.heartbeat.local.*")
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout
            while heard != set(REPLICAS) and loop.time() < end:
                try:
                    msg = await sub.next_msg(timeout=max(0.1, end - loop.time()))
                except Exception:
                    break
                heard.add(msg.subject.rsplit(".", 1)[-1])
        finally:
            await sub.unsubscribe()
        return heard

    heard = bus.call(go)
    assert heard == set(REPLICAS), f"heard heartbeats only from {sorted(heard)}"


def owner(bus: Any, wf: str, job: str) -> str | None:
    """The instance the executions registry names for attempt 1 of a job (None: no
    entry, e.g. after the job ended)."""
    from jobmesh.common import subjects
    from jobmesh.executor.adopt import Registered

    async def get(js: Any) -> str | None:
        kv = await js.key_value(subjects.KV_EXECUTIONS)
        try:
            entry = await kv.get(f"{subjects.execution_key('local', wf, job)}.1")
        except Exception:
            return None
        return Registered.model_validate_json(entry.value).owner if entry.value else None

    return bus.call(get)  # type: ignore[no-any-return]


def logs(tmp_path: Path, names: tuple[str, ...]) -> dict[str, str]:
    return {n: (tmp_path / f"executor_{n}.log").read_text() for n in names}


def run_and_kill_owner(tmp_path: Path, bus: Any, services: Any, wf_name: str) -> str:
    wf = write_workflow(tmp_path, wf_name, {"first.sh": {}, "child.sh": {}},
                        ["first.sh,child.sh"], files={"first.sh": FIRST, "child.sh": CHILD})
    start_stack(services, bus)
    bus.submit(wf)
    bus.wait(wf_name, lambda s: s.jobs["first.sh"].state.value == "RUNNING", 30,
             "the first job to run")
    dead = wait_until(lambda: owner(bus, wf_name, "first.sh"), 15,
                      "the registry to name the job's executor")
    assert dead in REPLICAS
    services.kill(f"executor:{dead}", signal.SIGKILL)
    return str(dead)


def check_outcome(tmp_path: Path, bus: Any, wf_name: str, dead: str) -> None:
    snap = bus.wait(wf_name, lambda s: s.state.terminal, 60, "the workflow to end")
    assert snap.state.value == "SUCCEEDED"
    assert snap.jobs["first.sh"].state.value == "SUCCEEDED"
    assert snap.jobs["first.sh"].attempt == 1
    assert snap.jobs["child.sh"].state.value == "SUCCEEDED"
    assert (tmp_path / "ledger").read_text().split() == ["first", "child"], \
        "a job ran twice or not at all"
    ends = [e for e in bus.events(wf_name, "first.sh")
            if e.type in ("succeeded", "failed", "canceled")]
    assert [e.type for e in ends] == ["succeeded"]
    survivors = tuple(n for n in REPLICAS if n != dead)
    texts = logs(tmp_path, REPLICAS)
    for name, text in texts.items():
        assert "Traceback" not in text, f"{name}: {text}"
    adopters = [n for n in survivors if f"adopted {wf_name}/first.sh" in texts[n]]
    assert len(adopters) == 1, texts


def test_survivor_adopts_a_running_job_of_a_killed_replica(tmp_path: Path, bus: Any,
                                                           services: Any) -> None:
    dead = run_and_kill_owner(tmp_path, bus, services, "adoptrun")
    # The job runs on without its executor (detached): it shows RUNNING until a survivor
    # claims it, then the survivor watches its pid.
    new = wait_until(lambda: (o := owner(bus, "adoptrun", "first.sh")) not in (None, dead)
                     and o, 4 * ADOPT_AFTER, "a survivor to claim the dead replica's job")
    assert new in REPLICAS and new != dead
    assert bus.snapshot("adoptrun").jobs["first.sh"].state.value == "RUNNING"
    (tmp_path / "go").touch()
    check_outcome(tmp_path, bus, "adoptrun", dead)


def test_job_that_ended_unwatched_is_resolved_from_its_exit_file(tmp_path: Path, bus: Any,
                                                                 services: Any,
                                                                 home: Path) -> None:
    dead = run_and_kill_owner(tmp_path, bus, services, "adoptexit")
    (tmp_path / "go").touch()  # the job ends while no executor watches it
    wait_until(lambda: list(home.glob("runs/adoptexit/*/first.sh/1/exit")), 15,
               "the orphaned job to write its exit file")
    assert bus.snapshot("adoptexit").jobs["first.sh"].state.value == "RUNNING"
    check_outcome(tmp_path, bus, "adoptexit", dead)


def test_replica_that_comes_back_leaves_an_adopted_job(tmp_path: Path, bus: Any,
                                                       services: Any) -> None:
    """A paused replica (SIGSTOP: silent, but its process and connection survive) whose
    job was adopted meanwhile stops watching it when it resumes: one end event."""
    wf = write_workflow(tmp_path, "adoptback", {"first.sh": {}, "child.sh": {}},
                        ["first.sh,child.sh"], files={"first.sh": FIRST, "child.sh": CHILD})
    start_stack(services, bus)
    bus.submit(wf)
    bus.wait("adoptback", lambda s: s.jobs["first.sh"].state.value == "RUNNING", 30,
             "the first job to run")
    paused = wait_until(lambda: owner(bus, "adoptback", "first.sh"), 15,
                        "the registry to name the job's executor")
    proc = services.procs[f"executor:{paused}"]
    proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: owner(bus, "adoptback", "first.sh") not in (None, paused),
                   4 * ADOPT_AFTER, "a survivor to claim the paused replica's job")
    finally:
        proc.send_signal(signal.SIGCONT)
    log = tmp_path / f"executor_{paused}.log"
    wait_until(lambda: "leaving it" in log.read_text(), 30,
               "the resumed replica to leave the adopted job")
    (tmp_path / "go").touch()
    check_outcome(tmp_path, bus, "adoptback", str(paused))
