"""The scheduler's checkpoint re-encodes only the workflows whose cached attempts changed
(services/scheduler/checkpoint.py, version 3), keeps big ones apart, and still reads
versions 1 and 2."""

from __future__ import annotations

import json

import pytest

from jobmesh.common.messages import JobReadied, JobSucceeded, WorkflowDeleted
from jobmesh.scheduler import checkpoint
from jobmesh.scheduler.core import SchedulerCore

from .test_checkpoint import finished_core

pytestmark = pytest.mark.unit


def two_workflows() -> tuple[SchedulerCore, int]:
    core, seq = finished_core("w")
    other, _ = finished_core("v", run="r5")
    core.cache.done["v"] = other.cache.done["v"]
    core.cache.touch("v")
    core.finished["v"] = ("r5", 1)
    checkpoint.compact(core)
    return core, seq


def test_a_save_after_a_load_keeps_the_text_of_unchanged_workflows() -> None:
    core, seq = two_workflows()
    data = checkpoint.dump(core, seq, {})
    fresh = SchedulerCore()
    checkpoint.restore(fresh, data)
    kept = fresh.cache.encoded["v"]
    # A new success in w: w is encoded again, v's text is the very one loaded.
    fresh.cache.apply(JobReadied(workflow="w", run="r2", job="a", attempt=1,
                                 cache_key="ka2", time=5.0), "local")
    fresh.cache.apply(JobSucceeded(workflow="w", run="r2", job="a", attempt=1,
                                   exit_code=0, time=6.0))
    assert "w" not in fresh.cache.encoded
    again = checkpoint.dump(fresh, seq + 2, {})
    assert fresh.cache.encoded["v"] is kept
    last = SchedulerCore()
    checkpoint.restore(last, again)
    assert last.cache.lookup("w", "a", "ka2") is not None
    assert last.cache.lookup("w", "a", "ka") is not None
    entry = last.cache.lookup("v", "a", "ka")
    assert entry is not None and entry.run == "r5" and entry.outputs == {"n": "1"}


def test_a_deleted_workflow_leaves_the_next_save() -> None:
    core, seq = two_workflows()
    checkpoint.dump(core, seq, {})
    core.apply(WorkflowDeleted(workflow="v", run="r5", time=7.0), seq + 1)
    doc = json.loads(checkpoint.dump(core, seq + 1, {}))
    assert set(doc["cache"]) == {"w"} and set(doc["finished"]) == {"w"}
    fresh = SchedulerCore()
    checkpoint.restore(fresh, json.dumps(doc).encode())
    assert fresh.cache.lookup("v", "a", "ka") is None


def test_a_version_1_checkpoint_is_still_read() -> None:
    core, seq = two_workflows()
    doc = json.loads(checkpoint.dump(core, seq, {}))
    doc["version"] = 1
    doc["cache"] = {wf: json.loads(text) for wf, text in doc["cache"].items()}
    fresh = SchedulerCore()
    assert checkpoint.restore(fresh, json.dumps(doc).encode())[0] == seq
    assert fresh.cache.encoded == {}  # encoded at the next save
    assert fresh.cache.lookup("v", "b", "kb") is not None
    assert json.loads(checkpoint.dump(fresh, seq, {}))["version"] == checkpoint.VERSION


def test_a_workflow_whose_cache_is_not_text_is_refused() -> None:
    core, seq = two_workflows()
    doc = json.loads(checkpoint.dump(core, seq, {}))
    doc["cache"]["w"] = {"a": []}
    fresh = SchedulerCore()
    with pytest.raises(ValueError, match="malformed"):
        checkpoint.restore(fresh, json.dumps(doc).encode())
    assert fresh.cache.done == {} and fresh.cache.encoded == {}


def test_a_load_decodes_a_workflow_only_when_it_is_needed() -> None:
    core, seq = two_workflows()
    data = checkpoint.dump(core, seq, {})
    fresh = SchedulerCore()
    checkpoint.restore(fresh, data)
    assert fresh.cache.done == {} and set(fresh.cache.unread) == {"w", "v"}
    assert fresh.cache.lookup("w", "a", "ka") is not None
    assert set(fresh.cache.done) == {"w"} and set(fresh.cache.unread) == {"v"}
    # Saving again keeps the undecoded workflow's text as it was loaded.
    doc = json.loads(checkpoint.dump(fresh, seq, {}))
    assert doc["cache"] == json.loads(data)["cache"]
    # A delete drops it without decoding it.
    fresh.apply(WorkflowDeleted(workflow="v", run="r5", time=7.0), seq + 1)
    assert "v" not in fresh.cache.unread and "v" not in fresh.cache.encoded


def test_an_unreadable_workflow_cache_means_its_jobs_run_again(
        caplog: pytest.LogCaptureFixture) -> None:
    core, seq = two_workflows()
    doc = json.loads(checkpoint.dump(core, seq, {}))
    doc["cache"]["v"] = '{"a": [{"nokey": 1}]}'
    fresh = SchedulerCore()
    checkpoint.restore(fresh, json.dumps(doc).encode())
    assert fresh.cache.lookup("v", "a", "ka") is None
    assert "cannot read its cached attempts" in caplog.text
    assert fresh.cache.lookup("w", "a", "ka") is not None
    assert set(json.loads(checkpoint.dump(fresh, seq, {}))["cache"]) == {"w"}


def test_a_big_workflow_cache_is_stored_apart_written_once_and_read_when_needed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 3: a cache text over INLINE is named in the document and written as its
    own object only when it changed; a load leaves it unread (no bytes of it) until a
    message of that workflow comes."""
    monkeypatch.setattr(checkpoint, "INLINE", 10)  # every workflow counts as big here
    core, seq = two_workflows()
    stored = checkpoint.Stored()
    doc = json.loads(checkpoint.dump(core, seq, {}, stored))
    assert doc["cache"] == {} and doc["stored"] == ["v", "w"]
    assert set(stored.due) == {"v", "w"}
    texts = dict(stored.due)
    stored.written.update(stored.due)  # what write_caches does once they are stored
    stored.due.clear()
    checkpoint.dump(core, seq, {}, stored)
    assert stored.due == {}  # unchanged: not written again

    fresh, again = SchedulerCore(), checkpoint.Stored()
    checkpoint.restore(fresh, json.dumps(doc).encode(), again)
    assert again.unfetched == {"v", "w"} and fresh.cache.unread == {}
    assert fresh.cache.lookup("v", "b", "kb") is None  # not read yet
    # Saved again before anything was read: still named, nothing to write.
    redo = json.loads(checkpoint.dump(fresh, seq + 1, {}, again))
    assert redo["stored"] == ["v", "w"] and again.due == {}
    # What checkpoint.fetch puts in place once the object is read:
    fresh.cache.unread["v"] = fresh.cache.encoded["v"] = again.written["v"] = texts["v"]
    again.unfetched.discard("v")
    assert fresh.cache.lookup("v", "b", "kb") is not None
    checkpoint.dump(fresh, seq + 1, {}, again)
    assert again.due == {}  # the text read is the one stored


def test_a_deleted_big_workflow_is_dropped_from_the_store(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "INLINE", 10)
    core, seq = two_workflows()
    stored = checkpoint.Stored()
    checkpoint.dump(core, seq, {}, stored)
    stored.written.update(stored.due)
    stored.due.clear()
    core.apply(WorkflowDeleted(workflow="v", run="r5", time=7.0), seq + 1)
    doc = json.loads(checkpoint.dump(core, seq + 1, {}, stored))
    assert doc["stored"] == ["w"] and stored.dropped == {"v"}


def test_a_document_naming_stored_caches_needs_them() -> None:
    core, seq = two_workflows()
    doc = json.loads(checkpoint.dump(core, seq, {}))
    doc["stored"] = ["x"]
    with pytest.raises(ValueError, match="stored apart"):
        checkpoint.restore(SchedulerCore(), json.dumps(doc).encode())


def test_a_big_workflow_cache_is_kept_as_stored_and_reads_the_same() -> None:
    """A cache text over INLINE is encoded and compressed a job at a time and kept as
    the stored (packed) bytes: the same JSON as a whole encode, ~10x smaller in memory;
    a small one stays the same text as before."""
    from jobmesh.common.packing import unpack
    from jobmesh.scheduler.cache import Entry

    def entries(n: int) -> dict[str, Entry]:
        return {f"job-{i}": Entry(f"{i:064x}", "r1", 1, "local",
                                  run_dir=f"/runs/w/r1/job-{i}/1",
                                  host="h", started=1.5 + i, ended=2.5 + i,
                                  outputs={"n": i} if i % 2 else {},
                                  older=(Entry("old", "r0", 1, "local"),) if i == 2 else ())
                for i in range(n)}

    def whole(jobs: dict[str, Entry]) -> str:
        return json.dumps({job: [e.as_dict() for e in latest.versions()]
                           for job, latest in jobs.items()}, separators=(",", ":"))

    for n in (0, 1, 3):
        assert checkpoint._encode(entries(n)) == whole(entries(n))
    big = entries(3000)
    packed = checkpoint._encode(big)
    assert isinstance(packed, bytes) and len(packed) < len(whole(big)) / 5
    assert unpack(packed).decode() == whole(big)

    core = SchedulerCore()
    core.cache.done["w"] = big
    core.finished["w"] = ("r1", 1)
    stored = checkpoint.Stored()
    doc = json.loads(checkpoint.dump(core, 9, {}, stored))
    assert doc["stored"] == ["w"] and stored.due["w"] is core.cache.encoded["w"]
    inline = json.loads(checkpoint.dump(core, 9, {}))  # without Stored: all inside
    assert inline["cache"]["w"] == whole(big)
    fresh = SchedulerCore()
    checkpoint.restore(fresh, json.dumps(doc).encode(), checkpoint.Stored())
    fresh.cache.unread["w"] = fresh.cache.encoded["w"] = packed  # as fetch leaves it
    entry = fresh.cache.lookup("w", "job-7", f"{7:064x}")
    assert entry is not None and entry.outputs == {"n": 7} and entry.run_dir == \
        "/runs/w/r1/job-7/1"


def test_a_job_keeps_its_latest_few_keys_through_a_checkpoint() -> None:
    from jobmesh.scheduler.cache import KEEP

    core = SchedulerCore()
    keys = ["k0", "k1", "k2", "k3", "k1", "k4", "k5"]  # k1 succeeds again: newest then
    for i, key in enumerate(keys):
        run = f"r{i}"
        core.cache.apply(JobReadied(workflow="w", run=run, job="a", attempt=1,
                                    cache_key=key, time=float(i)), "local")
        core.cache.apply(JobSucceeded(workflow="w", run=run, job="a", attempt=1,
                                      exit_code=0, time=i + 0.5))
    assert KEEP == 4
    core.finished["w"] = ("r6", 1)
    fresh = SchedulerCore()
    checkpoint.restore(fresh, checkpoint.dump(core, 20, {}))
    for index in (core.cache, fresh.cache):
        present = [k for k in ("k0", "k1", "k2", "k3", "k4", "k5")
                   if index.lookup("w", "a", k) is not None]
        assert present == ["k1", "k3", "k4", "k5"]
        hit = index.lookup("w", "a", "k1")
        assert hit is not None and hit.run == "r4"  # the later success of k1
        assert [e.key for e in index.done["w"]["a"].versions()] == ["k3", "k1", "k4", "k5"]


def test_a_stored_entry_with_a_field_it_does_not_store_is_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    """A cache text whose entry has an unknown field, or ``older`` (the chain is the
    list, never a field), is not read: logged, and that workflow's jobs run again."""
    good = {"key": "k", "run": "r1", "attempt": 1, "kind": "local"}
    for bad in ({**good, "older": [{"key": "x"}]}, {**good, "surprise": 1}):
        core = SchedulerCore()
        core.cache.unread["w"] = json.dumps({"a": [bad]})
        assert core.cache.lookup("w", "a", "k") is None
        assert core.cache.lookup("w", "a", "x") is None
    assert "cannot read its cached attempts" in caplog.text
    core = SchedulerCore()
    core.cache.unread["w"] = json.dumps({"a": [good]})
    assert core.cache.lookup("w", "a", "k") is not None
