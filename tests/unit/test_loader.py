"""Loading cloudmesh-cc workflow YAML: what is accepted (errors: test_loader_errors.py;
hostile input: test_loader_hostile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobmesh.common.loader import load_workflow
from jobmesh.common.spec import DEFAULT_COLORS

from ._loadyaml import errors, load, write

pytestmark = pytest.mark.unit


# -- what is accepted ------------------------------------------------------------------

def test_paper_example_chains_merge_into_one_dag(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            start: {}
            fetch-data:
              name: fetch-data
              kind: local
              exec: hostname
            compute: {exec: 'true'}
            analyze: {exec: 'true'}
            end: {}
            b: {exec: 'true'}
          dependencies:
            - start,fetch-data,compute,analyze,end
            - start,b,end
        """).workflow
    assert wf.name == "wf"  # the file's stem
    assert list(wf.jobs) == ["start", "fetch-data", "compute", "analyze", "end", "b"]
    assert wf.edges == [("start", "fetch-data"), ("fetch-data", "compute"),
                        ("compute", "analyze"), ("analyze", "end"),
                        ("start", "b"), ("b", "end")]
    assert wf.parents()["end"] == ["analyze", "b"]
    assert wf.children()["start"] == ["fetch-data", "b"]
    assert wf.jobs["start"].job_type == "noop"
    assert wf.jobs["fetch-data"].exec == "hostname"
    assert wf.jobs["fetch-data"].job_type == "exec"
    assert wf.source.endswith("wf.yaml")
    assert wf.base_dir == str(tmp_path.resolve())


def test_repeated_edges_are_kept_once(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        name: dedupe
        workflow:
          dependencies: [a, b, "a,b", "a,b,c"]
        """).workflow
    assert wf.edges == [("a", "b"), ("b", "c")]
    assert list(wf.jobs) == ["a", "b", "c"]  # one-name chains add nodes, not edges


def test_range_in_chain_expands_in_order(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            a[1-2,5]: {exec: 'true'}
          dependencies:
            - start,a[1-2,5],a10
        """).workflow
    assert list(wf.jobs) == ["a1", "a2", "a5", "start", "a10"]
    assert wf.edges == [("start", "a1"), ("a1", "a2"), ("a2", "a5"), ("a5", "a10")]


def test_range_node_key_gives_each_node_the_attributes(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            w[1-3]:
              exec: echo hi
              shape: ellipse
        """).workflow
    assert list(wf.jobs) == ["w1", "w2", "w3"]
    assert all(j.exec == "echo hi" and j.shape == "ellipse" for j in wf.jobs.values())
    assert [j.name for j in wf.jobs.values()] == ["w1", "w2", "w3"]


def test_isolated_and_single_nodes_exist(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            alone: {exec: 'true'}
            a: {}
            b: {}
          dependencies:
            - a,b
        """).workflow
    assert set(wf.jobs) == {"alone", "a", "b"}
    assert wf.parents()["alone"] == [] and wf.children()["alone"] == []

    one = load(tmp_path, """
        workflow:
          nodes:
            only: {exec: hostname}
        """).workflow
    assert list(one.jobs) == ["only"] and one.edges == []


def test_a_node_named_only_in_a_chain_exists_with_a_warning(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true'}
          dependencies:
            - a,ghost
        """)
    ghost = loaded.workflow.jobs["ghost"]
    assert ghost.kind == "local" and ghost.job_type == "noop"
    assert [(w.node, w.line) for w in loaded.warnings] == [("ghost", 5)]
    assert "appears only in dependencies" in loaded.warnings[0].message


def test_start_and_end_only_in_chains_are_the_idiom_and_quiet(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true'}
          dependencies:
            - start,a,end
        """)
    assert loaded.workflow.edges == [("start", "a"), ("a", "end")]
    assert loaded.warnings == []


@pytest.mark.parametrize("deps", ["[a,b,c]", "\n    - a\n    - b\n    - c"])
def test_a_list_of_single_names_has_no_edges_and_warns(tmp_path: Path, deps: str) -> None:
    """YAML reads [a,b,c] as three one-node chains (cloudmesh-cc too): the meaning stays,
    and validate says what was probably meant."""
    text = ("workflow:\n  nodes:\n    a: {exec: 'true'}\n    b: {exec: 'true'}\n"
            "    c: {exec: 'true'}\n  dependencies: " + deps + "\n")
    loaded = load_workflow(write(tmp_path, text))
    assert loaded.workflow.edges == []
    [warning] = loaded.warnings
    assert (warning.line, warning.field) == (6, "dependencies")
    assert ("every entry is a single node, so there are no edges; did you mean 'a,b,c'?"
            in warning.message)


def test_single_names_beside_a_chain_or_a_range_do_not_warn(tmp_path: Path) -> None:
    for deps in ("[a,'b,c']", "['n[1-2]', a]", "[a]"):
        text = ("workflow:\n  nodes:\n    a: {}\n    b: {}\n    c: {}\n    n[1-2]: {}\n"
                "  dependencies: " + deps + "\n")
        assert load_workflow(write(tmp_path, text)).warnings == [], deps


def test_a_dependencies_string_is_one_chain(tmp_path: Path) -> None:
    wf = load(tmp_path, "workflow:\n  dependencies: x,y\n").workflow
    assert wf.edges == [("x", "y")]


def test_a_chain_written_as_a_yaml_list(tmp_path: Path) -> None:
    wf = load(tmp_path, "workflow:\n  dependencies:\n    - [p, q, r]\n").workflow
    assert wf.edges == [("p", "q"), ("q", "r")]


@pytest.mark.parametrize("suffix, kind", [(".sh", "sh"), (".py", "py"), (".ipynb", "ipynb")])
def test_name_suffix_selects_the_script_next_to_the_workflow(tmp_path: Path, suffix: str,
                                                             kind: str) -> None:
    (tmp_path / f"job{suffix}").write_text("x")
    wf = load(tmp_path, f"""
        workflow:
          nodes:
            job{suffix}: {{}}
        """).workflow
    job = wf.jobs[f"job{suffix}"]
    assert job.script == str((tmp_path / f"job{suffix}").resolve())
    assert job.job_type == kind


def test_node_only_in_chain_with_suffix_uses_its_script(tmp_path: Path) -> None:
    wf = load(tmp_path, "workflow:\n  dependencies: ['start,fetch.py']\n",
              fetch__py="print(1)").workflow
    assert wf.edges == [("start", "fetch.py")]
    assert wf.jobs["fetch.py"].script == str((tmp_path / "fetch.py").resolve())
    assert wf.jobs["fetch.py"].job_type == "py"


def test_default_name_sh_is_used_when_present(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            compute: {}
            other: {}
        """, compute__sh="echo compute").workflow
    assert wf.jobs["compute"].script == str((tmp_path / "compute.sh").resolve())
    assert wf.jobs["compute"].job_type == "sh"
    assert wf.jobs["other"].script is None
    assert wf.jobs["other"].job_type == "noop"


def test_exec_wins_over_the_default_script(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            compute: {exec: 42}
        """, compute__sh="echo compute").workflow
    job = wf.jobs["compute"]
    assert job.script is None
    assert job.exec == "42"  # a number in YAML becomes the command text
    assert job.job_type == "exec"


def test_explicit_script_is_relative_to_the_workflow_file(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "run.py").write_text("print(1)")
    wf = load(tmp_path, """
        workflow:
          nodes:
            run:
              script: bin/run.py
        """).workflow
    assert wf.jobs["run"].script == str((tmp_path / "bin" / "run.py").resolve())
    assert wf.jobs["run"].job_type == "py"


def test_local_venv_must_exist(tmp_path: Path) -> None:
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").write_text("")
    wf = load(tmp_path, f"""
        workflow:
          nodes:
            a: {{exec: 'true', venv: '{tmp_path / "env"}'}}
            r: {{exec: 'true', kind: ssh, host: h, venv: '~/ENV3'}}
        """).workflow
    assert wf.jobs["a"].venv == str(tmp_path / "env")
    assert wf.jobs["r"].venv == "~/ENV3"  # a remote venv is not checked here
    (issue,) = errors(tmp_path, f"""
        workflow:
          nodes:
            a:
              exec: 'true'
              venv: '{tmp_path / "nope"}'
        """)
    assert (issue.line, issue.node, issue.field) == (5, "a", "venv")
    assert "not found" in issue.message


def test_shape_style_label_and_unknown_attributes_are_kept(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            a:
              shape: ellipse
              style: dashed
              label: '{name}\\nprogress={progress} {owner}'
              status: ready
              progress: 0
              owner: gregor
              user: gregor
              host: localhost
        """).workflow
    a = wf.jobs["a"]
    assert (a.shape, a.style, a.user, a.host) == ("ellipse", "dashed", "gregor", "localhost")
    assert a.label == "{name}\\nprogress={progress} {owner}"
    assert a.extras == {"status": "ready", "progress": 0, "owner": "gregor"}


def test_colors_override_defaults(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes: {a: {}}
        colors:
          status: {done: '#00FF00', running: blue}
        """).workflow
    assert wf.colors["done"] == "#00FF00"
    assert wf.colors["running"] == "blue"
    assert wf.colors["failed"] == DEFAULT_COLORS["failed"]


def test_colors_without_status_level(tmp_path: Path) -> None:
    wf = load(tmp_path, "workflow:\n  nodes: {a: {}}\ncolors: {failed: red}\n").workflow
    assert wf.colors["failed"] == "red"


def test_no_colors_gives_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "workflow:\n  nodes: {a: {}}\n").workflow.colors == DEFAULT_COLORS


def test_defaults_apply_to_every_node_and_nodes_override_them(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        defaults:
          kind: ssh
          host: login1
          timeout: 5m
          retries: 2
        workflow:
          nodes:
            a: {kind: local}
            b: {}
          dependencies: ["b,c"]
        """).workflow
    assert (wf.jobs["a"].kind, wf.jobs["a"].host, wf.jobs["a"].timeout) == ("local", "login1",
                                                                           300.0)
    assert (wf.jobs["b"].kind, wf.jobs["b"].retries) == ("ssh", 2)
    assert wf.jobs["c"].kind == "ssh"  # nodes created by a chain get the defaults too


def test_after_adds_edges(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            a: {}
            b: {}
            c: {after: "a, b"}
            d: {after: [c]}
          dependencies: ["a,c"]
        """).workflow
    assert wf.jobs["c"].after == ["a", "b"]
    assert sorted(wf.edges) == [("a", "c"), ("b", "c"), ("c", "d")]


def test_durations_args_and_env_are_normalised(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            a:
              exec: run
              timeout: 90s
              retry_delay: 2m
              retries: 3
              args: [1, x]
              env: {N: 1, FLAG: true}
        """).workflow
    a = wf.jobs["a"]
    assert (a.timeout, a.retry_delay, a.retries) == (90.0, 120.0, 3)
    assert a.args == ["1", "x"]
    assert a.env == {"N": "1", "FLAG": "True"}


def test_name_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, "name: top\nworkflow:\n  name: inner\n  nodes: {a: {}}\n")
    assert load_workflow(path).workflow.name == "top"
    assert load_workflow(path, name="given").workflow.name == "given"
    path2 = write(tmp_path, "workflow:\n  name: inner\n  nodes: {a: {}}\n", name="x.yaml")
    assert load_workflow(path2).workflow.name == "inner"


def test_variables_are_kept(tmp_path: Path) -> None:
    wf = load(tmp_path, "variables: {n: 3}\nworkflow:\n  nodes: {a: {}}\n").workflow
    assert wf.variables == {"n": 3}
