"""Loading workflow YAML: how errors are reported (file, line, node and field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobmesh.common.loader import SpecError, load_workflow, parse_workflow

from ._loadyaml import errors, load, write

pytestmark = pytest.mark.unit


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


def test_a_cycle_is_reported_beside_other_errors(tmp_path: Path) -> None:
    issues = errors(tmp_path, """
        workflow:
          nodes:
            a: {}
            b: {}
            c: {kind: nowhere}
          dependencies:
            - a,b,a
        """)
    messages = " | ".join(i.message for i in issues)
    assert "unknown kind 'nowhere'" in messages and "dependency cycle: a -> b -> a" in messages


def test_a_missing_script_is_reported_beside_the_nodes_other_errors(tmp_path: Path) -> None:
    issues = errors(tmp_path, """
        workflow:
          nodes:
            a: {script: gone.sh, cache: maybe}
        """)
    messages = " | ".join(i.message for i in issues)
    assert "'cache' must be true or false" in messages
    assert "script 'gone.sh' not found" in messages


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
