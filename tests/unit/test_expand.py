"""foreach expansion and the load-time checks of control flow (pure: no servers)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobmesh.common.expand import (
    MAX_JOBS,
    ExpandError,
    combinations,
    expand_node,
    instance_names,
    instances,
    sources,
)
from jobmesh.common.loader import SpecError, parse_workflow
from jobmesh.common.names import check_job
from jobmesh.common.spec import JobSpec

pytestmark = pytest.mark.unit


def load(nodes: dict[str, Any], deps: list[str] | None = None, tmp: Path = Path("/tmp"),
         **kw: Any) -> Any:
    top = {k: kw.pop(k) for k in list(kw) if k in ("variables", "defaults")}
    text = yaml.safe_dump({"name": "w", **top, "workflow": {
        "nodes": nodes, "dependencies": deps or []}}, sort_keys=False)
    return parse_workflow(text, "w.yaml", base_dir=tmp, **kw).workflow


def issues(nodes: dict[str, Any], deps: list[str] | None = None, **kw: Any) -> list[Any]:
    with pytest.raises(SpecError) as info:
        load(nodes, deps, **kw)
    return info.value.issues


# -- the pieces -------------------------------------------------------------------------

def test_product_and_zip() -> None:
    lists = [("gpu", ["a100", "v100"]), ("epochs", [10, 30])]
    assert combinations(lists, "product") == [
        {"gpu": "a100", "epochs": 10}, {"gpu": "a100", "epochs": 30},
        {"gpu": "v100", "epochs": 10}, {"gpu": "v100", "epochs": 30}]
    assert combinations(lists, "zip") == [{"gpu": "a100", "epochs": 10},
                                          {"gpu": "v100", "epochs": 30}]
    with pytest.raises(ExpandError, match="same length: gpu has 2, epochs has 3"):
        combinations([("gpu", [1, 2]), ("epochs", [1, 2, 3])], "zip")


def test_sources_read_lists_ranges_variables_and_parent_outputs() -> None:
    srcs = sources({"a": [1, 2], "n": "node[1-3]", "s": "[08-10]", "v": "{gpus}",
                    "d": "{parents.split.outputs.chunks}"}, {"gpus": ["x", "y"]})
    assert [(s.key, s.values, s.ref) for s in srcs] == [
        ("a", (1, 2), None), ("n", ("node1", "node2", "node3"), None),
        ("s", ("08", "09", "10"), None), ("v", ("x", "y"), None),
        ("d", None, ("split", "chunks"))]
    assert sources([1, 2], {})[0].key == "item"
    assert sources("{parents.a.outputs.k}", {})[0].ref == ("a", "k")
    assert sources({"i": "[1-3]"}, {})[0].values == (1, 2, 3)


@pytest.mark.parametrize("foreach,message", [
    ({"gpu": "a100"}, "must be a list"),
    ({"gpu": 3}, "must be a list"),
    ({"gpu": {"a": 1}}, "must be a list"),
    ({"gpu": []}, "empty list"),
    ({}, "foreach is empty"),
    (5, "must be a mapping of lists"),
    ({"gpu": "{nope}"}, "unknown variable 'nope'"),
    ({"gpu": "{one}"}, "variable 'one' is int"),
    ({"bad key": [1]}, "must be a name"),
    ({"name": [1]}, "must be a name"),
    ({"g": "x[3-1]"}, "end is below the start"),
])
def test_bad_foreach(foreach: Any, message: str) -> None:
    with pytest.raises(ExpandError, match=message.replace("[", r"\[")):
        sources(foreach, {"one": 1})


def test_names_are_readable_and_safe() -> None:
    combos = combinations([("gpu", ["a100", "v100"]), ("epochs", [10, 0.5])], "product")
    names = instance_names("train", combos)
    assert names == ["train-gpu_a100-epochs_10", "train-gpu_a100-epochs_0.5",
                     "train-gpu_v100-epochs_10", "train-gpu_v100-epochs_0.5"]
    for n in names:
        check_job(n)
    assert instance_names("t", [{"b": True}, {"b": False}]) == ["t-b_true", "t-b_false"]


@pytest.mark.parametrize("values", [
    ["a b", "c"],                # space
    ["x/y", "z"],                # slash
    ["$(rm -rf /)", "ok"],       # shell
    ["a..b", "c"],               # '..'
    [{"k": 1}, {"k": 2}],        # mappings
    ["1", 1],                    # two values, one name
    ["x" * 41, "y"],             # too long
    [None, "n"],
])
def test_unsafe_values_number_every_job(values: list[Any]) -> None:
    names = instance_names("proc", [{"item": v} for v in values])
    assert names == ["proc-1", "proc-2"]


def test_instances_put_values_everywhere_and_keep_the_rest() -> None:
    spec = JobSpec(name="train", exec="python train.py --gpu {gpu} --epochs {epochs} {var}",
                   args=["{gpu}", "--x"], env={"GPU": "{gpu}", "E": "{epochs}"},
                   host="{gpu}.cluster", label="{name} {gpu}", partition="gpu-{gpu}",
                   parameters={"epochs": "{epochs}"}, inputs=["data/{gpu}.csv"],
                   when="gpu != 'k80'", foreach={"gpu": ["a100"], "epochs": [10]}, retries=2)
    (name, job), = instances(spec, combinations([("gpu", ["a100"]), ("epochs", [10])],
                                                "product")).items()
    assert name == "train-gpu_a100-epochs_10"
    assert job.exec == "python train.py --gpu a100 --epochs 10 {var}"
    assert job.args == ["a100", "--x"] and job.env == {"GPU": "a100", "E": "10"}
    assert job.host == "a100.cluster" and job.label == "{name} a100"
    assert job.extras["partition"] == "gpu-a100" and job.parameters == {"epochs": "10"}
    assert job.inputs == ["data/a100.csv"]
    assert job.when == "gpu != 'k80'" and job.retries == 2  # evaluated later, with params
    assert job.params == {"gpu": "a100", "epochs": 10} and job.foreach_of == "train"
    assert job.foreach is None


def test_dynamic_expansion_wires_parents_and_children() -> None:
    spec = JobSpec(name="p", exec="work {item}", foreach="{parents.split.outputs.c}")
    jobs, edges = expand_node(spec, [("item", ["a", "b"])], [("split", {}), ("x", {})],
                              [("merge", {})])
    assert list(jobs) == ["p-item_a", "p-item_b"]
    assert edges == [("split", "p-item_a"), ("split", "p-item_b"), ("x", "p-item_a"),
                     ("x", "p-item_b"), ("p-item_a", "merge"), ("p-item_b", "merge")]


# -- loading ----------------------------------------------------------------------------

def test_sweep_expands_with_fan_out_fan_in() -> None:
    wf = load({"prep": {"exec": "true"},
               "train": {"foreach": {"gpu": ["a100", "v100", "k80"], "epochs": [10, 30, 50]},
                         "exec": "train --gpu {gpu} --epochs {epochs}"},
               "report": {"exec": "true"}}, ["prep,train,report"])
    train = [n for n in wf.jobs if n.startswith("train-")]
    assert len(train) == 9 and len(wf.jobs) == 11
    assert {("prep", t) for t in train} | {(t, "report") for t in train} == set(wf.edges)
    assert wf.jobs["train-gpu_k80-epochs_30"].exec == "train --gpu k80 --epochs 30"


def test_matching_keys_pair_instead_of_crossing() -> None:
    wf = load({"train": {"foreach": {"gpu": ["a", "b"], "rep": [1, 2]}, "exec": "true"},
               "eval": {"foreach": {"gpu": ["a", "b"]}, "exec": "true"}}, ["train,eval"])
    assert sorted(wf.edges) == [("train-gpu_a-rep_1", "eval-gpu_a"),
                                ("train-gpu_a-rep_2", "eval-gpu_a"),
                                ("train-gpu_b-rep_1", "eval-gpu_b"),
                                ("train-gpu_b-rep_2", "eval-gpu_b")]


def test_zip_mode_and_variables_and_overrides() -> None:
    nodes = {"t": {"foreach": {"gpu": "{gpus}", "epochs": [1, 2]}, "foreach_mode": "zip",
                   "exec": "run {gpu} {epochs} {env}"}}
    wf = load(nodes, variables={"gpus": ["a", "b"], "env": "dev"})
    assert list(wf.jobs) == ["t-gpu_a-epochs_1", "t-gpu_b-epochs_2"]
    assert wf.jobs["t-gpu_a-epochs_1"].exec == "run a 1 {env}"  # variables: at release
    text = yaml.safe_dump({"name": "w", "variables": {"gpus": ["a"], "env": 1},
                           "workflow": {"nodes": {"t": {"foreach": {"gpu": "{gpus}"},
                                                        "exec": "x"}}}})
    over = parse_workflow(text, "w.yaml", "/tmp", variables={"gpus": ["x", "y", "z"]}).workflow
    assert list(over.jobs) == ["t-gpu_x", "t-gpu_y", "t-gpu_z"]
    assert over.variables == {"gpus": ["x", "y", "z"], "env": 1}


def test_labels_get_variables_baked_in() -> None:
    wf = load({"a": {"exec": "true", "label": "{name} on {env}"}}, variables={"env": "prod"})
    assert wf.jobs["a"].label == "{name} on prod"


def test_dynamic_foreach_stays_one_node() -> None:
    wf = load({"split": {"exec": "true"},
               "proc": {"foreach": {"chunk": "{parents.split.outputs.chunks}"},
                        "exec": "echo {chunk}"},
               "merge": {"exec": "true"}}, ["split,proc,merge"])
    assert list(wf.jobs) == ["split", "proc", "merge"] and wf.dynamic


def test_bad_input_names_node_field_and_line(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        name: bad
        variables: {env: dev}
        workflow:
          nodes:
            a: {exec: "true"}
            syntax: {exec: "true", when: "a.outputs.n >"}
            unknown: {exec: "true", when: "a.outputs.n > 0 and stage == 'x'"}
            notparent: {exec: "true", when: "b.state == 'SUCCEEDED'"}
            b: {exec: "true"}
            scalar: {exec: "true", foreach: {gpu: a100}}
            loop: {exec: "true", repeat: {until: "outputs.loss <", max: 3}}
            nomax: {exec: "true", repeat: {until: "true"}}
          dependencies: ["a,syntax", "a,unknown", "a,notparent"]
        """)
    with pytest.raises(SpecError) as info:
        parse_workflow(text, "bad.yaml", tmp_path)
    got = {(i.node, i.field): (i.line, i.message) for i in info.value.issues}
    assert "syntax error" in got[("syntax", "when")][1] and got[("syntax", "when")][0] == 6
    assert "unknown variable 'stage'" in got[("unknown", "when")][1]
    assert "'b' is not a parent of 'notparent'" in got[("notparent", "when")][1]
    assert "must be a list" in got[("scalar", "foreach")][1]
    assert got[("scalar", "foreach")][0] == 10
    assert "syntax error" in got[("loop", "repeat.until")][1]
    assert got[("nomax", "repeat.max")][1] == "Field required"


def test_unknown_override_and_refs_to_expanded_nodes() -> None:
    with pytest.raises(SpecError, match="unknown variable 'nope' given to override"):
        parse_workflow("name: w\nvariables: {x: 1}\nworkflow: {nodes: {a: {exec: 'true'}}}\n",
                       "w.yaml", "/tmp", variables={"nope": 2})
    found = issues({"t": {"foreach": {"g": [1, 2]}, "exec": "true"},
                    "c": {"exec": "echo {parents.t.outputs.x}", "when": "t.state == 'x'"}},
                   ["t,c"])
    msgs = " | ".join(str(i) for i in found)
    assert "'t' was expanded by foreach into 2 jobs" in msgs
    assert "{parents.t.outputs.x} refers to 't', which is not a parent" in msgs


def test_foreach_over_output_of_a_non_parent_or_of_a_foreach() -> None:
    found = issues({"x": {"exec": "true"},
                    "p": {"foreach": "{parents.x.outputs.l}", "exec": "true"}})
    assert ("p", "foreach") in [(i.node, i.field) for i in found]
    found = issues({"d": {"foreach": "{parents.x.outputs.l}", "exec": "true"},
                    "x": {"exec": "true"},
                    "e": {"foreach": "{parents.d.outputs.l}", "exec": "true"}},
                   ["x,d,e"])
    assert any("'d' is a foreach node itself" in i.message for i in found)


def test_expansion_over_the_limit_needs_allow_large() -> None:
    nodes = {"big": {"foreach": {"a": list(range(101)), "b": list(range(100))},
                     "exec": "true"}}
    t0 = time.perf_counter()
    (issue,) = issues(nodes)
    assert (issue.node, issue.field) == ("big", "foreach")
    assert "10100 jobs" in issue.message and "--allow-large" in issue.message
    assert time.perf_counter() - t0 < 1  # refused before anything is built
    wf = load(nodes, allow_large=True)
    assert len(wf.jobs) == 10100 and wf.allow_large
    # a typo that would make 10^12 jobs is refused at once, even with --allow-large
    huge = {"t": {"foreach": {k: list(range(1000)) for k in "abcd"}, "exec": "true"}}
    (issue,) = issues(huge, allow_large=True)
    assert "limit" in issue.message
    assert MAX_JOBS == 10_000


def test_too_many_edges_is_refused() -> None:
    nodes = {"a": {"foreach": {"i": list(range(1000))}, "exec": "true"},
             "b": {"foreach": {"j": list(range(1000))}, "exec": "true"}}
    (issue,) = issues(nodes, ["a,b"])
    assert "1000000 dependencies" in issue.message and issue.node in ("a", "b")


def test_name_clash_with_an_existing_node() -> None:
    found = issues({"t": {"foreach": {"g": [1]}, "exec": "true"}, "t-g_1": {"exec": "true"}})
    assert any("exists already" in i.message for i in found)


def test_groups_are_checked() -> None:
    ok = load({"a": {"exec": "true", "group": "g"},
               "b": {"exec": "true", "group": "g",
                     "repeat": {"until": "outputs.x > 1", "max": 3, "delay": "1s"}},
               "c": {"exec": "true"}}, ["a,b,c"])
    assert ok.jobs["b"].repeat is not None and ok.jobs["b"].repeat.delay == 1.0
    msgs = [i.message for i in issues({"a": {"exec": "true", "group": "g"}})]
    assert "has no node with repeat" in msgs[0]
    msgs = [i.message for i in issues(
        {"a": {"exec": "true", "group": "g"},
         "b": {"exec": "true", "group": "g", "repeat": {"until": "true", "max": 2}},
         "c": {"exec": "true"}}, ["a,c", "b"])]
    assert any("does not depend on it" in m for m in msgs)
    assert any("'c' depends on 'a' of group 'g'" in m for m in msgs)
    msgs = [i.message for i in issues(
        {"a": {"exec": "true", "group": "g", "repeat": {"until": "true", "max": 2}},
         "b": {"exec": "true", "group": "g", "repeat": {"until": "true", "max": 2}}},
        ["a,b"])]
    assert any("more than one" in m for m in msgs)


def test_until_sees_its_own_outputs_and_iteration_only() -> None:
    load({"a": {"exec": "true", "repeat": {"until": "outputs.loss < 0.1 or iteration >= 3 "
                                           "or a.outputs.ok", "max": 5}}})
    found = issues({"p": {"exec": "true"},
                    "a": {"exec": "true", "repeat": {"until": "p.outputs.x", "max": 5}}},
                   ["p,a"])
    assert found[0].field == "repeat.until"


def test_a_dynamic_foreach_node_cannot_be_named_by_its_children() -> None:
    nodes = {"split": {"exec": "true"},
             "proc": {"foreach": "{parents.split.outputs.l}", "exec": "true"},
             "merge": {"exec": "echo {parents.proc.outputs.x}", "when": "proc.state == 'x'"}}
    found = issues(nodes, ["split,proc,merge"])
    assert sorted((i.node, i.field) for i in found) == [("merge", "exec"), ("merge", "when")]
    assert all("get their names when it expands" in i.message for i in found)


def test_a_huge_foreach_range_is_counted_before_it_is_expanded() -> None:
    from jobmesh.common.expand import ExpandError, sources

    text = ",".join(f"n[{i * 100000}-{i * 100000 + 99999}]" for i in range(6))
    with pytest.raises(ExpandError, match="expands into 600000 names"):
        sources(text, {})
