"""The fenced code blocks of README.md, docs/*.md and the examples' header commands, as
tests/integration/test_docs.py runs them.

A block is run by its language: ``bash``/``sh``/``shell`` as shell commands, ``yaml``
through ``jobmesh validate`` and ``jobmesh run``, ``python`` in one interpreter per
file. Blocks in any other language (``text``, ``json``, none) show output or file
formats and are not run.

A block can carry instructions in HTML comments on the lines right above its fence,
which Markdown renders as nothing and a reader of the source sees beside the block::

    <!-- docs-test dir: examples/paper -->        save the YAML / run the block there
    <!-- docs-test validate: needs an SSH host -->  YAML: validate only, and why not run
    <!-- docs-test skip: needs Windows -->       not run at all, and why
    <!-- docs-test drop: make test -- REASON --> leave out the lines starting with it

``python tests/docs_blocks.py`` lists every block and what the test does with it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHELL = {"bash", "sh", "shell", "console"}
RUN_LANGS = SHELL | {"yaml", "yml", "python", "py"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
MARK = re.compile(r"^\s*<!--\s*docs-test\s+(\w+):\s*(.*?)\s*-->\s*$")
# Top-level keys of a workflow file (libs/common/loader.py TOP_KEYS); a YAML fragment
# without 'workflow:' keeps these at the top and takes every other key as a node.
TOP_KEYS = {"name", "defaults", "variables", "description", "slurm_dependencies", "colors"}


@dataclass
class Block:
    file: str  # relative to the repository's root
    line: int  # the fence's line, from 1
    lang: str
    text: str
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}:{self.lang or 'text'}"

    @property
    def kind(self) -> str:
        """shell, yaml, python, or shown (output and formats, not run)."""
        if self.lang in SHELL:
            return "shell"
        if self.lang in ("yaml", "yml"):
            return "yaml"
        if self.lang in ("python", "py"):
            return "python"
        return "shown"

    def first_line(self) -> str:
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the docs-test marks above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = str(path.relative_to(ROOT))
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        i += 1
        marks: dict[str, str] = {}
        j = start - 1
        while j >= 0 and (mk := MARK.match(lines[j])):
            marks.setdefault(mk.group(1), mk.group(2))
            j -= 1
        out.append(Block(rel, start + 1, lang, "\n".join(body) + "\n", marks))
    return out


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def all_blocks() -> list[Block]:
    return [b for f in doc_files() for b in blocks(f)]


def header_commands(path: Path) -> list[str]:
    """The jobmesh commands in a workflow file's leading comment lines (the way the file
    says to run it), with their trailing comments removed."""
    out: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.startswith("#"):
            if raw.strip():
                break
            continue
        m = re.search(r"(?:^#\s+|:\s+)(jobmesh (?:run|validate)\s.*)$", raw)
        if m:
            out.append(re.sub(r"\s+#\s.*$", "", m.group(1)).strip())
    return out


def complete(text: str) -> tuple[dict[str, Any], bool]:
    """The workflow a YAML block describes, and whether it had to be completed: a
    fragment without 'workflow:' takes its top-level keys as they are and every other key
    as a node; its chains come from a commented ``# dependencies:`` list, as the docs
    write them under fragments."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("the block is not a mapping")
    if "workflow" in data:
        return data, False
    top = {k: v for k, v in data.items() if k in TOP_KEYS}
    nodes = {k: v for k, v in data.items() if k not in TOP_KEYS}
    deps: list[str] = []
    commented = re.search(r"^#\s*dependencies:\s*\n((?:#\s+-.*\n?)+)", text, re.M)
    if commented:
        deps = [re.sub(r"^#\s+-\s*", "", ln).split("#")[0].strip()
                for ln in commented.group(1).splitlines()]
    return {**top, "workflow": {"nodes": nodes, "dependencies": deps}}, True


def remote_kinds(data: dict[str, Any]) -> set[str]:
    """The kinds other than local a workflow's nodes use (with its defaults'): such a
    workflow needs hosts or a batch system this machine's user does not have, so the
    docs test validates it and does not run it."""
    default = (data.get("defaults") or {}).get("kind", "local")
    nodes = (data.get("workflow") or {}).get("nodes") or {}
    kinds = {str((a or {}).get("kind", default)) if isinstance(a, dict) else default
             for a in nodes.values()} if isinstance(nodes, dict) else set()
    return kinds - {"local"}


def main() -> None:
    """List every block and what the docs test does with it."""
    counts: dict[str, int] = {}
    for b in all_blocks():
        what = b.kind if b.kind != "shown" else "shown, not run"
        if "skip" in b.marks:
            what = f"skipped: {b.marks['skip']}"
        elif "validate" in b.marks:
            what = f"validated only: {b.marks['validate']}"
        elif b.kind == "yaml" and (kinds := remote_kinds(complete(b.text)[0])):
            what = f"validated only: needs kind {', '.join(sorted(kinds))}"
        counts[what.split(":")[0]] = counts.get(what.split(":")[0], 0) + 1
        print(f"{b.id:32} {what}")
    for f in sorted((ROOT / "examples").rglob("*.yaml")):
        for cmd in header_commands(f):
            print(f"{str(f.relative_to(ROOT)):32} {cmd}")
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())), file=sys.stderr)


if __name__ == "__main__":
    main()
