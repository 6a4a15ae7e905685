"""Progress lines jobs print into their logs."""

from __future__ import annotations

import pytest

from jobmesh.common.progress import LogScan, OutputLine, ProgressLine, parse_line, scan

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("line, expected", [
    ("# cloudmesh status=running progress=50 pid=12345",
     ProgressLine(progress=50.0, status="running", pid=12345)),
    ("  # cloudmesh status=done progress=100 pid=1  ",
     ProgressLine(progress=100.0, status="done", pid=1)),
    ('# jobmesh progress=42.5 msg="epoch 3 of 10"',
     ProgressLine(progress=42.5, msg="epoch 3 of 10")),
    ("# jobmesh status=failed", ProgressLine(status="failed")),
    ("# jobmesh msg=hello", ProgressLine(msg="hello")),
    ("# jobmesh progress=150", ProgressLine(progress=100.0)),  # clamped
    ("# jobmesh progress=-3", ProgressLine(progress=0.0)),
    ("# jobmesh progress=5 pid=abc", ProgressLine(progress=5.0)),
])
def test_progress_lines(line: str, expected: ProgressLine) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line, key, value", [
    ("# jobmesh output n=42", "n", 42),
    ("# jobmesh output ratio=0.5", "ratio", 0.5),
    ('# jobmesh output data={"a": [1, 2]}', "data", {"a": [1, 2]}),
    ("# jobmesh output items=[1,2,3]", "items", [1, 2, 3]),
    ("# jobmesh output flag=true", "flag", True),
    ("# jobmesh output none=null", "none", None),
    ('# jobmesh output q="quoted"', "q", "quoted"),
    ("# jobmesh output s=hello world", "s", "hello world"),
    ("# jobmesh output path=/tmp/x.csv", "path", "/tmp/x.csv"),
    ("# jobmesh output e=", "e", ""),
    ("# jobmesh output eq=a=b", "eq", "a=b"),
    ("# jobmesh output my-key_1=7", "my-key_1", 7),
])
def test_output_lines_json_or_text(line: str, key: str, value: object) -> None:
    assert parse_line(line) == OutputLine(key, value)


def test_output_value_types_are_kept() -> None:
    assert isinstance(parse_line("# jobmesh output n=42").value, int)
    assert isinstance(parse_line("# jobmesh output v=042x").value, str)
    assert parse_line('# jobmesh output s="42"').value == "42"  # a JSON string stays text


@pytest.mark.parametrize("line", [
    "hello world",
    "progress=50",
    "echo cloudmesh progress=50",
    "#cloudmesh progress=5",
    "# cloudmesh",
    "# cloudmesh hello",
    "# jobmesh foo=bar",
    "# jobmesh progress=abc",
    "# jobmesh output bad key=1",
    "# jobmesh output novalue",
    "# jobmesh output =1",
    "# jobmesh output k!=1",
    "# other status=done progress=100",
])
def test_ordinary_lines_are_ignored(line: str) -> None:
    assert parse_line(line) is None


def test_scan_last_line_wins() -> None:
    log = """\
starting
# cloudmesh status=running progress=10 pid=1
noise # not a progress line
# jobmesh progress=60 msg="half way"
# jobmesh output a=1
# jobmesh output a=2
# jobmesh output b=x
# cloudmesh status=done progress=100 pid=1
bye
"""
    result = scan(log)
    assert result.progress == 100.0
    assert result.status == "done"
    assert result.msg == "half way"  # a line without msg keeps the last msg
    assert result.outputs == {"a": 2, "b": "x"}
    assert result.lines == 9


def test_scan_of_plain_output_reports_nothing() -> None:
    result = scan("a\nb\nprogress=5\n")
    assert (result.progress, result.status, result.msg, result.outputs) == (None,) * 4
    assert result.lines == 3


def test_scan_continues_into_an_existing_result() -> None:
    first = scan("# jobmesh progress=5\n# jobmesh output x=1\n")
    same = scan("# jobmesh progress=7\n# jobmesh output y=[2]\n", first)
    assert same is first
    assert (first.progress, first.outputs, first.lines) == (7.0, {"x": 1, "y": [2]}, 4)


def test_progress_can_go_down_because_the_last_line_wins() -> None:
    assert scan("# jobmesh progress=80\n# jobmesh progress=20\n").progress == 20.0


def test_fresh_scan_defaults() -> None:
    assert LogScan().progress is None and LogScan().outputs is None


@pytest.mark.parametrize("line, progress, status", [
    ("0: # cloudmesh status=running progress=40 pid=7", 40.0, "running"),  # srun --label
    ("12: # cloudmesh status=done progress=100 pid=7", 100.0, "done"),
    ("[INFO] # cloudmesh status=running progress=30 pid=1", 30.0, "running"),
    ("2026-01-01 10:00:00 INFO # cloudmesh progress=35", 35.0, None),
    ("# # cloudmesh status=running progress=20 pid=5", 20.0, "running"),  # banner()
    ("x=1 # cloudmesh status=running progress=50 pid=1 time='2022-08-05 16:29:40.2'",
     50.0, "running"),
])
def test_progress_marker_anywhere_in_the_line(line: str, progress: float,
                                              status: str | None) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, ProgressLine)
    assert (parsed.progress, parsed.status) == (progress, status)


def test_marker_inside_a_line_is_found_by_scan_and_output_too() -> None:
    log = ("1: # cloudmesh status=running progress=10 pid=1\n"
           "[job] # jobmesh output n=3\n"
           "# # cloudmesh status=done progress=100 pid=1\n")
    result = scan(log)
    assert (result.progress, result.status, result.outputs) == (100.0, "done", {"n": 3})


@pytest.mark.parametrize("line", ["# cloudmeshx progress=5", "a#cloudmesh progress=5",
                                  "text # cloudmesh", "# cloudmesh-cc is great"])
def test_a_marker_needs_its_blank_and_a_field(line: str) -> None:
    assert parse_line(line) is None
