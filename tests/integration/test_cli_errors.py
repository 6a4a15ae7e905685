"""Bad input gets a short error naming the file, line and field, exit code 2, and no
traceback, from `jobmesh validate` and `jobmesh run` alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli

pytestmark = pytest.mark.integration


def check(home: Path, path: Path, *needles: str) -> str:
    for command in ("validate", "run"):
        res = cli(home, command, str(path))
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr + res.stdout
        for needle in needles:
            assert needle in res.stderr, (command, needle, res.stderr)
    assert not (home / "runs").exists(), "bad input must not start anything"
    return res.stderr


def test_cycle_names_the_cycle_and_its_line(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "cyc.yaml"
    wf.write_text("workflow:\n  nodes:\n    a: {exec: 'true'}\n  dependencies:\n"
                  "    - a,b,c\n    - c,a\n")
    err = check(home, wf, "cyc.yaml:6", "dependency cycle")
    assert "a -> b -> c -> a" in err


def test_unknown_kind(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "kind.yaml"
    wf.write_text("workflow:\n  nodes:\n    a:\n      kind: sssh\n      exec: 'true'\n")
    check(home, wf, "kind.yaml:4", "node 'a'", "field 'kind'", "unknown kind 'sssh'",
          "local, ssh")


def test_yaml_syntax_error_has_line(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "syntax.yaml"
    wf.write_text("workflow:\n  nodes:\n    a: {exec: 'true'\n    b: {}\n")
    check(home, wf, "syntax.yaml:4", "YAML syntax error")


def test_missing_script(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "missing.yaml"
    wf.write_text("workflow:\n  nodes:\n    a:\n      script: nothere.sh\n")
    check(home, wf, "missing.yaml:4", "field 'script'", "script 'nothere.sh' not found")


def test_missing_suffix_script(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "suffix.yaml"
    wf.write_text("workflow:\n  nodes:\n    prep.py: {}\n")
    check(home, wf, "suffix.yaml:3", "node 'prep.py'", "not next to the workflow file")


@pytest.mark.parametrize("name", ["x;touch PWNED", "a b", "../up", "a*"])
def test_invalid_job_name(tmp_path: Path, home: Path, name: str) -> None:
    wf = tmp_path / "names.yaml"
    wf.write_text(f"workflow:\n  nodes:\n    '{name}': {{exec: 'true'}}\n")
    check(home, wf, "names.yaml:3", "invalid job name")
    assert not list(tmp_path.glob("PWNED")) and not Path("PWNED").exists()


def test_invalid_workflow_name_from_flag(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "ok.yaml"
    wf.write_text("workflow:\n  nodes:\n    a: {exec: 'true'}\n")
    res = cli(home, "run", str(wf), "--name", "x;touch PWNED")
    assert res.returncode == 2 and "invalid workflow name" in res.stderr
    assert "Traceback" not in res.stderr


def test_several_problems_reported_together(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "many.yaml"
    wf.write_text("workflow:\n  nodes:\n    a: {kind: nope}\n    b: {script: gone.sh}\n"
                  "    c: {exec: 'true', retries: -1, timeout: forever}\n")
    err = check(home, wf, "many.yaml:3", "many.yaml:4", "many.yaml:5")
    assert "retries" in err and "timeout" in err and "forever" in err


def test_missing_file_and_not_a_workflow(tmp_path: Path, home: Path) -> None:
    res = cli(home, "validate", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2 and "no such file" in res.stderr
    other = tmp_path / "list.yaml"
    other.write_text("- just\n- a list\n")
    check(home, other, "workflow:")


def test_status_of_unknown_workflow(home: Path) -> None:
    res = cli(home, "status", "ghost")
    assert res.returncode == 1 and "no workflow named 'ghost'" in res.stderr
    res = cli(home, "status", "bad;name")
    assert res.returncode == 2 and "invalid workflow name" in res.stderr


@pytest.mark.parametrize("text,needles", [
    ("x: !!int a\nworkflow: {nodes: {a: {}}}\n", ["t.yaml:1", "!!int cannot be read"]),
    ('x: !!float ""\nworkflow: {nodes: {a: {}}}\n', ["t.yaml:1", "!!float cannot be read"]),
    ("workflow:\n  nodes:\n    a: {x: !!timestamp a}\n", ["t.yaml:3", "!!timestamp"]),
    ('workflow:\n  nodes:\n    a: {script: "a\\0b.sh"}\n',
     ["t.yaml:3", "field 'script'", "control character"]),
    ("workflow:\n  nodes:\n    a: {script: " + "s" * 300 + ".sh}\n",
     ["t.yaml:3", "field 'script'", "too long"]),
    ("workflow:\n  nodes:\n    a: {venv: " + "v" * 300 + "}\n", ["field 'venv'", "too long"]),
    ("workflow:\n  nodes:\n    a: {exec: 'true', pool: 'bad.pool>'}\n",
     ["t.yaml:3", "field 'pool'", "invalid pool name"]),
    ('workflow:\n  nodes:\n    a: {exec: "true", kind: slurm, partition: "x\\ntouch PWN"}\n',
     ["t.yaml:3", "field 'partition'", "control character"]),
    ("workflow:\n  nodes:\n    a: {exec: 'true', kind: ssh, host: h, port: abc}\n",
     ["t.yaml:3", "'port' must be a whole number"]),
    ("workflow:\n  nodes:\n    a: {exec: 'true', kind: ssh, host: h, max_sessions: 1.5}\n",
     ["'max_sessions' must be a whole number"]),
    ("workflow:\n  nodes:\n    a: {exec: 'true', env: {'1A': x}}\n",
     ["field 'env'", "not a shell variable name"]),
    ("workflow:\n  nodes:\n    'n[0-99999,100000-199999]': {}\n",
     ["t.yaml:3", "expands into 200000 names", "--allow-large"]),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e]\n"
     "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nworkflow: {nodes: {a: {}}}\n",
     ["aliases (*name) make this file hold more than"]),
])
def test_hostile_values_exit_2_with_a_message(tmp_path: Path, home: Path, text: str,
                                              needles: list[str]) -> None:
    wf = tmp_path / "t.yaml"
    wf.write_text(text)
    err = check(home, wf, *needles)
    assert "internal error" not in err and "could not check" not in err


def test_hostile_variable_values_from_the_cli(tmp_path: Path, home: Path) -> None:
    wf = tmp_path / "v.yaml"
    wf.write_text("variables: {p: debug}\nworkflow:\n  nodes:\n"
                  "    a: {exec: 'true', kind: slurm, host: h, partition: '{p}'}\n")
    res = cli(home, "validate", str(wf), "-v", "p=!!int a")
    assert res.returncode == 0, res.stderr  # not a number: the text '!!int a'
    res = cli(home, "validate", str(wf), "-v", "p=&a [*a]")  # a recursive alias: text
    assert res.returncode == 0, res.stderr
    res = cli(home, "validate", str(wf), "-v", 'p="x\\ntouch PWN"')
    assert res.returncode == 2 and "control character" in res.stderr
    assert "Traceback" not in res.stderr


def test_up_on_a_port_in_use_says_so_in_one_line(home: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = cli(home, "up", "--port", str(port), timeout=90)
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in res.stderr
    assert "--port" in res.stderr and "Traceback" not in res.stderr + res.stdout
    assert not (home / "service.json").exists()


def _servers_of(home: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and "nats-server" in cmd[0] and any(str(home) in a for a in cmd):
            found.append(proc.info["pid"])
    return found


@pytest.mark.parametrize("how", ["bad input", "bad platform", "success"])
def test_run_leaves_no_nats_server_behind(tmp_path: Path, home: Path, how: str) -> None:
    """`jobmesh run` starts its private nats-server before it reads the YAML; whatever
    the outcome (a bad file, a bad JOBMESH_PLATFORM, a run that succeeded), the server
    is stopped when the command ends."""
    import os

    from tests.helpers import wait_until, write_workflow

    nodes = {"a": {"exec": "echo hi", "kind": "nope"}} if how == "bad input" else \
        {"a": {"exec": "echo hi"}}
    wf = write_workflow(tmp_path, "leftover", nodes, [])
    env = {**os.environ, **({"JOBMESH_PLATFORM": "foo"} if how == "bad platform" else {})}
    res = cli(home, "run", str(wf), env=env)
    assert res.returncode == (0 if how == "success" else 2), (res.stdout, res.stderr)
    wait_until(lambda: not _servers_of(home), 15, "the private nats-server to stop")


def test_a_workflow_over_the_message_limit_fails_at_once_saying_what_to_change(
        tmp_path: Path, home: Path) -> None:
    """Two jobs carrying 12 MB of random (incompressible) env values are ~17 MB as
    submitted even compressed, over the embedded server's 8 MB max_payload: the run is
    refused at once (not retried for 90 s), exit 2, with the size, the limit and what
    to change; nothing is stored. (Sweeps compress ~10-25x: see test_too_large.py.)"""
    import base64
    import os
    import time

    import yaml

    env = {f"NOTE{i}": base64.b64encode(os.urandom(750_000)).decode() for i in range(8)}
    wf = tmp_path / "huge.yaml"
    wf.write_text(yaml.safe_dump({"name": "huge", "workflow": {"nodes": {"train": {
        "exec": "true # {seed}", "env": env, "foreach": {"seed": [1, 2]}}},
        "dependencies": []}}))
    t0 = time.monotonic()
    res = cli(home, "run", str(wf), "--allow-large", timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    for needle in ("workflow 'huge'", "2 jobs", "compressed", "max_payload of 8.0 MB",
                   "dynamic foreach"):
        assert needle in res.stderr, (needle, res.stderr)
    assert took < 60, f"took {took:.0f} s: was it retried?"
    res = cli(home, "status", "huge")
    assert res.returncode != 0 and "huge" in res.stderr, (res.stdout, res.stderr)
