"""Control flow in the pure cores: the scheduler decides, the monitor's fold agrees.

Every test runs the scheduler core like its shell does (``_schedsim.Sim``: each
instruction becomes the shell's messages, and those for the log come back to the core)
and folds the same log, so the workflow's final state is checked too.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from jobmesh.common.loader import parse_workflow
from jobmesh.common.states import JobState, WorkflowState
from jobmesh.monitor.fold import Fold
from jobmesh.monitor.graph import layered_svg, layout_key
from jobmesh.scheduler.core import ExpandJob, MarkJob, ReleaseJob
from jobmesh.scheduler.flow import NO_OUTPUTS

from . import _schedsim
from ._schedsim import released

pytestmark = pytest.mark.unit


def load(nodes: dict[str, Any], deps: list[str] | None = None, **top: Any) -> Any:
    text = yaml.safe_dump({"name": "w", **top, "workflow": {
        "nodes": nodes, "dependencies": deps or []}}, sort_keys=False)
    return parse_workflow(text, "w.yaml", "/tmp").workflow


class Sim(_schedsim.Sim):
    """The shared simulator (the shipping shell's messages) with the monitor's fold."""

    def __init__(self, spec: Any, parallel: int = 100):
        super().__init__(spec, parallel, fold=True)


def marks(out: list[Any], state: JobState) -> list[tuple[str, str]]:
    return [(i.job, i.reason) for i in out if isinstance(i, MarkJob) and i.state is state]


# -- foreach ----------------------------------------------------------------------------

def test_sweep_of_nine_runs_nine_commands_and_fan_in_waits_for_all() -> None:
    spec = load({"train": {"foreach": {"gpu": ["a100", "v100", "k80"], "epochs": [10, 30, 50]},
                           "exec": "train --gpu {gpu} --epochs {epochs} --env {env}"},
                 "report": {"exec": "true"}}, ["train,report"], variables={"env": "dev"})
    sim = Sim(spec)
    out = sim.step()
    cmds = {i.job: i.spec.exec for i in out if isinstance(i, ReleaseJob)}
    assert len(cmds) == 9
    assert cmds["train-gpu_v100-epochs_30"] == "train --gpu v100 --epochs 30 --env dev"
    assert {c.split()[2] + "/" + c.split()[4] for c in cmds.values()} == {
        f"{g}/{e}" for g in ("a100", "v100", "k80") for e in (10, 30, 50)}
    for name in list(cmds)[:-1]:
        sim.done(name)
        assert sim.step() == []  # report waits for every one of the nine
    sim.done(list(cmds)[-1])
    assert released(sim.step()) == ["report"]
    sim.done("report")
    assert sim.snap.state is WorkflowState.SUCCEEDED and len(sim.snap.jobs) == 10


def dynamic(**proc: Any) -> Any:
    return load({"split": {"exec": "split"},
                 "proc": {"foreach": {"chunk": "{parents.split.outputs.chunks}"},
                          "exec": "proc {chunk}", **proc},
                 "merge": {"exec": "merge"}}, ["split,proc,merge"])


def test_dynamic_fan_out_over_a_parent_output() -> None:
    sim = Sim(dynamic())
    assert released(sim.step()) == ["split"]
    assert list(sim.snap.jobs) == ["split", "proc", "merge"]
    sim.done("split", outputs={"chunks": ["c1", "c2", "c3", "c4", "c5"]})
    out = sim.step()
    (exp,) = [i for i in out if isinstance(i, ExpandJob)]
    assert exp.job == "proc" and list(exp.jobs) == [f"proc-chunk_c{i}" for i in range(1, 6)]
    assert ("split", "proc-chunk_c1") in exp.edges and ("proc-chunk_c5", "merge") in exp.edges
    assert released(out) == list(exp.jobs)
    assert [i.spec.exec for i in out if isinstance(i, ReleaseJob)][0] == "proc c1"
    # the fold grew the same way, in place of the foreach node; the graph's layout key moved
    assert list(sim.snap.jobs) == ["split", *exp.jobs, "merge"]
    assert layout_key(sim.snap) == ("r1", 1)
    assert sim.snap.expansions == 1 and ("proc-chunk_c3", "merge") in sim.snap.edges
    assert "proc" not in sim.fold.specs["w"].jobs
    assert sim.fold.specs["w"].digest() == dynamic().digest()  # same spec for 'jobmesh run'
    for name in list(exp.jobs)[:4]:
        sim.done(name)
    assert sim.step() == []
    sim.done("proc-chunk_c5")
    assert released(sim.step()) == ["merge"]
    sim.done("merge")
    assert sim.snap.state is WorkflowState.SUCCEEDED
    assert sim.core.runs["w"].finished
    # the one empty outputs dict that jobs and cache entries share was replaced, not filled
    assert NO_OUTPUTS == {} and sim.core.runs["w"].jobs["split"].outputs["chunks"]


def test_dynamic_expansion_survives_a_restart_and_is_not_repeated() -> None:
    sim = Sim(dynamic())
    sim.step()
    sim.done("split", outputs={"chunks": [1, 2]})
    sim.step()
    sim.done("proc-chunk_1")
    core = sim.replay()
    out = core.decide(5)
    assert not [i for i in out if isinstance(i, ExpandJob)]
    assert released(out) == ["proc-chunk_2"]  # READY before the crash: sent again
    assert list(core.runs["w"].jobs) == ["split", "proc-chunk_1", "proc-chunk_2", "merge"]
    assert core.runs["w"].jobs["merge"].unmet == 1
    # a second fold from the same log agrees
    fold = Fold()
    for seq, msg in enumerate(sim.log, 1):
        fold.apply(seq, msg)
    assert fold.snaps["w"].model_dump() == sim.snap.model_dump()


def test_crash_before_the_expansion_was_published_expands_again_the_same_way() -> None:
    sim = Sim(dynamic())
    sim.step()
    sim.done("split", outputs={"chunks": ["x", "y"]})
    lost = sim.step(publish=False)
    core = sim.replay()
    again = core.decide(5)
    first = [i for i in lost if isinstance(i, ExpandJob)][0]
    second = [i for i in again if isinstance(i, ExpandJob)][0]
    assert (first.jobs, first.edges) == (second.jobs, second.edges)


@pytest.mark.parametrize("chunks,reason", [
    ("a,b", "needs a list, got str"),
    (None, "parent 'split' has no output 'chunks'"),
])
def test_dynamic_foreach_over_a_non_list_fails_the_node(chunks: Any, reason: str) -> None:
    sim = Sim(dynamic())
    sim.step()
    sim.done("split", outputs={"chunks": chunks} if chunks else {})
    out = sim.step()
    assert marks(out, JobState.FAILED)[0][0] == "proc"
    assert reason in marks(out, JobState.FAILED)[0][1]
    assert marks(out, JobState.SKIPPED) == [("merge", "an upstream job did not succeed")]
    assert sim.snap.state is WorkflowState.FAILED


def test_dynamic_foreach_over_an_empty_list_is_a_benign_skip() -> None:
    sim = Sim(dynamic())
    sim.step()
    sim.done("split", outputs={"chunks": []})
    out = sim.step()
    assert marks(out, JobState.SKIPPED) == [
        ("proc", "foreach over an empty list"),
        ("merge", "an upstream job was skipped (condition false)")]
    assert sim.snap.state is WorkflowState.SUCCEEDED


def test_dynamic_expansion_over_the_limit_fails_unless_allowed() -> None:
    sim = Sim(dynamic())
    sim.step()
    sim.done("split", outputs={"chunks": list(range(10_001))})
    (failed,) = marks(sim.step(), JobState.FAILED)
    assert failed[0] == "proc" and "--allow-large" in failed[1]
    spec = dynamic()
    spec.allow_large = True
    sim = Sim(spec)
    sim.step()
    sim.done("split", outputs={"chunks": list(range(10_001))})
    out = sim.step()
    assert len(out[0].jobs) == 10_001 and len(released(out)) == 100  # parallel limit


# -- when -------------------------------------------------------------------------------

def test_when_true_runs_and_false_skips_as_not_a_failure() -> None:
    spec = load({"prepare": {"exec": "true"},
                 "deploy": {"exec": "true", "when": "prepare.outputs.count > 0 and env == "
                            "'prod'"},
                 "notify": {"exec": "true"},
                 "cleanup": {"exec": "true", "when": "deploy.state != 'SUCCEEDED'"}},
                ["prepare,deploy,notify", "deploy,cleanup"], variables={"env": "prod"})
    sim = Sim(spec)
    sim.step()
    sim.done("prepare", outputs={"count": 0})
    out = sim.step()
    assert marks(out, JobState.SKIPPED) == [
        ("deploy", "condition false"),
        ("notify", "an upstream job was skipped (condition false)")]
    # cleanup has a when: of its own, so it is evaluated (deploy was skipped) and runs
    assert sim.state("cleanup") is JobState.READY and released(out) == ["cleanup"]
    sim.done("cleanup")
    assert sim.snap.jobs["deploy"].reason == "condition false" and sim.snap.jobs["deploy"].benign
    assert sim.snap.state is WorkflowState.SUCCEEDED

    sim = Sim(spec)
    sim.step()
    sim.done("prepare", outputs={"count": 3})
    assert released(sim.step()) == ["deploy"]
    sim.done("deploy")
    out = sim.step()
    assert released(out) == ["notify"] and marks(out, JobState.SKIPPED) == [
        ("cleanup", "condition false")]


def test_when_and_allow_failure_make_an_error_handler() -> None:
    spec = load({"risky": {"exec": "false", "allow_failure": True},
                 "on-error": {"exec": "true", "when": "risky.state == 'FAILED'"},
                 "on-success": {"exec": "true", "when": "risky.state == 'SUCCEEDED'"},
                 "after": {"exec": "true"}}, ["risky,on-error", "risky,on-success,after"])
    sim = Sim(spec)
    sim.step()
    sim.fail("risky")
    out = sim.step()
    assert released(out) == ["on-error"]
    assert marks(out, JobState.SKIPPED) == [
        ("on-success", "condition false"),
        ("after", "an upstream job was skipped (condition false)")]
    sim.done("on-error")
    # risky's failure is allowed and the rest are condition-false skips: success
    assert sim.snap.state is WorkflowState.SUCCEEDED


def test_a_failed_parent_skips_a_when_node_without_evaluating_it() -> None:
    spec = load({"a": {"exec": "false"}, "b": {"exec": "true", "when": "a.state == 'FAILED'"}},
                ["a,b"])
    sim = Sim(spec)
    sim.step()
    sim.fail("a")
    assert marks(sim.step(), JobState.SKIPPED) == [("b", "an upstream job did not succeed")]
    assert not sim.snap.jobs["b"].benign and sim.snap.state is WorkflowState.FAILED


def test_when_that_cannot_be_evaluated_fails_the_job() -> None:
    spec = load({"a": {"exec": "true"}, "b": {"exec": "true", "when": "a.outputs.n > 1"}},
                ["a,b"])
    sim = Sim(spec)
    sim.step()
    sim.done("a", outputs={"m": 1})
    (failed,) = marks(sim.step(), JobState.FAILED)
    assert failed == ("b", "when: job 'a' has no output 'n' (at column 1)")
    assert sim.snap.state is WorkflowState.FAILED


def test_when_sees_foreach_values() -> None:
    spec = load({"t": {"foreach": {"gpu": ["a100", "k80"]}, "exec": "true",
                       "when": "gpu != 'k80'"}})
    sim = Sim(spec)
    out = sim.step()
    assert released(out) == ["t-gpu_a100"]
    assert marks(out, JobState.SKIPPED) == [("t-gpu_k80", "condition false")]


def test_workflow_retry_reevaluates_a_condition() -> None:
    from jobmesh.common.messages import WorkflowRetryRequested

    spec = load({"a": {"exec": "true", "retries": 0},
                 "b": {"exec": "true", "when": "a.outputs.ok == true"},
                 "c": {"exec": "false"}}, ["a,b"])
    sim = Sim(spec)
    sim.step()
    sim.done("a", outputs={"ok": False})
    sim.fail("c")
    sim.step()
    assert sim.state("b") is JobState.SKIPPED and sim.snap.state is WorkflowState.FAILED
    sim.feed(WorkflowRetryRequested(workflow="w", run="r1", time=2))
    out = sim.step(2)
    assert sorted(released(out)) == ["c"] and sim.state("b") is JobState.SKIPPED


# -- repeat -----------------------------------------------------------------------------

def test_repeat_until_stops_at_the_right_iteration() -> None:
    spec = load({"train": {"exec": "train", "repeat": {"until": "outputs.loss < 0.1",
                                                       "max": 10, "delay": "30s"}},
                 "report": {"exec": "true"}}, ["train,report"])
    sim = Sim(spec)
    assert released(sim.step(0)) == ["train"]
    for it, loss in ((1, 0.5), (2, 0.2)):
        sim.done("train", attempt=it, outputs={"loss": loss})
        assert sim.snap.state is WorkflowState.RUNNING  # the fold knows it goes on
        out = sim.step(100)
        (mark,) = [i for i in out if isinstance(i, MarkJob)]
        assert (mark.job, mark.attempt, mark.iteration, mark.not_before) == (
            "train", it + 1, it + 1, 130.0)
        assert "until is false" in mark.reason
        assert released(out) == []                        # the delay
        assert released(sim.step(130)) == ["train"]
    sim.done("train", attempt=3, outputs={"loss": 0.05})
    assert released(sim.step(200)) == ["report"]
    js = sim.snap.jobs["train"]
    assert (js.attempt, js.iteration, js.outputs) == (3, 3, {"loss": 0.05})
    assert [(h["attempt"], h["iteration"], h["outputs"]) for h in js.history] == [
        (1, 1, {"loss": 0.5}), (2, 2, {"loss": 0.2})]
    sim.done("report")
    assert sim.snap.state is WorkflowState.SUCCEEDED


def test_repeat_max_bounds_the_loop() -> None:
    spec = load({"poll": {"exec": "true", "repeat": {"until": "outputs.ready", "max": 3}}})
    sim = Sim(spec)
    sim.step()
    for it in (1, 2):
        sim.done("poll", attempt=it)  # no output: until cannot be evaluated, so not done
        out = sim.step()
        assert "could not be evaluated" in marks(out, JobState.PENDING)[0][1]
        assert released(out) == ["poll"]
    sim.done("poll", attempt=3, outputs={"ready": False})
    assert sim.step() == []
    assert sim.core.runs["w"].finished and sim.snap.state is WorkflowState.SUCCEEDED
    assert sim.snap.jobs["poll"].attempt == 3


def test_repeat_of_a_group_reruns_every_member_in_order() -> None:
    spec = load({"prep": {"exec": "true"},
                 "fit": {"exec": "fit", "group": "loop"},
                 "score": {"exec": "score", "group": "loop",
                           "repeat": {"until": "outputs.acc >= 0.9", "max": 5}},
                 "publish": {"exec": "true"}}, ["prep,fit,score,publish"])
    sim = Sim(spec)
    sim.step()
    sim.done("prep")
    assert released(sim.step()) == ["fit"]
    sim.done("fit")
    assert released(sim.step()) == ["score"]
    sim.done("score", outputs={"acc": 0.5})
    out = sim.step()
    assert [(i.job, i.attempt, i.iteration) for i in out if isinstance(i, MarkJob)] == [
        ("fit", 2, 2), ("score", 2, 2)]
    assert released(out) == ["fit"]  # score waits for fit again
    sim.done("fit", attempt=2)
    assert released(sim.step()) == ["score"]
    sim.done("score", attempt=2, outputs={"acc": 0.95})
    assert released(sim.step()) == ["publish"]
    assert sim.state("prep") is JobState.SUCCEEDED and sim.snap.jobs["prep"].attempt == 1


def test_retries_count_within_an_iteration() -> None:
    spec = load({"a": {"exec": "x", "retries": 1, "repeat": {"until": "iteration >= 2",
                                                           "max": 5}}})
    sim = Sim(spec)
    sim.step()
    sim.done("a")                       # iteration 1 = attempt 1
    sim.step()
    sim.fail("a", attempt=2)            # iteration 2, first try fails: retried
    out = sim.step()
    assert marks(out, JobState.PENDING) == [("a", "retry (attempt 3)")]
    assert sim.snap.state is WorkflowState.RUNNING
    sim.done("a", attempt=3)
    assert sim.step() == [] and sim.snap.state is WorkflowState.SUCCEEDED


def test_repeat_restart_mid_loop() -> None:
    spec = load({"a": {"exec": "x", "repeat": {"until": "outputs.n >= 3", "max": 9}}})
    sim = Sim(spec)
    sim.step()
    sim.done("a", outputs={"n": 1})
    sim.step()
    sim.done("a", attempt=2, outputs={"n": 2})  # crash before the next iteration
    core = sim.replay()
    out = core.decide(5)
    assert [(i.job, i.attempt, getattr(i, "iteration", None)) for i in out] == [
        ("a", 3, 3), ("a", 3, None)]
    assert core.runs["w"].jobs["a"].iteration == 3


def test_variables_and_foreach_values_reach_host_and_other_text_attributes() -> None:
    spec = load({"t": {"foreach": {"gpu": ["a100"]}, "exec": "run", "host": "{gpu}-{site}",
                       "partition": "{queue}-{gpu}", "label": "{gpu} at {site}"}},
                variables={"site": "uva", "queue": "gpu"})
    sim = Sim(spec)
    (rel,) = sim.step()
    assert rel.spec.host == "a100-uva" and rel.spec.extras["partition"] == "gpu-a100"
    assert spec.jobs["t-gpu_a100"].label == "a100 at uva"  # labels: at load time


def test_the_grown_graph_draws_every_new_job() -> None:
    sim = Sim(dynamic())
    sim.step()
    sim.done("split", outputs={"chunks": ["a", "b"]})
    sim.step()
    svg = layered_svg(sim.fold.specs["w"], sim.snap, 2.0, None)
    assert "proc-chunk_a" in svg and "proc-chunk_b" in svg and ">proc<" not in svg


def test_a_loop_cut_short_by_cancel_goes_on_after_a_retry() -> None:
    from jobmesh.common.messages import WorkflowCancelRequested, WorkflowRetryRequested

    spec = load({"a": {"exec": "x", "repeat": {"until": "outputs.n >= 3", "max": 9}},
                 "b": {"exec": "true"}}, ["a,b"])
    sim = Sim(spec)
    sim.step()
    sim.done("a", outputs={"n": 1})
    sim.feed(WorkflowCancelRequested(workflow="w", run="r1", time=2))
    sim.step(2)
    assert sim.snap.state is WorkflowState.CANCELED and sim.core.runs["w"].finished
    sim.feed(WorkflowRetryRequested(workflow="w", run="r1", time=3))
    assert sim.snap.state is WorkflowState.RUNNING
    out = sim.step(3)
    assert released(out) == ["a"]
    assert [(i.job, i.iteration) for i in out if isinstance(i, MarkJob)] == [
        ("b", None), ("a", 2)]
    sim.done("a", attempt=2, outputs={"n": 3})
    assert released(sim.step(4)) == ["b"]
    sim.done("b", attempt=2)
    assert sim.snap.state is WorkflowState.SUCCEEDED
