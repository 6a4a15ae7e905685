"""Opt-in native Slurm dependencies in the scheduler core (services/scheduler/native.py)."""

from __future__ import annotations

from typing import Any

import pytest

from jobmesh.common.messages import JobFailed, JobQueued, JobStarted, JobSucceeded
from jobmesh.common.states import JobState
from jobmesh.scheduler.core import CancelRunning, ReleaseJob

from ._build import workflow
from ._schedsim import Sim

pytestmark = pytest.mark.unit

SLURM = {"kind": "slurm", "exec": "true", "slurm_dependencies": True}


class NativeSim(Sim):
    def queued(self, job: str, native_id: str, attempt: int = 1) -> None:
        self.ev(JobQueued, job, attempt, native_id=native_id, reason="Priority")


def released(out: list[Any]) -> dict[str, tuple[str, ...]]:
    return {i.job: i.native_deps for i in out if isinstance(i, ReleaseJob)}


def chain(**overrides: dict[str, Any]) -> Any:
    specs = {n: {**SLURM, **overrides.get(n, {})} for n in ("a", "b", "c")}
    return workflow([("a", "b"), ("b", "c")], **specs)


def test_a_chain_is_submitted_while_its_head_waits_in_the_queue() -> None:
    sim = NativeSim(chain(), parallel=10)
    assert released(sim.step()) == {"a": ()}
    sim.queued("a", "101")
    assert released(sim.step()) == {"b": ("afterok:101",)}
    sim.queued("b", "102")
    assert released(sim.step()) == {"c": ("afterok:102",)}
    # Parents ending later release nothing twice.
    for job in ("a", "b", "c"):
        sim.ev(JobStarted, job)
        sim.ev(JobSucceeded, job, exit_code=0)
        assert released(sim.step()) == {}
    assert sim.core.runs["w"].finished


def test_without_the_option_a_child_waits_in_jobmesh() -> None:
    sim = NativeSim(chain(b={"slurm_dependencies": False}), parallel=10)
    sim.step()
    sim.queued("a", "101")
    assert released(sim.step()) == {}
    sim.ev(JobSucceeded, "a", exit_code=0)
    assert released(sim.step()) == {"b": ()}


@pytest.mark.parametrize("parent, child", [
    ({"retries": 2}, {}),                                   # Slurm would kill b after try 1
    ({"host": "login1"}, {}),                               # another cluster
    ({"kind": "local", "slurm_dependencies": None}, {}),    # not a Slurm parent
    ({}, {"exec": "echo {parents.a.outputs.x}"}),           # needs a's output
    ({}, {"inputs": ["data.csv"]}),                         # stages files at submit
    ({}, {"when": "parents.a.exit_code == 0"}),             # a condition on a
])
def test_children_that_need_their_parent_wait_in_jobmesh(parent: dict[str, Any],
                                                         child: dict[str, Any]) -> None:
    sim = NativeSim(chain(a=parent, b=child), parallel=10)
    sim.step()
    sim.queued("a", "101")
    assert released(sim.step()) == {}


def test_allow_failure_parent_chains_with_afterany_and_done_parents_drop_out() -> None:
    spec = workflow([("a", "c"), ("b", "c")], a={**SLURM, "allow_failure": True}, b=SLURM,
                    c=SLURM)
    sim = NativeSim(spec, parallel=10)
    assert set(released(sim.step())) == {"a", "b"}
    sim.ev(JobSucceeded, "b", exit_code=0)
    sim.step()
    sim.queued("a", "7")
    assert released(sim.step()) == {"c": ("afterany:7",)}


def test_a_failed_head_skips_the_queued_chain_and_cancels_it() -> None:
    sim = NativeSim(chain(), parallel=10)
    sim.step()
    sim.queued("a", "101")
    sim.step()
    sim.queued("b", "102")
    sim.step()
    sim.ev(JobStarted, "a")
    sim.ev(JobFailed, "a", exit_code=1)
    out = sim.step()
    assert sim.state("b") is JobState.SKIPPED and sim.state("c") is JobState.SKIPPED
    cancels = {i.job for i in out if isinstance(i, CancelRunning)}
    assert cancels == {"b", "c"}
    assert sim.core.runs["w"].active == 0 and sim.core.runs["w"].finished


def test_dependencies_survive_a_scheduler_restart() -> None:
    sim = NativeSim(chain(), parallel=10)
    sim.step()
    sim.queued("a", "101")
    sim.step()
    again = released(sim.replay().decide(2.0))  # a new core that read the same log
    assert again["b"] == ("afterok:101",)


def test_the_parallel_limit_holds_for_chained_jobs() -> None:
    sim = NativeSim(chain(), parallel=2)
    sim.step()
    sim.queued("a", "101")
    assert released(sim.step()) == {"b": ("afterok:101",)}
    sim.queued("b", "102")
    assert released(sim.step()) == {}  # a and b hold both slots
    sim.ev(JobStarted, "a")
    sim.ev(JobSucceeded, "a", exit_code=0)
    assert released(sim.step()) == {"c": ("afterok:102",)}


def test_an_array_elements_id_chains_and_anything_else_waits_in_jobmesh() -> None:
    sim = NativeSim(chain(), parallel=10)
    sim.step()
    sim.queued("a", "4242_7")  # a foreach element submitted in a job array
    assert released(sim.step()) == {"b": ("afterok:4242_7",)}
    sim = NativeSim(chain(), parallel=10)
    sim.step()
    sim.queued("a", "4242_7;touch x")  # not a Slurm id: never into a command line
    assert released(sim.step()) == {}
