"""What keeps a big run's memory down without changing what is stored or read (issue 19):
run records encoded without text copies (services/monitor/history.py), a big spec's jobs
sharing their pydantic ``model_fields_set`` (libs/common/spec.py), and a big submission
decoded once per process with that sharing (libs/common/follow.py)."""

from __future__ import annotations

import json
from pathlib import Path

from jobmesh.common import bus
from jobmesh.common.follow import decode_shared
from jobmesh.common.loader import parse_workflow
from jobmesh.common.messages import JobStatus, WorkflowSnapshot, WorkflowSubmitted
from jobmesh.common.packing import pack, unpack
from jobmesh.common.spec import SHARE_FIELDS_SET_FROM, JobSpec, Workflow, share_fields_set
from jobmesh.common.states import JobState
from jobmesh.monitor import history


def _old_record(snap: WorkflowSnapshot, queued: dict[str, float]) -> bytes:
    return pack(b'{"queued":' + json.dumps(queued).encode() + b',"snapshot":' +
                snap.model_dump_json(exclude_none=True).encode() + b"}")


def test_a_run_record_is_what_it_was() -> None:
    for n in (2, 4000):  # plain JSON, and compressed
        snap = WorkflowSnapshot(name="w", run="r", jobs={
            f"j{i}": JobStatus(state=JobState.SUCCEEDED, msg="é ü", outputs={"x": 1.5})
            for i in range(n)})
        queued = {f"j{i}": 1.7e9 + i / 7 for i in range(n)}
        data = history.record(snap, queued)
        assert unpack(data) == unpack(_old_record(snap, queued))
        assert (data[:1] == b"x") == (n > 2)
        back, q = history.read_record(data)
        assert back == snap and q == queued


def _sweep(n: int) -> str:
    return ("name: sweep\nworkflow:\n  nodes:\n    train:\n      exec: 'true {x}'\n"
            "      env: {X: '{x}'}\n"
            f"      foreach: {{x: '[1-{n}]'}}\n")


def test_a_big_sweeps_jobs_share_one_fields_set_and_encode_as_before() -> None:
    wf = parse_workflow(_sweep(SHARE_FIELDS_SET_FROM), "s.yaml", "/tmp",
                        allow_large=True).workflow
    sets = {id(j.__pydantic_fields_set__) for j in wf.jobs.values()}
    assert len(sets) == 1
    one = next(iter(wf.jobs.values()))
    assert {"name", "exec", "env", "params", "foreach_of"} <= one.model_fields_set
    fresh = {n: JobSpec.model_validate(j.model_dump()) for n, j in wf.jobs.items()}
    assert wf.model_copy(update={"jobs": fresh}).digest() == wf.digest()
    assert wf.model_dump_json() == wf.model_copy(
        update={"jobs": fresh}).model_dump_json()
    small = parse_workflow(_sweep(10), "s.yaml", "/tmp").workflow
    assert len({id(j.__pydantic_fields_set__) for j in small.jobs.values()}) == 10


def test_a_big_sweeps_jobs_share_their_empty_lists_and_dicts_only() -> None:
    wf = parse_workflow(_sweep(SHARE_FIELDS_SET_FROM), "s.yaml", "/tmp",
                        allow_large=True).workflow
    jobs = list(wf.jobs.values())
    for name in ("args", "after", "inputs", "outputs", "parameters"):
        assert len({id(getattr(j, name)) for j in jobs}) == 1, name
    assert len({id(j.env) for j in jobs}) == len(jobs)  # {X: ...}: each its own
    assert jobs[0].env != jobs[1].env and jobs[0].args == [] and jobs[0].parameters == {}
    fresh = {n: JobSpec.model_validate(j.model_dump()) for n, j in wf.jobs.items()}
    assert wf.model_dump_json() == wf.model_copy(update={"jobs": fresh}).model_dump_json()
    mixed = [JobSpec(name=f"m{i}", args=["a"] if i % 2 else []) for i in range(1000)]
    share_fields_set(mixed)
    assert mixed[1].args == ["a"] and mixed[1].args is not mixed[3].args
    assert mixed[0].args == [] and mixed[0].args is mixed[2].args


def test_a_big_sweeps_equal_env_values_are_one_string() -> None:
    text = ("name: sweep\nworkflow:\n  nodes:\n    train:\n      exec: 'true {x} {y}'\n"
            "      env: {X: 'x={x}', Y: 'y={y}'}\n"
            f"      foreach: {{x: '[1-{SHARE_FIELDS_SET_FROM}]', y: [a, b]}}\n")
    jobs = list(parse_workflow(text, "s.yaml", "/tmp", allow_large=True).workflow.jobs.values())
    ys = [j.env["Y"] for j in jobs]
    assert sorted(set(ys)) == ["y=a", "y=b"] and len({id(y) for y in ys}) == 2
    assert len({id(j.env["X"]) for j in jobs}) == SHARE_FIELDS_SET_FROM  # one per x
    assert jobs[0].env == {"X": "x=1", "Y": "y=a"} and jobs[1].env == {"X": "x=1", "Y": "y=b"}


def test_share_fields_set_keeps_different_sets_apart() -> None:
    jobs = [JobSpec(name=f"a{i}", exec="x") if i % 2 else JobSpec(name=f"b{i}")
            for i in range(SHARE_FIELDS_SET_FROM)]
    share_fields_set(jobs)
    assert {frozenset(j.model_fields_set) for j in jobs} == {
        frozenset({"name", "exec"}), frozenset({"name"})}
    assert len({id(j.__pydantic_fields_set__) for j in jobs}) == 2


def test_a_big_submission_is_decoded_once_with_shared_sets() -> None:
    wf = parse_workflow(_sweep(SHARE_FIELDS_SET_FROM + 5), "s.yaml", "/tmp",
                        allow_large=True).workflow
    data = bus.encode(WorkflowSubmitted(workflow="sweep", run="r", spec=wf, time=1.0))
    item = decode_shared(7, data)
    assert decode_shared(7, data) is item
    assert len({id(j.__pydantic_fields_set__) for j in item.spec.jobs.values()}) == 1
    one = next(iter(item.spec.jobs.values()))
    copy = one.model_copy(update={"timeout": 5.0})  # a copy gets a set of its own
    assert "timeout" in copy.model_fields_set and "timeout" not in one.model_fields_set
    assert item.spec.model_dump_json() == Workflow.model_validate_json(
        wf.model_dump_json()).model_dump_json()


def test_the_monitor_hands_over_only_the_snapshot_it_stored(tmp_path: Path) -> None:
    """``jobmesh run`` takes its final snapshot from the in-process monitor only when it
    is the one in the bucket: same run and seq, ended, written, stored whole."""
    from jobmesh.common.messages import JobSucceeded
    from jobmesh.common.settings import Settings
    from jobmesh.common.states import WorkflowState
    from jobmesh.monitor.app import MonitorService

    mon = MonitorService(Settings(home=tmp_path))
    wf = parse_workflow("name: w\nworkflow:\n  nodes:\n    a:\n      exec: 'true'\n",
                        "w.yaml", "/tmp").workflow
    mon.fold.apply(1, WorkflowSubmitted(workflow="w", run="r", spec=wf, time=1.0))
    assert mon.final_of("w", "r", 1) is None  # running
    mon.fold.apply(2, JobSucceeded(workflow="w", run="r", job="a", time=2.0))
    snap = mon.fold.snaps["w"]
    assert snap.state is WorkflowState.SUCCEEDED
    assert mon.final_of("w", "r", 2) is snap
    assert mon.final_of("w", "r", 1) is None  # not the seq stored
    assert mon.final_of("w", "other", 2) is None and mon.final_of("x", "r", 2) is None
    mon.dirty.add("w")  # folded, not written yet
    assert mon.final_of("w", "r", 2) is None
    mon.dirty.clear()
    mon.trim["w"] = "r"  # stored without outputs: not the fold's state
    assert mon.final_of("w", "r", 2) is None


def test_a_big_runs_job_statuses_share_one_fields_set_and_fold_as_before() -> None:
    """...and one empty outputs dict and history list, which the rule replaces rather
    than changes (a change in place would show in every job's outputs)."""
    from jobmesh.common.messages import JobProgressed, JobStarted, JobSucceeded
    from jobmesh.monitor.fold import Fold

    wf = parse_workflow(_sweep(SHARE_FIELDS_SET_FROM), "s.yaml", "/tmp",
                        allow_large=True).workflow
    fold = Fold()
    fold.apply(1, WorkflowSubmitted(workflow="sweep", run="r", spec=wf, time=1.0))
    snap = fold.snaps["sweep"]
    assert len({id(j.outputs) for j in snap.jobs.values()}) == 1
    assert len({id(j.history) for j in snap.jobs.values()}) == 1
    seq = 1
    for i, name in enumerate(wf.jobs):
        for ev in (JobStarted(workflow="sweep", run="r", job=name, time=2.0,
                              host="".join(["h", "ost"]), native_id="7", run_dir="/d"),
                   JobProgressed(workflow="sweep", run="r", job=name, time=2.5, progress=5,
                                 outputs={"p": i} if i % 2 else {}),
                   JobSucceeded(workflow="sweep", run="r", job=name, time=3.0,
                                outputs={"k": name})):
            seq += 1
            fold.apply(seq, ev)
    assert len({id(j.__pydantic_fields_set__) for j in snap.jobs.values()}) == 1
    assert len({id(j.host) for j in snap.jobs.values()}) == 1  # one string per host
    for i, (name, js) in enumerate(snap.jobs.items()):
        assert js == JobStatus(**js.model_dump())
        assert js.state is JobState.SUCCEEDED
        assert js.outputs == ({"p": i, "k": name} if i % 2 else {"k": name})
        assert js.host == "host" and js.started == 2.0 and js.ended == 3.0
        assert js.history == []
    assert WorkflowSnapshot.model_validate_json(bus.encode(snap)) == snap


def test_a_submission_of_this_process_is_built_around_its_own_spec() -> None:
    """``jobmesh run``'s own scheduler and monitor take the spec it submitted
    (follow.submitting) instead of decoding a second copy; anything else is decoded."""
    from jobmesh.common import follow
    from jobmesh.common.packing import pack

    wf = parse_workflow(_sweep(SHARE_FIELDS_SET_FROM), "s.yaml", "/tmp",
                        allow_large=True).workflow
    for cache, parallel, when in ((True, 2, 1733320000.125), (False, 16, 5e-07)):
        msg = WorkflowSubmitted(workflow="sweep", run=f"r{parallel}", spec=wf,
                                parallel=parallel, time=when, cache=cache)
        data = pack(bus.encode(msg))
        follow.submitting(wf, msg.run)
        item = decode_shared(100 + parallel, data)
        assert item.spec is wf and item == msg
        assert decode_shared(100 + parallel, data) is item  # the other follower
        follow.submitted("sweep", msg.run)
    other = WorkflowSubmitted(workflow="sweep", run="r9", spec=wf, time=1.0)
    follow.submitting(wf, "r8")  # another run: decoded
    item = decode_shared(200, pack(bus.encode(other)))
    assert item.spec is not wf and item == other
    follow.submitted("sweep", "r8")
    assert not follow._local


def test_jobmesh_run_reads_a_stored_snapshots_head_without_unpacking_it_all() -> None:
    from jobmesh.cli.run_core import _front
    from jobmesh.common.states import WorkflowState

    for n in (1, 5000):  # plain, and packed
        snap = WorkflowSnapshot(name="w", run="r1", state=WorkflowState.RUNNING, seq=9,
                                jobs={f"j{i}": JobStatus() for i in range(n)})
        stored = pack(bus.encode(snap))
        assert (stored[:1] == b"x") == (n > 1)
        assert _front(stored) == ("r1", "RUNNING", None)
    assert _front(b'{"run":"r1"}') is None and _front(b"x\x00garbage") is None
