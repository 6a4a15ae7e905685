"""Placeholders jobmesh substitutes in commands, and the shell syntax it leaves alone."""

from __future__ import annotations

import subprocess

import pytest

from jobmesh.common.placeholders import (
    MissingOutput,
    PlaceholderError,
    as_text,
    parent_refs,
    substitute,
)

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


# -- values are data, never shell code (issue 14, D3) --------------------------------

EVIL = ["$(touch PWN)", "`touch PWN`", "; touch PWN", "a' ; touch PWN ; '", 'a" ; touch PWN ; "',
        "x\ntouch PWN", "\\`touch PWN\\`", "$'\\x41'; touch PWN", "EOF\ntouch PWN", "'\"'\"'",
        "", " spaced  out ", "-n"]
COMMANDS = [
    "printf '%s|' {x}",
    "printf '%s|' '{x}'",
    'printf "%s|" "{x}"',
    "printf '%s|' pre'{x}'post",
    'printf "%s|" "a $(printf %s {x}) b"',
    "printf '%s|' $'{x}'",
    "printf '%s|' `printf %s {x}`",
    'printf "%s|" "`printf %s \'{x}\'`"',
    "printf '%s|' {x} # and {x}",
    "printf '%s|' {x}{x}",
]


def run_sh(cmd: str, cwd: str) -> str:
    res = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                         timeout=10)
    return res.stdout


@pytest.mark.parametrize("value", EVIL)
def test_a_value_in_exec_never_runs_as_shell_code(tmp_path, value: str) -> None:
    for template in COMMANDS:
        for via in ("var", "parent"):
            text = template if via == "var" else template.replace("{x}", "{parents.p.outputs.x}")
            cmd = substitute(text, {"p": {"x": value}}, {"x": value}, shell=True)
            out = run_sh(cmd, str(tmp_path))
            assert not (tmp_path / "PWN").exists(), (template, value, cmd)
            if "`" in template or "$(" in template:
                continue  # word splitting of the inner command's output is the author's
            # the value arrives intact, as one word, wherever the author put it
            want = value
            if "pre'" in template:
                want = "pre" + value + "post"
            if "{x}{x}" in template:
                want = value + value
            assert out.split("|")[0] == want, (template, value, cmd, out)


def test_the_attack_from_the_issue(tmp_path) -> None:
    value = "$(touch PWN)"
    cmd = substitute("echo got {parents.p.outputs.v}", {"p": {"v": value}}, shell=True)
    assert run_sh(cmd, str(tmp_path)) == "got $(touch PWN)\n"
    assert not (tmp_path / "PWN").exists()


def test_raw_inserts_the_text_as_written(tmp_path) -> None:
    cmd = substitute("{x:raw} && echo {parents.p.outputs.v:raw}", {"p": {"v": "$((1+2))"}},
                     {"x": "touch MADE"}, shell=True)
    assert cmd == "touch MADE && echo $((1+2))"
    assert run_sh(cmd, str(tmp_path)) == "3\n" and (tmp_path / "MADE").exists()
    assert parent_refs("{parents.p.outputs.v:raw}") == [("p", "v")]


def test_here_documents(tmp_path) -> None:
    cmd = substitute("cat <<EOF\nA {x} B\nEOF", {}, {"x": "$(touch PWN) `touch PWN` \\"},
                     shell=True)
    assert run_sh(cmd, str(tmp_path)) == "A $(touch PWN) `touch PWN` \\ B\n"
    assert not (tmp_path / "PWN").exists()
    cmd = substitute("cat <<'EOF'\n{x}\nEOF", {}, {"x": "$(x)"}, shell=True)
    assert run_sh(cmd, str(tmp_path)) == "$(x)\n"
    for value in ("EOF", "a\nEOF\ntouch PWN"):
        with pytest.raises(PlaceholderError, match="here-document"):
            substitute("cat <<EOF\n{x}\nEOF\n", {}, {"x": value}, shell=True)


def test_outside_exec_values_stay_as_they_are() -> None:
    # args and env are quoted by the executor, labels and directives are not shell
    assert substitute("--n={x}", {}, {"x": "a b$(c)"}) == "--n=a b$(c)"
    assert substitute("--n={x:raw}", {}, {"x": "a b"}) == "--n=a b"


def test_shell_syntax_is_still_left_alone_in_exec() -> None:
    text = "awk '{print $1}' ${HOME} {a,b} {unknown} find . -exec rm {} \\;"
    assert substitute(text, {}, {"x": "X"}, shell=True) == text


def test_a_filled_value_is_never_read_as_a_placeholder_again(tmp_path) -> None:
    # a foreach value is baked in at expansion; variables are filled in later
    for template in ("echo {item}", "echo '{item}'", 'echo "{item}"', "echo $'{item}'"):
        baked = substitute(template, {}, {"item": "{v:raw} {v}"}, shell=True)
        cmd = substitute(baked, {}, {"v": "'; touch PWN; '"}, shell=True)
        assert run_sh(cmd, str(tmp_path)) == "{v:raw} {v}\n", (template, cmd)
    assert not (tmp_path / "PWN").exists()
