"""A problem in a workflow file (file, line, node, field, and how to fix it), and the
error that carries them all. Split from loader.py; ``loader.SpecIssue`` is the same class."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SpecIssue:
    file: str
    line: int | None
    message: str
    node: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = ""
        if self.node:
            what += f"node '{self.node}'"
        if self.field:
            what += f"{' ' if what else ''}field '{self.field}'"
        return f"{where}: {what + ': ' if what else ''}{self.message}"


class SpecError(Exception):
    """The workflow has problems; ``issues`` lists each one."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))

