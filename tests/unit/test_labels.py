"""cloudmesh-cc label templates."""

from __future__ import annotations

from datetime import datetime

import pytest

from jobmesh.common.labels import NA, format_duration, render_label

pytestmark = pytest.mark.unit

T = 1_700_000_000.0  # a fixed epoch; times are rendered in local time, like cloudmesh-cc
TIMES = {"created": T, "t0": T + 60, "t1": T + 3 * 3600 + 60, "tstart": T + 120,
         "tend": T + 120 + 75, "modified": T + 130}
ATTRS = {"name": "fetch-data", "progress": 50.0, "status": "running", "host": "localhost",
         "owner": "gregor", "parents": {"a": {"outputs": {"n": 3}}}}


def local(t: float, fmt: str = "%m/%d/%Y, %H:%M:%S") -> str:
    return datetime.fromtimestamp(t).strftime(fmt)


def render(template: str, times: dict | None = None, now: float = T + 7200,
           attrs: dict | None = None, **kw) -> str:
    return render_label(template, ATTRS if attrs is None else attrs,
                        TIMES if times is None else times, now, **kw)


def test_attributes() -> None:
    assert render("{name}\\nprogress={progress} {status} {host} {owner}") == \
        "fetch-data\\nprogress=50 running localhost gregor"


def test_dotted_attribute_path() -> None:
    assert render("n={parents.a.outputs.n}") == "n=3"
    assert render("{parents.a.outputs.zz}") == NA


@pytest.mark.parametrize("var, t", [
    ("created", T), ("t0", T + 60), ("t1", T + 3 * 3600 + 60), ("tstart", T + 120),
    ("tend", T + 195), ("modified", T + 130), ("now", T + 7200),
])
def test_time_variables(var: str, t: float) -> None:
    assert render(f"{{{var}.%Y-%m-%d %H--%M--%S}}") == local(t, "%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("var, t", [("now", T + 7200), ("t0", T + 60), ("created", T)])
def test_empty_fmt_and_no_fmt_use_the_default_time_format(var: str, t: float) -> None:
    assert render(f"{{{var}.}}") == local(t) == render(f"{{{var}}}")
    assert "," in local(t)  # "%m/%d/%Y, %H:%M:%S"


def test_elapsed_durations() -> None:
    # dt0: since the workflow started (now - t0); dt1: t1 - t0; dt: tend - tstart
    assert render("{dt0.}") == "01:59:00"
    assert render("{dt1.}") == "03:00:00"
    assert render("{dt.}") == "00:01:15"
    assert render("{dt.%M--%S}") == "01:15"
    assert render("{dt}") == "00:01:15"


def test_job_duration_grows_while_it_runs() -> None:
    times = {**TIMES, "tend": None}
    assert render("{dt.}", times=times, now=T + 120 + 3600 + 5) == "01:00:05"


def test_durations_longer_than_a_day_keep_the_days() -> None:
    times = {**TIMES, "t1": T + 60 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5}
    assert render("{dt1.}", times=times) == "2d 03:04:05"
    assert render("{dt1.%d days %H--%M}", times=times) == "2 days 03:04"
    assert render("{dt0.}", now=T + 60 + 86400) == "1d 00:00:00"


def test_format_duration() -> None:
    assert format_duration(0) == "00:00:00"
    assert format_duration(59.9) == "00:00:59"
    assert format_duration(-5) == "00:00:00"
    assert format_duration(90061) == "1d 01:01:01"
    assert format_duration(90061, "%d/%H") == "1/01"


def test_double_dash_renders_as_colon() -> None:
    assert render("a--b {name} c--d") == "a:b fetch-data c:d"
    assert render("{t0.%H--%M}") == local(T + 60, "%H:%M")


def test_dashes_in_a_value_are_not_touched() -> None:
    assert render("{name}", attrs={"name": "x--y"}) == "x--y"


@pytest.mark.parametrize("template", [
    "{t1.}", "{tend.%H}", "{tstart.}", "{modified.}", "{created.}", "{t0.}",
    "{dt0.}", "{dt1.}", "{dt.}",
])
def test_missing_times_render_na(template: str) -> None:
    empty = dict.fromkeys(TIMES)
    assert render(template, times=empty) == NA


def test_dt1_is_na_until_the_workflow_ends() -> None:
    assert render("{dt1.}", times={**TIMES, "t1": None}) == "N/A"


def test_missing_and_empty_attributes_render_na() -> None:
    attrs = {"name": "a", "host": None, "msg": ""}
    assert render("{host} {msg} {nothing} {name.upper}", attrs=attrs) == "N/A N/A N/A N/A"


def test_zero_is_a_value_not_missing() -> None:
    assert render("{progress}%", attrs={"progress": 0.0}) == "0%"
    assert render("{progress}%", attrs={"progress": 12.5}) == "12.5%"


def test_os_and_cm_variables() -> None:
    env = {"HOME": "/home/gregor", "A": "1"}
    out = render("{os.HOME} {os.NOPE} {cm.x} {cm.nope}", user_vars={"x": 7}, environ=env)
    assert out == "/home/gregor N/A 7 N/A"


def test_os_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBMESH_LABEL_TEST", "hello")
    assert render("{os.JOBMESH_LABEL_TEST}") == "hello"


def test_text_without_fields_is_unchanged() -> None:
    assert render("plain text") == "plain text"


# -- str.format, as cloudmesh-cc renders labels ------------------------------------------


@pytest.mark.parametrize("template, expected", [
    ("[{progress:>4}]", "[  50]"),
    ("[{progress:3d}]", "[ 50]"),
    ("[{progress:<5}]", "[50   ]"),
    ("{progress:05.1f}%", "050.0%"),
    ("{name!r}", "'fetch-data'"),
    ("{{literal}} {name}", "{literal} fetch-data"),
    ("{{{name}}}", "{fetch-data}"),
    ("{parent[0]} and {parent[1]}", "a and b"),
    ("{parent}", "['a', 'b']"),
    ("{parent[5]}", NA),
    ("{outputs[n]} {outputs[missing]}", "3 N/A"),
])
def test_format_specs_conversions_indexes_and_braces(template: str, expected: str) -> None:
    attrs = {**ATTRS, "progress": 50, "parent": ["a", "b"], "outputs": {"n": 3}}
    assert render(template, attrs=attrs) == expected
    if NA not in expected:  # exactly what cloudmesh-cc's template.format(**node) gives
        assert template.format(**attrs) == expected


def test_a_spec_that_does_not_fit_the_value_never_raises() -> None:
    assert render("{name:3d}") == "fetch-data"      # str.format raises here
    assert render("[{nothing:>5}]") == "[  N/A]"    # N/A takes a str spec
    assert render("{nothing:3d}") == NA


def test_unbalanced_braces_render_what_is_whole() -> None:
    assert render("{name} {oops") == "fetch-data {oops"
    assert render("a } {name}") == "a } fetch-data"


def test_progress_stored_as_a_float_formats_as_the_integer_cloudmesh_cc_keeps() -> None:
    assert render("[{progress:3d}] {parent[-1]}", attrs={"progress": 50.0, "parent": ["a", "b"]}
                  ) == "[ 50] b"


def test_nested_field_in_a_spec() -> None:
    assert render("[{progress:>{width}}]", attrs={**ATTRS, "width": 6}) == "[    50]"


def test_strftime_pattern_may_hold_a_real_colon() -> None:
    assert render("{t0.%H:%M}") == local(T + 60, "%H:%M") == render("{t0.%H--%M}")


def test_keys_with_dots_and_no_attribute_access() -> None:
    attrs = {"parents": {"train.py": {"outputs": {"acc": 0.9}}}, "name": "x"}
    assert render("{parents.train.py.outputs.acc}", attrs=attrs) == "0.9"
    assert render("{name.__class__}", attrs=attrs) == NA  # never an object's attribute


def test_created_and_modified_without_a_dot_are_the_nodes_own_strings() -> None:
    attrs = {**ATTRS, "created": "2022-10-03 12:00:01.5", "modified": "yesterday"}
    assert render("{created} / {modified}", attrs=attrs) == "2022-10-03 12:00:01.5 / yesterday"
    # with a dot they are times, as before
    assert render("{created.%Y}", attrs=attrs) == local(T, "%Y")
