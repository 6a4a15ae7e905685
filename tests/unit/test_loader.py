"""Loading cloudmesh-cc workflow YAML: what is accepted, and how errors are reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from jobmesh.common.loader import SpecError, SpecIssue, load_workflow, parse_workflow
from jobmesh.common.spec import DEFAULT_COLORS

pytestmark = pytest.mark.unit


def write(folder: Path, text: str, name: str = "wf.yaml", **files: str) -> Path:
    for fname, body in files.items():
        (folder / fname.replace("__", ".")).write_text(body)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(folder: Path, text: str, **files: str):
    return load_workflow(write(folder, text, **files))


def errors(folder: Path, text: str, **files: str) -> list[SpecIssue]:
    with pytest.raises(SpecError) as err:
        load(folder, text, **files)
    return err.value.issues


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


# -- errors ----------------------------------------------------------------------------

def test_cycle_names_the_path_and_the_dependency_line(tmp_path: Path) -> None:
    issues = errors(tmp_path, """
        workflow:
          nodes:
            a: {}
            b: {}
          dependencies:
            - start,a
            - a,b
            - b,a
        """)
    assert len(issues) == 1
    issue = issues[0]
    assert "dependency cycle: a -> b -> a" in issue.message
    assert issue.line == 8  # the line that closes the cycle: "- b,a"
    assert issue.field == "dependencies"
    assert issue.file == str(tmp_path / "wf.yaml")
    assert str(issue).startswith(f"{tmp_path / 'wf.yaml'}:8: field 'dependencies': ")


def test_longer_cycle_and_self_loop(tmp_path: Path) -> None:
    issues = errors(tmp_path, "workflow:\n  dependencies:\n    - a,b,c,d\n    - d,b\n")
    assert "b -> c -> d -> b" in issues[0].message and issues[0].line == 4
    issues = errors(tmp_path, "workflow:\n  dependencies:\n    - a,a\n")
    assert "a -> a" in issues[0].message and issues[0].line == 3


def test_cycle_through_after(tmp_path: Path) -> None:
    issues = errors(tmp_path, """
        workflow:
          nodes:
            a: {after: b}
            b: {after: a}
        """)
    assert "a -> b -> a" in issues[0].message
    assert issues[0].line in (3, 4)


def test_unknown_kind(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, """
        workflow:
          nodes:
            a:
              kind: cloud
        """)
    assert (issue.line, issue.node, issue.field) == (4, "a", "kind")
    assert "unknown kind 'cloud'" in issue.message
    assert "local, ssh, wsl, slurm, lsf" in issue.message


@pytest.mark.parametrize("text, line", [
    ("workflow:\n  nodes:\n    a:\n   b: x\n", 4),
    ("workflow:\n  nodes:\n    a:\n\tb: x\n", 4),
    ("workflow:\n  nodes:\n    a: {exec: \"x\"\n  dependencies: []\n", 4),
])
def test_yaml_syntax_error_has_its_line(tmp_path: Path, text: str, line: int) -> None:
    (issue,) = errors(tmp_path, text)
    assert issue.message.startswith("YAML syntax error: ")
    assert issue.line == line
    assert str(issue).startswith(f"{tmp_path / 'wf.yaml'}:{line}: YAML syntax error")


def test_missing_script_file(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, """
        workflow:
          nodes:
            a:
              script: missing.sh
        """)
    assert (issue.line, issue.node, issue.field) == (4, "a", "script")
    assert "script 'missing.sh' not found" in issue.message
    assert str(tmp_path.resolve()) in issue.message  # where it looked


def test_missing_script_for_a_suffixed_name(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  nodes:\n    f.py: {}\n")
    assert (issue.line, issue.node, issue.field) == (3, "f.py", "name")
    assert "'f.py', which is not next to the workflow file" in issue.message


def test_script_with_another_suffix_is_refused(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  nodes:\n    a: {script: run.txt}\n",
                      run__txt="x")
    assert issue.field == "script" and "must end in .sh, .py or .ipynb" in issue.message


def test_exec_and_script_together(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  nodes:\n    a: {exec: x, script: a.sh}\n",
                      a__sh="x")
    assert (issue.node, issue.field) == ("a", "exec")
    assert "either 'exec:' or 'script:'" in issue.message


@pytest.mark.parametrize("bad", ["bad name!", ".hidden", "a..b", "x/y"])
def test_invalid_node_names(tmp_path: Path, bad: str) -> None:
    (issue,) = errors(tmp_path, f"workflow:\n  nodes:\n    a: {{}}\n    '{bad}': {{}}\n")
    assert (issue.line, issue.node, issue.field) == (4, bad, "name")
    assert f"invalid job name {bad!r}" in issue.message


def test_invalid_name_in_a_chain(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  dependencies:\n    - a,b\n    - x y,z\n")
    assert (issue.line, issue.node, issue.field) == (4, "x y", "dependencies")


def test_bad_range_in_a_chain(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  dependencies:\n    - a,b[3-1]\n")
    assert (issue.line, issue.field) == (3, "dependencies")
    assert "end is below the start" in issue.message


def test_invalid_workflow_name_from_the_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "workflow:\n  nodes: {a: {}}\n", name="my flow.yaml")
    with pytest.raises(SpecError) as err:
        load_workflow(path)
    (issue,) = err.value.issues
    assert issue.field == "name"
    assert "invalid workflow name 'my flow'" in issue.message
    assert "set 'name:' or use --name" in issue.message


def test_duplicate_names_from_ranges(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  nodes:\n    n[1-2]: {}\n    n2: {}\n")
    assert (issue.line, issue.node) == (4, "n2")
    assert "duplicate node name 'n2'" in issue.message


def test_duplicate_yaml_keys_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load(tmp_path, "workflow:\n  nodes:\n    a: {exec: x}\n    a: {exec: y}\n")
    assert any("duplicate" in i.message and i.node == "a" for i in err.value.issues)


def test_name_attribute_must_match_the_key(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  nodes:\n    a:\n      name: b\n")
    assert (issue.line, issue.node, issue.field) == (4, "a", "name")
    assert "differs from the node's key" in issue.message


@pytest.mark.parametrize("attrs, field, words", [
    ("timeout: forever", "timeout", "'forever' is not a duration"),
    ("timeout: -5", "timeout", "cannot be negative"),
    ("timeout: true", "timeout", "is not a duration"),
    ("retry_delay: soon", "retry_delay", "not a duration"),
    ("retries: -1", "retries", "retries cannot be negative"),
    ("retries: many", "retries", "valid integer"),
    ("retries: 1.5", "retries", "valid integer"),
])
def test_bad_timeout_and_retries(tmp_path: Path, attrs: str, field: str, words: str) -> None:
    (issue,) = errors(tmp_path, f"workflow:\n  nodes:\n    a:\n      {attrs}\n")
    assert (issue.line, issue.node, issue.field) == (4, "a", field)
    assert words in issue.message


def test_output_reference_must_name_a_parent(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true'}
            b: {exec: 'echo {parents.a.outputs.n}'}
          dependencies: ["a,b"]
        """).workflow
    assert wf.jobs["b"].exec == "echo {parents.a.outputs.n}"
    (issue,) = errors(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true'}
            b:
              exec: 'echo {parents.c.outputs.n}'
            c: {}
          dependencies: ["a,b"]
        """)
    assert (issue.line, issue.node, issue.field) == (5, "b", "exec")
    assert "'c', which is not a parent of 'b'" in issue.message


def test_unknown_after_dependency(tmp_path: Path) -> None:
    (issue,) = errors(tmp_path, "workflow:\n  nodes:\n    a:\n      after: zz\n")
    assert (issue.line, issue.node, issue.field) == (4, "a", "after")
    assert "unknown dependency 'zz'" in issue.message


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    issues = errors(tmp_path, "foo: 1\nworkflow:\n  nods: {}\n")
    assert [(i.line, i.message.split(";")[0]) for i in issues] == [
        (1, "unknown top-level key 'foo'"), (3, "unknown key 'nods' under workflow:")]


@pytest.mark.parametrize("text", ["", "[1, 2]\n", "workflow: 3\n", "name: x\n"])
def test_no_workflow_section(tmp_path: Path, text: str) -> None:
    (issue,) = errors(tmp_path, text)
    assert "'workflow:' section" in issue.message and issue.line is None


def test_node_value_must_be_a_mapping(tmp_path: Path) -> None:
    issues = errors(tmp_path, "workflow:\n  nodes:\n    a: 5\n    b: [1]\n")
    assert [(i.line, i.node) for i in issues] == [(3, "a"), (4, "b")]


def test_bad_sections(tmp_path: Path) -> None:
    issues = errors(tmp_path, "defaults: 3\nvariables: [1]\nworkflow:\n  nodes: {a: {}}\n"
                              "colors: 5\n")
    assert [i.line for i in issues] == [1, 2, 5]
    assert "'defaults:' must be a mapping" in issues[0].message
    assert "'variables:' must be a mapping" in issues[1].message
    assert "'colors:' must map status words" in issues[2].message


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, """
        workflow:
          nodes:
            a:
              kind: cloud
            b:
              script: missing.sh
            "bad name!":
              exec: x
            c:
              timeout: forever
              retries: -1
            d: {exec: 'true'}
          dependencies:
            - a,b,c,d
        """)
    with pytest.raises(SpecError) as err:
        load_workflow(path)
    found = {(i.line, i.node, i.field) for i in err.value.issues}
    assert found == {(4, "a", "kind"), (6, "b", "script"), (7, "bad name!", "name"),
                     (10, "c", "timeout"), (11, "c", "retries")}
    assert all(i.file == str(path) for i in err.value.issues)
    text = str(err.value)
    assert len(text.splitlines()) == 5
    assert f"{path}:4: node 'a' field 'kind': unknown kind 'cloud'" in text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_workflow(tmp_path / "nope.yaml")
    (issue,) = err.value.issues
    assert issue.message == "no such file" and issue.line is None


def test_parse_workflow_uses_the_given_name_and_base(tmp_path: Path) -> None:
    (tmp_path / "a.sh").write_text("x")
    wf = parse_workflow("workflow:\n  nodes: {a: {}}\n", "upload.yaml", tmp_path,
                        name="up").workflow
    assert wf.name == "up" and wf.source == "upload.yaml"
    assert wf.jobs["a"].script == str((tmp_path / "a.sh").resolve())


def test_parse_workflow_without_any_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        parse_workflow("workflow:\n  nodes: {a: {}}\n", "upload.yaml", tmp_path)
    assert err.value.issues[0].field == "name"


def test_slurm_dependencies_top_level_is_every_nodes_default(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        slurm_dependencies: true
        workflow:
          nodes:
            a: {kind: slurm, exec: "true"}
            b: {kind: slurm, exec: "true", slurm_dependencies: false}
          dependencies: [a,b]
        """).workflow
    assert wf.jobs["a"].extras["slurm_dependencies"] is True
    assert wf.jobs["b"].extras["slurm_dependencies"] is False


def test_slurm_dependencies_must_be_a_boolean(tmp_path: Path) -> None:
    issues = errors(tmp_path, """
        slurm_dependencies: maybe
        workflow:
          nodes:
            a: {kind: slurm, exec: "true"}
            b: {kind: slurm, exec: "true", slurm_dependencies: 3}
        """)
    assert [(i.line, i.node) for i in issues] == [(1, None), (5, "b")]
    assert all("must be true or false" in i.message for i in issues)


# -- hostile input (issue 14) ------------------------------------------------------------

def one_error(folder: Path, text: str, **files: str) -> str:
    return "\n".join(str(i) for i in errors(folder, text, **files))


def test_bad_pool_is_refused_at_load_time_with_its_line(tmp_path: Path) -> None:
    msg = one_error(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true', pool: 'bad.pool>'}
        """)
    assert "wf.yaml:3: node 'a' field 'pool': invalid pool name 'bad.pool>'" in msg


def test_a_foreach_value_that_makes_a_bad_pool_is_refused(tmp_path: Path) -> None:
    msg = one_error(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true', pool: 'p-{item}', foreach: ['ok', 'x.y']}
        """)
    assert "invalid pool name 'p-x.y'" in msg and "wf.yaml:3" in msg


@pytest.mark.parametrize("attr", ["partition", "account", "time", "qos", "mem", "gres",
                                  "queue", "python", "host", "user"])
def test_a_line_break_in_a_directive_value_is_refused(tmp_path: Path, attr: str) -> None:
    msg = one_error(tmp_path, f"""
        workflow:
          nodes:
            a: {{exec: 'true', kind: slurm, host: h, {attr}: "x\\ntouch PWN"}}
        """)
    assert f"field '{attr}'" in msg and "control character" in msg and "wf.yaml:3" in msg


def test_a_foreach_value_with_a_line_break_in_a_directive_is_refused(tmp_path: Path) -> None:
    msg = one_error(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true', kind: slurm, partition: '{p}', foreach: {p: ["x\\ntouch PWN"]}}
        """)
    assert "'partition' holds the control character" in msg


def test_a_static_foreach_value_is_quoted_in_exec(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        variables: {v: '$(touch PWN)'}
        workflow:
          nodes:
            a: {exec: "echo {item} '{item}' {v}", foreach: ['$(id)', 'b c']}
        """).workflow
    assert [j.exec for j in wf.jobs.values()] == [
        "echo '$(id)' '''$(id)''' {v}", "echo 'b c' '''b c''' {v}"]


@pytest.mark.parametrize("text,words", [
    ("x: !!int a", "!!int cannot be read"),
    ('x: !!float ""', "!!float cannot be read"),
    ("x: !!timestamp a", "!!timestamp cannot be read"),
    ("workflow:\n  nodes: !!set {a}\n", "must be"),
])
def test_odd_yaml_tags_are_clean_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_workflow(path)
    msg = str(err.value)
    assert words in msg and "could not check" not in msg, msg


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, "
              f"*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 9)]
    lines += ["workflow:", "  nodes:", "    a: {exec: 'true', parameters: {x: *a8}}"]
    path = tmp_path / "wf.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    with pytest.raises(SpecError) as err:
        load_workflow(path)
    assert "aliases (*name) make this file hold more than" in str(err.value)


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "recursive alias" in one_error(tmp_path, """
        x: &x [*x]
        workflow: {nodes: {a: {}}}
        """)


def test_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    wf = load(tmp_path, """
        defaults: &c {exec: 'true', retries: 2}
        workflow:
          nodes:
            a: *c
            b: {<<: *c, retries: 1}
        """).workflow
    assert wf.jobs["a"].retries == 2 and wf.jobs["b"].retries == 1


def test_a_nul_or_a_long_name_in_script_or_venv(tmp_path: Path) -> None:
    for attr, value in [("script", "a\\0b.sh"), ("script", "x" * 300 + ".sh"),
                        ("venv", "v\\0"), ("venv", "v" * 300)]:
        msg = one_error(tmp_path, f"""
            workflow:
              nodes:
                a: {{{attr}: "{value}"}}
            """)
        assert f"field '{attr}'" in msg and ("control character" in msg or "too long" in msg)


@pytest.mark.parametrize("attr,value", [("port", "'22x'"), ("port", "70000"), ("port", "true"),
                                        ("max_sessions", "'many'"), ("max_sessions", "0"),
                                        ("port", "'²'")])
def test_port_and_max_sessions_must_be_numbers(tmp_path: Path, attr: str, value: str) -> None:
    msg = one_error(tmp_path, f"""
        workflow:
          nodes:
            a: {{exec: 'true', kind: ssh, host: h, {attr}: {value}}}
        """)
    assert f"'{attr}' must be a whole number" in msg and "wf.yaml:3" in msg


def test_env_names_must_be_shell_names(tmp_path: Path) -> None:
    msg = one_error(tmp_path, """
        workflow:
          nodes:
            a: {exec: 'true', env: {"A;touch PWN": x, OK_1: y}}
        """)
    assert "env name 'A;touch PWN' is not a shell variable name" in msg


def test_an_uploaded_workflows_script_stays_in_its_folder(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "outside.sh").write_text("echo secret\n")
    (tmp_path / "up" / "in.sh").write_text("echo ok\n")
    (tmp_path / "up" / "link.sh").symlink_to(tmp_path / "outside.sh")
    for script in ["../outside.sh", str(tmp_path / "outside.sh"), "~/x.sh", "$HOME/x.sh",
                   "link.sh"]:
        text = f"workflow:\n  nodes:\n    a: {{script: '{script}'}}\n"
        with pytest.raises(SpecError) as err:
            parse_workflow(text, "wf.yaml", base_dir=tmp_path / "up", name="w")
        assert "inside the workflow's folder" in str(err.value), script
        if not script.startswith("/"):  # no server path in the message
            assert str(tmp_path) not in str(err.value)
    for node in ("link.sh", "link"):  # the script named by the node, or <node>.sh
        text = f"workflow:\n  nodes:\n    {node}: {{}}\n"
        with pytest.raises(SpecError, match="inside the workflow's folder"):
            parse_workflow(text, "wf.yaml", base_dir=tmp_path / "up", name="w")
    ok = parse_workflow("workflow:\n  nodes:\n    a: {script: in.sh}\n", "wf.yaml", name="w",
                        base_dir=tmp_path / "up")
    assert ok.workflow.jobs["a"].script == str(tmp_path / "up" / "in.sh")
    # the CLI reads the user's own files: a path outside the folder is theirs to choose
    (tmp_path / "up" / "wf.yaml").write_text(
        "workflow:\n  nodes:\n    a: {script: ../outside.sh}\n")
    assert load_workflow(tmp_path / "up" / "wf.yaml").workflow.jobs["a"].script


def test_range_keys_are_counted_before_they_are_expanded(tmp_path: Path) -> None:
    key = ",".join(f"n[{i * 100000}-{i * 100000 + 99999}]" for i in range(5))
    msg = one_error(tmp_path, f"""
        workflow:
          nodes:
            'n[0-99999]': {{}}
          dependencies: ['{key}']
        """)
    assert "expands into 100000 names, more than the limit of 10000 jobs" in msg
    assert "expands into 500000 names" in msg


def test_a_variable_override_cannot_break_a_directive_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
        variables: {p: debug}
        workflow:
          nodes:
            a: {exec: 'true', kind: slurm, host: h, partition: '{p}'}
        """)
    assert load_workflow(path).workflow.jobs["a"].extras["partition"] == "{p}"
    with pytest.raises(SpecError) as err:
        load_workflow(path, variables={"p": "x\ntouch PWN"})
    assert "wf.yaml:4: node 'a' field 'partition': 'partition' with its variables holds " \
           "the control character" in str(err.value)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("value,words", [
    (float("nan"), "not finite"), ({1: "x"}, "keys are not text"), (b"x", "holds a bytes"),
    (_nested(100), "nests deeper"),
])
def test_variable_overrides_are_plain_bounded_values(tmp_path: Path, value, words) -> None:
    path = write(tmp_path, "variables: {v: 1}\nworkflow: {nodes: {a: {}}}\n")
    with pytest.raises(SpecError) as err:
        load_workflow(path, variables={"v": value})
    assert words in str(err.value)
