"""Choosing the local executor's platform, and a guard on the source: no ``/proc`` read
and no Linux-only call outside the Linux branch, no POSIX-only call outside the POSIX
branch, in the code that runs local jobs and ``jobmesh down``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from jobmesh.executor.platforms import Linux, MacOS, select_platform
from tests.helpers import ROOT

pytestmark = pytest.mark.unit

CHECKED = ["services/executor/local.py", "services/executor/procfiles.py",
           "services/executor/platforms.py", "services/executor/platform_windows.py",
           "services/executor/rundir.py", "libs/common/procs.py", "libs/cli/service.py"]
LINUX_ONLY = {"pidfd_open"}
POSIX_ONLY = {"killpg", "setsid", "environb", "start_new_session", "getpgid", "WNOHANG"}


@pytest.mark.parametrize("name, cls", [("linux", Linux), ("macos", MacOS), ("darwin", MacOS),
                                       ("linux2", Linux)])
def test_a_platform_can_be_forced_by_name(name: str, cls: type) -> None:
    assert type(select_platform(name)) is cls


def test_jobmesh_platform_in_the_environment_forces_it(monkeypatch) -> None:
    monkeypatch.setenv("JOBMESH_PLATFORM", "macos")
    assert select_platform().name == "macos"
    monkeypatch.delenv("JOBMESH_PLATFORM")
    expected = {"linux": "linux", "darwin": "macos", "win32": "windows"}[sys.platform]
    assert select_platform().name == expected


def test_unknown_or_impossible_platforms_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown platform 'beos'.*linux, macos or windows"):
        select_platform("beos")
    if sys.platform != "win32":
        with pytest.raises(ValueError, match="needs Windows"):
            select_platform("windows")


def _where(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node -> the name of the class it sits in ('' at module level)."""
    owner: dict[ast.AST, str] = {}

    def visit(node: ast.AST, cls: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.ClassDef) else cls
            owner[child] = name
            visit(child, name)

    visit(tree, "")
    return owner


def _docstrings(tree: ast.AST) -> set[int]:
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return docs


def _uses(path: str) -> list[tuple[str, str, int]]:
    """(what, class, line) for every OS-specific name and every '/proc' string (not in
    docstrings; comments are not code)."""
    tree = ast.parse((ROOT / path).read_text())
    owner = _where(tree)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        name = (node.attr if isinstance(node, ast.Attribute) else
                node.arg if isinstance(node, ast.keyword) else
                node.id if isinstance(node, ast.Name) else None)
        if name in LINUX_ONLY | POSIX_ONLY:
            found.append((name, owner.get(node, ""), node.lineno))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                "/proc" in node.value and id(node) not in docs:
            found.append(("/proc", owner.get(node, ""), node.lineno))
    return found


def test_no_proc_read_and_no_linux_only_call_outside_the_linux_branch() -> None:
    for path in CHECKED:
        for what, cls, line in _uses(path):
            where = f"{path}:{line} ({what} in {cls or 'module'})"
            if what in LINUX_ONLY:
                assert (path, cls) == ("services/executor/platforms.py", "Linux"), where
            elif what == "/proc":
                # Git Bash's own /proc (the Windows pid of the wrapper's bash)
                assert path == "services/executor/platform_windows.py", where
            elif what in POSIX_ONLY:
                allowed = {("services/executor/platforms.py", "Platform"),
                           ("services/executor/local.py", "LocalExecutor"),  # inline only
                           ("libs/cli/service.py", "")}  # up(): ignored on Windows; WNOHANG
                assert (path, cls) in allowed, where


def test_the_guard_sees_what_it_guards() -> None:
    uses = {(what, cls) for what, cls, _ in _uses("services/executor/platforms.py")}
    assert ("pidfd_open", "Linux") in uses and ("killpg", "Platform") in uses
    assert any(w == "/proc" for w, _, _ in _uses("services/executor/platform_windows.py"))


def test_posix_only_calls_in_local_py_sit_behind_the_platform() -> None:
    """local.py reads os.environb only when the platform hands files over inline
    (Windows does not), and never calls killpg or pidfd itself."""
    text = (ROOT / "services/executor/local.py").read_text()
    assert "os.environb" in text and "if inline else None" in text
    assert "killpg" not in text and "pidfd_open" not in text and "/proc" not in text
    assert "/proc" not in Path(ROOT / "libs/cli/service.py").read_text()


def test_a_bad_jobmesh_platform_names_the_variable(monkeypatch) -> None:
    from jobmesh.executor.platforms import PlatformError

    monkeypatch.setenv("JOBMESH_PLATFORM", "foo")
    with pytest.raises(PlatformError, match=r"^JOBMESH_PLATFORM=foo: unknown platform 'foo'"):
        select_platform()
    with pytest.raises(PlatformError, match=r"^unknown platform 'bar'"):  # an argument
        select_platform("bar")
