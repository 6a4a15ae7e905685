"""Loading workflow YAML: hostile input is refused with a clear error (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobmesh.common.loader import SpecError, load_workflow, parse_workflow

from ._loadyaml import errors, load, write

pytestmark = pytest.mark.unit


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
    # time and mem are checked against Slurm's formats first, which a line break fails
    why = "is not a Slurm" if attr in ("time", "mem") else "control character"
    assert f"field '{attr}'" in msg and why in msg and "wf.yaml:3" in msg


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
