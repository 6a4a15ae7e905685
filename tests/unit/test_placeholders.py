"""Placeholders jobmesh substitutes in commands, and the shell syntax it leaves alone."""

from __future__ import annotations

import pytest
from jobmesh.common.placeholders import MissingOutput, as_text, parent_refs, substitute

pytestmark = pytest.mark.unit

OUT = {"a": {"n": 3, "s": "txt", "l": [1, 2], "d": {"k": "v"}, "f": 1.5, "b": True},
       "fetch.sh": {"path": "/data/x.csv"}}


def test_parent_outputs_are_substituted() -> None:
    text = ("echo {parents.a.outputs.n} {parents.a.outputs.s} {parents.a.outputs.l} "
            "{parents.a.outputs.d} {parents.a.outputs.f} {parents.a.outputs.b}")
    assert substitute(text, OUT) == 'echo 3 txt [1,2] {"k":"v"} 1.5 true'


def test_parent_name_with_dots() -> None:
    assert substitute("cat {parents.fetch.sh.outputs.path}", OUT) == "cat /data/x.csv"


def test_known_variables_are_substituted() -> None:
    assert substitute("run {x} --n {n}", {}, {"x": "X", "n": 5}) == "run X --n 5"


@pytest.mark.parametrize("text", [
    "echo ${HOME}",
    "echo {a,b}",
    "find . -exec rm {} \\;",
    "awk '{print $1}'",
    "echo {unknown}",
    "echo ${x}",
    "echo ${parents.a.outputs.n}",
    "echo {parents.a.output.n}",
    "echo {x y}",
    "echo {1x}",
])
def test_shell_syntax_is_left_alone(text: str) -> None:
    assert substitute(text, OUT, {"x": "X", "HOME": "nope"}) == text


def test_only_the_inner_braces_of_a_known_variable_are_replaced() -> None:
    assert substitute("echo {{x}}", OUT, {"x": "X"}) == "echo {X}"


def test_without_variables_plain_braces_stay() -> None:
    assert substitute("echo {x}", OUT) == "echo {x}"
    assert substitute("echo {x}", OUT, {}) == "echo {x}"


def test_missing_output_key() -> None:
    with pytest.raises(MissingOutput) as err:
        substitute("echo {parents.a.outputs.zz}", OUT)
    assert (err.value.job, err.value.key) == ("a", "zz")
    assert "a.outputs.zz" in str(err.value)
    assert isinstance(err.value, KeyError)


def test_missing_parent() -> None:
    with pytest.raises(MissingOutput) as err:
        substitute("echo {parents.q.outputs.n}", OUT)
    assert (err.value.job, err.value.key) == ("q", "n")


def test_substituted_values_are_not_substituted_again() -> None:
    # a value that looks like a parent reference is never looked up again
    out2 = {"a": {"t": "{parents.a.outputs.zz}"}}
    assert substitute("{parents.a.outputs.t}", out2) == "{parents.a.outputs.zz}"


def test_parent_refs() -> None:
    refs = parent_refs("{parents.a.outputs.n} ${HOME} {parents.b.c.outputs.k} {x}")
    assert refs == [("a", "n"), ("b.c", "k")]
    assert parent_refs("echo hi") == []


def test_as_text() -> None:
    assert as_text("s") == "s"
    assert as_text(3) == "3"
    assert as_text({"a": [1, 2]}) == '{"a":[1,2]}'
    assert as_text(None) == "null"
