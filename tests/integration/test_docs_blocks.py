"""tests/docs_blocks.py: how blocks, their marks, fragments and header commands are read
(the docs test runs what this finds, so a block it missed would go untested)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests import docs_blocks as db

pytestmark = pytest.mark.unit


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_blocks_their_languages_lines_and_marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    monkeypatch.setattr(db, "ROOT", tmp_path)
    page = write(tmp_path, """
        # Title

        <!-- docs-test dir: examples/paper -->
        <!-- docs-test skip: needs Windows -->
        ```yaml
        name: a
        ```

        - a list item:

          ```bash
          jobmesh list
          ```

        ````
        ```not a fence inside a longer one
        ````
        """)
    yaml_block, shell, shown = db.blocks(page)
    assert (yaml_block.line, yaml_block.kind, yaml_block.text) == (5, "yaml", "name: a\n")
    assert yaml_block.marks == {"dir": "examples/paper", "skip": "needs Windows"}
    assert (shell.kind, shell.text, shell.marks) == ("shell", "jobmesh list\n", {})
    assert shown.kind == "shown" and "not a fence" in shown.text


def test_a_fragment_becomes_a_workflow_with_its_commented_chains() -> None:
    data, completed = db.complete(textwrap.dedent("""
        variables: {env: dev}
        split: {exec: 'echo a'}
        merge: {exec: 'echo b'}
        # dependencies:
        #   - split,merge    # a chain
        """))
    assert completed
    assert data == {"variables": {"env": "dev"}, "workflow": {
        "nodes": {"split": {"exec": "echo a"}, "merge": {"exec": "echo b"}},
        "dependencies": ["split,merge"]}}
    whole, completed = db.complete("workflow: {nodes: {a: {}}}\n")
    assert not completed and whole == {"workflow": {"nodes": {"a": {}}}}


def test_kinds_other_than_local_are_validated_only() -> None:
    data, _ = db.complete("defaults: {kind: slurm}\na: {kind: local}\nb: {}\nc: {kind: ssh}\n")
    assert db.remote_kinds(data) == {"slurm", "ssh"}
    assert db.remote_kinds(db.complete("a: {exec: 'true'}\n")[0]) == set()


def test_header_commands_end_at_the_first_yaml_line(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("# A sweep.\n#\n#   jobmesh run examples/sweep.yaml   # 45 jobs\n"
                    "# Run it with:  jobmesh validate wf.yaml\nname: x\n"
                    "#   jobmesh run not-a-header.yaml\n")
    assert db.header_commands(path) == ["jobmesh run examples/sweep.yaml",
                                        "jobmesh validate wf.yaml"]


def test_every_page_has_blocks_and_the_readme_starts_with_make() -> None:
    readme = db.blocks(db.ROOT / "README.md")[0]
    assert readme.text.splitlines()[0].startswith("make run")
    assert readme.text.splitlines()[1].startswith("make test")
    assert len(db.all_blocks()) > 30
