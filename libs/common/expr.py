"""A tiny, safe expression language for ``when:`` and ``repeat: {until: ...}``.

No Python ``eval``: a tokenizer and a recursive-descent parser build a small tree, and
``Expr.evaluate`` walks it with a ``lookup`` callback that resolves names. The language:

- literals: ``42``, ``-1.5``, ``'text'`` or ``"text"``, ``true``/``false``/``null`` (also
  ``True``/``False``/``None``), lists ``['a100', 'v100']``;
- names: ``env``, ``gpu``, ``iteration``, and dotted paths ``prepare.outputs.count``,
  ``prepare.state``, ``fetch.sh.outputs.n`` (job names may hold ``-`` and ``.``, so there is
  no arithmetic: ``a-1`` is a name);
- comparisons ``== != < <= > >=``, ``in`` and ``not in`` (not chained);
- ``and``, ``or``, ``not`` (Python truthiness, short-circuit) and parentheses.

Ordering compares two numbers or two strings; anything else is an ``EvalError``, as is a
name that cannot be resolved (e.g. a parent that has no such output).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MAX_LENGTH = 4000
MAX_DEPTH = 64
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "True", "False", "None"}
CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False,
             "None": None}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


class ExprError(ValueError):
    """A problem with an expression; ``pos`` is the 0-based column, if known."""

    def __init__(self, message: str, pos: int | None = None):
        super().__init__(message if pos is None else f"{message} (at column {pos + 1})")
        self.pos = pos


class ExprSyntaxError(ExprError):
    pass


class EvalError(ExprError):
    pass


class Unresolved(LookupError):
    """Raised by a lookup callback for a name it cannot resolve."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, string, name, op, kw, end
    text: str
    pos: int
    value: Any = None


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExprSyntaxError(f"unexpected character {text[pos]!r}", pos)
        kind, tok = m.lastgroup or "", m.group()
        if kind == "number":
            value: Any = float(tok) if any(c in tok for c in ".eE") else int(tok)
            out.append(_Tok("number", tok, pos, value))
        elif kind == "string":
            body = tok[1:-1]
            value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), body)
            out.append(_Tok("string", tok, pos, value))
        elif kind == "name":
            out.append(_Tok("kw" if tok in KEYWORDS else "name", tok, pos))
        elif kind == "op":
            out.append(_Tok("op", tok, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


# Tree nodes are tuples: ("lit", v) ("name", path, pos) ("list", [..]) ("not", x)
# ("and", a, b) ("or", a, b) ("cmp", op, a, b, pos)

class _Parser:
    def __init__(self, text: str):
        self.toks, self.i, self.depth = _tokens(text), 0, 0
        self.names: list[str] = []

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind in ("op", "kw") and tok.text == text:
            self.i += 1
            return True
        return False

    def parse(self) -> tuple[Any, ...]:
        if self.peek().kind == "end":
            raise ExprSyntaxError("the expression is empty", 0)
        tree = self.or_()
        tok = self.peek()
        if tok.kind != "end":
            raise ExprSyntaxError(f"unexpected {tok.text!r}", tok.pos)
        return tree

    def or_(self) -> tuple[Any, ...]:
        left = self.and_()
        while self.accept("or"):
            left = ("or", left, self.and_())
        return left

    def and_(self) -> tuple[Any, ...]:
        left = self.not_()
        while self.accept("and"):
            left = ("and", left, self.not_())
        return left

    def not_(self) -> tuple[Any, ...]:
        if self.accept("not"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExprSyntaxError("the expression is nested too deeply", self.peek().pos)
            inner = self.not_()
            self.depth -= 1
            return ("not", inner)
        return self.cmp()

    def cmp(self) -> tuple[Any, ...]:
        left = self.atom()
        tok = self.peek()
        op = None
        if tok.kind == "op" and tok.text in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take().text
        elif tok.kind == "kw" and tok.text == "in":
            op = self.take().text
        elif tok.kind == "kw" and tok.text == "not" and self.toks[self.i + 1].text == "in":
            self.i += 2
            op = "not in"
        if op is None:
            return left
        right = self.atom()
        nxt = self.peek()
        if nxt.text in ("==", "!=", "<", "<=", ">", ">=", "in"):
            raise ExprSyntaxError("comparisons cannot be chained; join them with 'and'",
                                  nxt.pos)
        return ("cmp", op, left, right, tok.pos)

    def atom(self) -> tuple[Any, ...]:
        tok = self.take()
        if tok.kind in ("number", "string"):
            return ("lit", tok.value)
        if tok.kind == "kw" and tok.text in CONSTANTS:
            return ("lit", CONSTANTS[tok.text])
        if tok.kind == "name":
            self.names.append(tok.text)
            return ("name", tok.text, tok.pos)
        if tok.kind == "op" and tok.text in ("(", "["):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExprSyntaxError("the expression is nested too deeply", tok.pos)
            if tok.text == "(":
                inner = self.or_()
                self.expect(")", tok)
            else:
                items = []
                if not self.accept("]"):
                    items.append(self.or_())
                    while self.accept(","):
                        items.append(self.or_())
                    self.expect("]", tok)
                inner = ("list", items)
            self.depth -= 1
            return inner
        if tok.kind == "end":
            raise ExprSyntaxError("the expression ends too early", tok.pos)
        raise ExprSyntaxError(f"unexpected {tok.text!r}", tok.pos)

    def expect(self, text: str, opener: _Tok) -> None:
        if not self.accept(text):
            tok = self.peek()
            found = "the end" if tok.kind == "end" else repr(tok.text)
            raise ExprSyntaxError(f"expected {text!r} to close {opener.text!r} at column "
                                  f"{opener.pos + 1}, found {found}", tok.pos)


Lookup = Callable[[str], Any]


@dataclass(frozen=True)
class Expr:
    text: str
    tree: tuple[Any, ...]
    names: tuple[str, ...] = field(default=())

    def evaluate(self, lookup: Lookup) -> Any:
        """The value of the expression; ``lookup(path)`` resolves a name or raises
        ``Unresolved``. Raises EvalError."""
        return _eval(self.tree, lookup)

    def test(self, lookup: Lookup) -> bool:
        return bool(self.evaluate(lookup))


@lru_cache(maxsize=4096)
def compile_expr(text: str) -> Expr:
    """Parse an expression. Raises ExprSyntaxError saying what and where."""
    if not isinstance(text, str):
        raise ExprSyntaxError(f"an expression must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprSyntaxError(f"the expression is longer than {MAX_LENGTH} characters")
    p = _Parser(text)
    tree = p.parse()
    return Expr(text, tree, tuple(dict.fromkeys(p.names)))


def _eval(node: tuple[Any, ...], lookup: Lookup) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "name":
        try:
            return lookup(node[1])
        except Unresolved as exc:
            raise EvalError(str(exc.args[0]) if exc.args else f"unknown name {node[1]!r}",
                            node[2]) from None
    if kind == "list":
        return [_eval(x, lookup) for x in node[1]]
    if kind == "not":
        return not _eval(node[1], lookup)
    if kind == "and":
        left = _eval(node[1], lookup)
        return _eval(node[2], lookup) if left else left
    if kind == "or":
        left = _eval(node[1], lookup)
        return left if left else _eval(node[2], lookup)
    _, op, a, b, pos = node
    return _compare(op, _eval(a, lookup), _eval(b, lookup), pos)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _compare(op: str, a: Any, b: Any, pos: int) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op in ("in", "not in"):
        if isinstance(b, str) and not isinstance(a, str):
            raise EvalError(f"'in' a text needs a text on its left, not {_kind(a)}", pos)
        if not isinstance(b, (str, list, dict)):
            raise EvalError(f"'in' needs a list, text or mapping on its right, not {_kind(b)}",
                            pos)
        found = a in b
        return found if op == "in" else not found
    if not ((_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise EvalError(f"cannot order {_kind(a)} and {_kind(b)} with {op!r}", pos)
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    return {bool: "a boolean", str: "a text", list: "a list", dict: "a mapping"}.get(
        type(x), "a number" if _number(x) else type(x).__name__)


# -- resolving names --------------------------------------------------------------------

JOB_FIELDS = ("outputs", "state", "exit_code", "attempt", "iteration")


def split_job_path(path: str, jobs: Any) -> tuple[str, list[str]] | None:
    """``fetch.sh.outputs.n`` -> ("fetch.sh", ["outputs", "n"]) when a job of that name is
    in ``jobs`` (the longest one wins); None when no job prefixes the path."""
    best = None
    i = path.find(".")
    while i != -1:
        if path[:i] in jobs:
            best = i
        i = path.find(".", i + 1)
    if best is None:
        return None
    return path[:best], path[best + 1:].split(".")


def descend(value: Any, parts: list[str], shown: str) -> Any:
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise Unresolved(f"{shown!r} has no {part!r}")
    return value


def resolver(values: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> Lookup:
    """A lookup over bare names (``values``: params, variables, builtins) and jobs
    (name -> {"outputs": {...}, "state": "SUCCEEDED", "exit_code": 0, ...})."""

    def lookup(path: str) -> Any:
        hit = split_job_path(path, jobs)
        if hit is not None:
            job, rest = hit
            if rest[0] == "outputs" and len(rest) > 1 and rest[1] not in jobs[job]["outputs"]:
                raise Unresolved(f"job '{job}' has no output '{rest[1]}'")
            return descend(jobs[job], rest, path)
        head, _, tail = path.partition(".")
        if head not in values:
            raise Unresolved(f"unknown name '{head}'")
        if head == "outputs" and tail and tail.split(".")[0] not in values["outputs"]:
            raise Unresolved(f"the job has no output '{tail.split('.')[0]}'")
        return descend(values[head], tail.split(".") if tail else [], path)

    return lookup
