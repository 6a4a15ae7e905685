"""Writing a workflow file in a test folder and loading it: shared by the loader tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jobmesh.common.loader import SpecError, SpecIssue, load_workflow


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
