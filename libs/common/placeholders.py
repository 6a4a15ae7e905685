"""Substitute the placeholders jobmesh knows, and nothing else.

``{parents.<job>.outputs.<key>}`` and ``{var}`` for known variables are replaced; shell
syntax such as ``${HOME}``, ``{a,b}`` or ``{}`` in a command is left alone.

In a shell command (``exec:``, ``shell=True``) a value is data, never code: it is put in
as one shell word, quoted for where the placeholder sits (docs/workflows.md#placeholder-
quoting). ``{x:raw}`` puts the text in as it is, for an author who wants shell code.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

_PARENT = re.compile(
    r"(?<!\$)\{parents\.([A-Za-z0-9_.-]+?)\.outputs\.([A-Za-z0-9_-]+)(:raw)?\}")
_VAR = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)(:raw)?\}")
# Both in one pass, so a substituted value is never read as a placeholder again.
_ANY = re.compile(r"(?<!\$)\{(?:parents\.([A-Za-z0-9_.-]+?)\.outputs\.([A-Za-z0-9_-]+)"
                  r"|([A-Za-z_][A-Za-z0-9_]*))(:raw)?\}")
_HEREDOC = re.compile(r"<<(-?)[ \t]*(?:'([^'\n]+)'|\"([^\"\n]+)\"|\\?([A-Za-z0-9_.-]+))")
_WORD_START = " \t\n;&|()"


class MissingOutput(KeyError):
    def __init__(self, job: str, key: str):
        super().__init__(f"{job}.outputs.{key}")
        self.job, self.key = job, key


class PlaceholderError(ValueError):
    """A value that cannot be put into a command safely where its placeholder sits."""


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def parent_refs(text: str) -> list[tuple[str, str]]:
    """The (job, key) pairs a string refers to."""
    return [(m.group(1), m.group(2)) for m in _PARENT.finditer(text)]


def var_refs(text: str) -> list[str]:
    """The ``{name}`` placeholders a string holds (variables or foreach keys)."""
    return [m.group(1) for m in _VAR.finditer(text)]


class _Shell:
    """Where in a POSIX shell command a position is: unquoted, inside '...', "...",
    $'...', a comment or a here-document. Read forward only (``at`` must grow)."""

    def __init__(self, text: str):
        self.text, self.i = text, 0
        self.stack: list[str] = ["plain"]   # plain | single | double | ansi | comment
        self.pending: list[tuple[str, bool, bool]] = []  # here-docs to start at newline
        self.heredoc: tuple[str, bool, bool] | None = None  # (delimiter, quoted, strip tabs)

    def at(self, pos: str | int) -> str:
        text = self.text
        while self.i < int(pos):
            ch = text[self.i]
            if self.heredoc is not None:
                self._heredoc_line()
                continue
            top = self.stack[-1]
            step = 1
            if top == "single":
                if ch == "'":
                    self.stack.pop()
            elif top == "comment":
                if ch == "\n":
                    self.stack.pop()
                    step = 0
            elif top == "ansi":
                if ch == "\\":
                    step = 2
                elif ch == "'":
                    self.stack.pop()
            elif top == "double":
                if ch == "\\":
                    step = 2
                elif ch == '"':
                    self.stack.pop()
                elif text.startswith("$(", self.i):
                    self.stack.append("plain")
                    step = 2
                elif ch == "`":
                    self.stack.append("tick")
            else:  # plain, or inside $( ) or ` `
                step = self._plain(ch)
            self.i += step
        if self.heredoc is not None:
            return "heredoc-raw" if self.heredoc[1] else "heredoc"
        return {"tick": "plain"}.get(self.stack[-1], self.stack[-1])

    def _plain(self, ch: str) -> int:
        text, i = self.text, self.i
        if ch == "\\":
            return 2
        if ch == "'":
            self.stack.append("single")
        elif ch == '"':
            self.stack.append("double")
        elif text.startswith("$'", i):
            self.stack.append("ansi")
            return 2
        elif text.startswith("$(", i):
            self.stack.append("plain")
            return 2
        elif ch == ")" and len(self.stack) > 1:
            self.stack.pop()
        elif ch == "`":
            if self.stack[-1] == "tick":
                self.stack.pop()
            else:
                self.stack.append("tick")
        elif ch == "#" and (i == 0 or text[i - 1] in _WORD_START):
            self.stack.append("comment")
        elif ch == "\n" and self.pending:
            self.heredoc = self.pending.pop(0)
        elif text.startswith("<<", i) and not text.startswith("<<<", i):
            m = _HEREDOC.match(text, i)
            if m:
                word = m.group(2) or m.group(3) or m.group(4)
                quoted = m.group(4) is None or text[m.start(4) - 1] == "\\"
                self.pending.append((word, quoted, m.group(1) == "-"))
                return m.end() - i
        return 1

    def _heredoc_line(self) -> None:
        """Skip one line of a here-document body; its delimiter line ends it."""
        assert self.heredoc is not None
        text = self.text
        end = text.find("\n", self.i)
        end = len(text) if end < 0 else end
        line = text[self.i:end]
        if (line.lstrip("\t") if self.heredoc[2] else line) == self.heredoc[0]:
            self.heredoc = self.pending.pop(0) if self.pending else None
        self.i = end + 1


def _word(text: str) -> str:
    """shlex.quote, with each ``{`` followed by an empty '' so the value's text is never
    read as a placeholder again (a foreach value is filled in before the variables)."""
    return shlex.quote(text).replace("{", "{''")


def shell_value(text: str, where: str) -> str:
    """``text`` as one word of data for a placeholder sitting in context ``where``."""
    if where == "single":   # '...{x}...': close, the quoted word, reopen
        return "'" + _word(text) + "'"
    if where == "double":   # "...{x}...": the same with double quotes
        return '"' + _word(text) + '"'
    if where == "ansi":     # $'...{x}...'
        return text.replace("\\", "\\\\").replace("'", "\\'").replace("{", "{'$'")
    if where == "comment":
        return _word(" ".join(text.splitlines()))
    if where.startswith("heredoc"):
        if where == "heredoc":
            return re.sub(r"([\\$`])", r"\\\1", text)
        return text
    return _word(text)


def _heredoc_safe(text: str, m: re.Match[str], value: str, delimiter: str) -> None:
    """A value in a here-document must not end it early (a line equal to its delimiter)."""
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    line = text[start:m.start()] + value + text[m.end():end if end >= 0 else len(text)]
    if "\n" in value or "\r" in value or line.lstrip("\t") == delimiter:
        raise PlaceholderError(f"the value {value[:40]!r} cannot go into a here-document "
                               "(a line break, or its end marker); pass it as an argument or "
                               "an env: value instead")


def _fill(text: str, lookup: Any, shell: bool) -> str:
    """Replace each placeholder for which ``lookup(match)`` gives a value (not None)."""
    scan = _Shell(text) if shell else None
    parts: list[str] = []
    last = 0
    for m in _ANY.finditer(text):
        value = lookup(m)
        if value is None:
            continue
        value = as_text(value[0])
        if scan is not None and not m.group(4):
            where = scan.at(m.start())
            if scan.heredoc is not None:
                _heredoc_safe(text, m, value, scan.heredoc[0])
            value = shell_value(value, where)
            for _ in range(scan.stack.count("tick")):  # `...` removes one level of \
                value = re.sub(r"([\\$`])", r"\\\1", value)
        parts += [text[last:m.start()], value]
        last = m.end()
    return "".join(parts) + text[last:] if parts else text


def substitute_vars(text: str, values: Mapping[str, Any], shell: bool = False) -> str:
    """Replace ``{name}`` for the names in ``values`` only; everything else stays.
    ``shell``: the text is a shell command, so each value goes in as one quoted word."""
    if not values or "{" not in text:
        return text
    return _fill(text, lambda m: (values[m.group(3)],) if m.group(3) in values else None,
                 shell)


def substitute(text: str, outputs: Mapping[str, Mapping[str, Any]],
               variables: Mapping[str, Any] | None = None, shell: bool = False) -> str:
    """Replace known placeholders. Raises MissingOutput when a parent has no such output,
    and PlaceholderError when a value cannot go where its placeholder is (``shell``)."""
    if "{" not in text:
        return text
    variables = variables or {}

    def lookup(m: re.Match[str]) -> tuple[Any] | None:
        if m.group(3) is not None:
            return (variables[m.group(3)],) if m.group(3) in variables else None
        job, key = m.group(1), m.group(2)
        if job not in outputs or key not in outputs[job]:
            raise MissingOutput(job, key)
        return (outputs[job][key],)

    return _fill(text, lookup, shell)
