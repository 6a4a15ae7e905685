"""``jobmesh run``'s quick path (entry.py): which command lines it takes, and that it
leaves everything else to the full command line (typer)."""

from __future__ import annotations

import pytest

from jobmesh.cli.entry import _plain_run


@pytest.mark.parametrize(("argv", "want"), [
    (["run", "f.yaml"], ("f.yaml", 0, None, False, False)),
    (["run", "f.yaml", "-q", "-p", "2"], ("f.yaml", 2, None, False, True)),
    (["run", "--parallel", "3", "f.yaml", "--restart", "--name", "x", "--quiet"],
     ("f.yaml", 3, "x", True, True)),
    (["run", "-n", "x", "f.yaml"], ("f.yaml", 0, "x", False, False)),
])
def test_a_plain_run_takes_the_quick_path(argv: list[str], want: tuple[object, ...]) -> None:
    assert _plain_run(["jobmesh", *argv]) == want


@pytest.mark.parametrize("argv", [
    ["run"], ["run", "--help"], ["run", "f", "--help"], ["run", "f", "g"],
    ["run", "f", "--parallel=2"], ["run", "f", "-p", "-1"], ["run", "f", "-p", "x"],
    ["run", "f", "-p"], ["run", "f", "-q", "-q"], ["run", "f", "-v", "a=1"],
    ["run", "f", "--allow-large"], ["run", "f", "-qp", "2"], ["run", "-", "f"],
    ["run", "f", "-n", "--restart"], ["status", "f"], ["validate", "f"],
])
def test_anything_else_goes_to_the_full_command_line(argv: list[str]) -> None:
    assert _plain_run(["jobmesh", *argv]) is None


def test_the_quick_path_does_not_load_typer() -> None:
    import subprocess
    import sys

    code = ("import sys; import jobmesh.cli.run_core, jobmesh.cli.errors; "
            "print('typer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
