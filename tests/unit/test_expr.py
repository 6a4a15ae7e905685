"""The expression language of when: and repeat.until: parse, evaluate, refuse."""

from __future__ import annotations

from typing import Any

import pytest

from jobmesh.common.expr import (
    EvalError,
    ExprSyntaxError,
    Unresolved,
    compile_expr,
    resolver,
    split_job_path,
)

pytestmark = pytest.mark.unit

JOBS = {
    "prepare": {"outputs": {"count": 3, "name": "mnist", "files": ["a.csv", "b.csv"],
                            "cfg": {"lr": 0.1}}, "state": "SUCCEEDED", "exit_code": 0},
    "fetch.sh": {"outputs": {"n": 7}, "state": "SUCCEEDED", "exit_code": 0},
    "risky-step": {"outputs": {}, "state": "FAILED", "exit_code": 2},
}
VALUES = {"env": "prod", "epochs": 30, "gpus": ["a100", "v100"], "debug": False,
          "cfg": {"mode": "fast"}}


def ev(text: str, values: dict[str, Any] | None = None) -> Any:
    return compile_expr(text).evaluate(resolver(values if values is not None else VALUES,
                                                JOBS))


@pytest.mark.parametrize("text,expected", [
    ("prepare.outputs.count > 0 and env == 'prod'", True),
    ("prepare.outputs.count > 3", False),
    ("prepare.outputs.count >= 3", True),
    ("prepare.outputs.count != 3 or env == \"dev\"", False),
    ("not debug", True),
    ("not (env == 'prod')", False),
    ("'a100' in gpus", True),
    ("'k80' not in gpus", True),
    ("'mni' in prepare.outputs.name", True),
    ("'a.csv' in prepare.outputs.files", True),
    ("prepare.outputs.files.1 == 'b.csv'", True),
    ("prepare.outputs.cfg.lr < 0.5", True),
    ("cfg.mode == 'fast'", True),
    ("epochs in [10, 30, 50]", True),
    ("fetch.sh.outputs.n == 7", True),          # job names with dots
    ("risky-step.state == 'FAILED'", True),     # and with dashes
    ("risky-step.exit_code == 2", True),
    ("epochs > -1", True),
    ("1.5e1 == 15.0", True),
    ("1 == 1.0", True),
    ("'1' == 1", False),
    ("null == null and true and not false", True),
    ("True and not None", True),
    ("'it\\'s' == \"it's\"", True),
    ("(env == 'prod' or env == 'dev') and (epochs < 50)", True),
])
def test_evaluates(text: str, expected: Any) -> None:
    assert ev(text) is expected


def test_and_or_short_circuit_so_guards_work() -> None:
    # the right side would fail: risky-step has no output 'n'
    assert ev("risky-step.state == 'SUCCEEDED' and risky-step.outputs.n > 0") is False
    assert ev("risky-step.state == 'FAILED' or risky-step.outputs.n > 0") is True


def test_precedence_not_binds_looser_than_comparison_and_and_before_or() -> None:
    assert ev("not epochs == 10") is True
    assert ev("true or false and false") is True
    assert ev("(true or false) and false") is False


@pytest.mark.parametrize("text,message", [
    ("", "empty"),
    ("   ", "empty"),
    ("a ==", "ends too early"),
    ("(a == 1", "expected ')'"),
    ("[1, 2", "expected ']'"),
    ("a == 1)", "unexpected ')'"),
    ("a = 1", "unexpected character '='"),
    ("a == 1 == 1", "cannot be chained"),
    ("1 < a < 3", "cannot be chained"),
    ("a and", "ends too early"),
    ("a b", "unexpected 'b'"),
    ("a - 1", "unexpected character '-'"),
    ("__import__('os')", "unexpected '('"),
    ("a.__class__ + 1", "unexpected character '+'"),
    ("'unterminated", "unexpected character"),
    ("x ~= 1", "unexpected character '~'"),
])
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ExprSyntaxError) as info:
        compile_expr(text)
    assert message in str(info.value)


def test_syntax_error_position() -> None:
    with pytest.raises(ExprSyntaxError) as info:
        compile_expr("a == 1 and b ! 2")
    assert info.value.pos == 13 and "column 14" in str(info.value)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ExprSyntaxError, match="nested too deeply"):
        compile_expr("(" * 500 + "1" + ")" * 500)
    with pytest.raises(ExprSyntaxError, match="nested too deeply"):
        compile_expr("not " * 500 + "true")
    with pytest.raises(ExprSyntaxError, match="longer than"):
        compile_expr("a or " * 2000 + "b")


@pytest.mark.parametrize("text,message", [
    ("prepare.outputs.missing > 0", "job 'prepare' has no output 'missing'"),
    ("nosuch == 1", "unknown name 'nosuch'"),
    ("prepare.outputs.name > 3", "cannot order a text and a number"),
    ("env < 3", "cannot order a text and a number"),
    ("gpus > 1", "cannot order a list"),
    ("1 in epochs", "'in' needs a list, text or mapping"),
    ("1 in env", "'in' a text needs a text"),
    ("prepare.outputs.cfg.nope == 1", "has no 'nope'"),
])
def test_evaluation_errors(text: str, message: str) -> None:
    with pytest.raises(EvalError, match=message):
        ev(text)


def test_names_are_collected_in_order_once() -> None:
    e = compile_expr("a.outputs.n > 0 and env == 'x' or a.outputs.n < 9 and b.state")
    assert e.names == ("a.outputs.n", "env", "b.state")


def test_split_job_path_prefers_the_longest_job_name() -> None:
    jobs = {"fetch": 1, "fetch.sh": 2}
    assert split_job_path("fetch.sh.outputs.n", jobs) == ("fetch.sh", ["outputs", "n"])
    assert split_job_path("fetch.state", jobs) == ("fetch", ["state"])
    assert split_job_path("other.state", jobs) is None
    assert split_job_path("fetch", jobs) is None


def test_lookup_callback_errors_become_eval_errors() -> None:
    def lookup(path: str) -> Any:
        raise Unresolved(f"no {path}")

    with pytest.raises(EvalError, match="no x"):
        compile_expr("x == 1").evaluate(lookup)


def test_no_python_eval_anywhere() -> None:
    import inspect

    import jobmesh.common.expr as mod

    source = inspect.getsource(mod)
    assert "eval(" not in source.replace("_eval(", "").replace("evaluate(", "")
    assert "exec(" not in source
