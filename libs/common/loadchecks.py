"""The loader's checks of one node's files and values (split from loader.py): its
script and venv (inside the workflow's folder when it was uploaded), its references to
parents' outputs, and what its variables put into directive values. ``NodeChecks`` is a
mixin of the loader's ``_Builder``, which provides ``err``, ``_where`` and the fields
below."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from . import options
from .placeholders import parent_refs, substitute_vars
from .safety import LINE_FIELDS, UnsafeValue, check_line
from .spec import SCRIPT_SUFFIXES, JobSpec

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIELDS = frozenset(JobSpec.model_fields)


def bad_path(text: str) -> str | None:
    """Why ``text`` cannot be a file's path (before the file system is asked), or None."""
    if _CONTROL.search(text):
        return "holds a control character (a line break, a NUL, ...)"
    if len(text) > 4096 or any(len(part.encode()) > 255 for part in text.split("/")):
        return "is too long for a path (at most 255 bytes per name)"
    return None


def single_chains(entries: list[Any], sizes: list[int]) -> str | None:
    """The warning for a ``dependencies:`` list whose every entry names one node, such as
    ``[a,b,c]`` (YAML reads it as three one-node chains; cloudmesh-cc does too, so the
    meaning stays), or None. ``sizes``: how many nodes each entry expanded to."""
    if len(entries) < 2 or any(n != 1 for n in sizes):
        return None
    chain = ",".join(str(e) for e in entries)
    if len(chain) > 120:
        chain = chain[:117] + "..."
    return (f"every entry is a single node, so there are no edges; did you mean '{chain}'? "
            f"(a list item '- {chain}' is one chain: each runs after the one before)")


class NodeChecks:
    base: Path
    confine: bool
    file: str
    lines: Any
    warnings: list[Any]

    def err(self, message: str, *path: str, node: str | None = None,
            field: str | None = None) -> None:
        raise NotImplementedError

    def _where(self, node: str, fld: str) -> tuple[str, ...]:
        raise NotImplementedError

    def _script(self, name: str, attrs: dict[str, Any], path: tuple[str, ...]) -> str | None | bool:
        """The script's absolute path, None for none, False after an error."""
        script = attrs.get("script")
        if script is not None:
            text = str(script)
            bad = bad_path(text)
            if bad is None and self.confine and (text.startswith(("/", "~")) or "$" in text):
                bad = ("must be a path inside the workflow's folder (relative, without ~ or "
                       "$VARIABLES): the workflow was uploaded")
            if bad is None:
                script = os.path.expandvars(os.path.expanduser(text))
                full = (self.base / script).resolve()
                if self.confine and not full.is_relative_to(self.base.resolve()):
                    bad = "must be a path inside the workflow's folder: the workflow was uploaded"
            if bad is not None:
                self.err(f"script {text[:80]!r} {bad}", *path, "script", node=name,
                         field="script")
                return False
            if not full.is_file():
                where = "the workflow's folder" if self.confine else str(full.parent)
                self.err(f"script '{script}' not found (looked in {where}); fix the "
                         "path, which is relative to the workflow file", *path, "script",
                         node=name, field="script")
                return False
            if not full.name.endswith(SCRIPT_SUFFIXES):
                self.err(f"script '{script}' must end in .sh, .py or .ipynb; use 'exec:' to "
                         "run another command", *path, "script", node=name, field="script")
                return False
            return str(full)
        if attrs.get("exec") is not None:
            return None
        if name.endswith(SCRIPT_SUFFIXES):
            full = (self.base / name).resolve()
            if not full.is_file():
                self.err(f"the name ends in '{Path(name).suffix}', so jobmesh runs the script "
                         f"'{name}', which is not next to the workflow file", *path,
                         node=name, field="name")
                return False
            return self._confined(full, name, path)
        default = self.base / f"{name}.sh"
        return self._confined(default.resolve(), name, path) if default.is_file() else None

    def _confined(self, full: Path, name: str, path: tuple[str, ...]) -> str | bool:
        """An uploaded workflow's script found by its node's name must not be a link out
        of its folder either."""
        if self.confine and not full.is_relative_to(self.base.resolve()):
            self.err(f"script '{full.name}' must be inside the workflow's folder: the "
                     "workflow was uploaded", *path, node=name, field="script")
            return False
        return str(full)

    def _check_refs(self, job: JobSpec, parents: set[str]) -> None:
        """{parents.X.outputs.K} must name a parent of this job."""
        fields: list[tuple[str, str]] = []
        if job.exec is not None:
            fields.append(("exec", job.exec))
        fields += [("args", a) for a in job.args]
        fields += [("env", v) for v in job.env.values()]
        if job.label:
            fields.append(("label", job.label))
        node = job.foreach_of or job.name
        for fld, text in fields:
            for ref, key in parent_refs(text):
                if ref not in parents:
                    self.err(f"{{parents.{ref}.outputs.{key}}} refers to '{ref}', which is not "
                             f"a parent of '{job.name}'; add a dependency {ref},{job.name}",
                             *self._where(node, fld), node=node, field=fld)

    def _check_filled(self, job: JobSpec, variables: dict[str, Any]) -> None:
        """A variable (``-v``, REST ``variables``) must not put a line break into a value
        that reaches a batch directive or a command line (the scheduler checks again)."""
        if not variables:
            return
        node, extras = job.foreach_of or job.name, job.extras
        for key in LINE_FIELDS:
            value = getattr(job, key) if key in _FIELDS else extras.get(key)
            if not isinstance(value, str) or "{" not in value or not variables:
                continue
            try:
                check_line(substitute_vars(value, variables), f"'{key}' with its variables")
            except UnsafeValue as exc:
                self.err(str(exc), *self._where(node, key), node=node, field=key)

    def _options(self, name: str, kind: str, own: dict[str, Any], merged: dict[str, Any],
                 path: tuple[str, ...]) -> bool:
        """The node's own attributes against its kind's options (options.py): a typo of a
        known one is an error, another kind's option or an unused name a warning, a bad
        value of a batch option (``time``, ``mem``, ``array``, ...) an error. False after an
        error."""
        from .loader import SpecIssue  # the loader imports this module

        used = f"{merged.get('label') or ''} {merged.get('label_format') or ''}"
        errors, warnings = options.check(kind, [str(k) for k in own], _FIELDS, used)
        for attr, message in errors:
            self.err(message, *path, attr, node=name, field=attr)
        for attr, message in warnings:
            self.warnings.append(SpecIssue(self.file, self.lines.get(*path, attr), message,
                                           node=name, field=attr))
        bad = options.check_values(kind, merged)  # values too (a default's: this node)
        for attr, message in bad:
            self.err(message, *path, attr, node=name, field=attr)
        return not errors and not bad

    def _venv(self, name: str, attrs: dict[str, Any], path: tuple[str, ...]) -> None:
        venv = attrs.get("venv")
        if venv is None or attrs.get("kind", "local") != "local":
            return
        bad = bad_path(str(venv))
        if bad is not None:
            self.err(f"venv {str(venv)[:80]!r} {bad}", *path, "venv", node=name, field="venv")
            return
        full = Path(os.path.expandvars(os.path.expanduser(str(venv))))
        if not (full / "bin" / "python").exists():
            self.err(f"venv '{venv}' not found (no {full}/bin/python); create it with "
                     f"'python3 -m venv {venv}' or fix the path", *path, "venv",
                     node=name, field="venv")
            return
        attrs["venv"] = str(full)

    def _colors(self, colors: Any) -> dict[str, str]:
        if colors is None:
            return {}
        status = colors.get("status", colors) if isinstance(colors, dict) else None
        if not isinstance(status, dict):
            self.err("'colors:' must map status words to colours, e.g. "
                     "colors: {status: {done: '#CCFFCC'}}", "colors")
            return {}
        return {str(k): str(v) for k, v in status.items()}
