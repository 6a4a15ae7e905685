"""Per-kind node options (libs/common/options.py): a typo of a known option fails
validation and names the right one; another kind's option and an unused name warn."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobmesh.common import options
from jobmesh.common.loader import SpecError, load_workflow
from jobmesh.executor import lsf, slurm

pytestmark = pytest.mark.unit


def load(tmp_path: Path, text: str):
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return load_workflow(path)


def test_a_typo_of_a_slurm_option_is_an_error_naming_it_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load(tmp_path, "name: t\nworkflow:\n  nodes:\n"
                       "    a: {kind: slurm, exec: 'true', partiton: debug}\n")
    text = str(exc.value)
    assert "wf.yaml:4" in text and "'partiton'" in text and "did you mean 'partition'" in text


@pytest.mark.parametrize("kind,typo,right", [("ssh", "identiy", "identity"),
                                             ("lsf", "queu", "queue"),
                                             ("slurm", "acount", "account"),
                                             ("local", "retires", "retries")])
def test_typos_of_every_kind(tmp_path: Path, kind: str, typo: str, right: str) -> None:
    host = ", host: h" if kind in ("ssh",) else ""
    with pytest.raises(SpecError, match=f"did you mean '{right}'"):
        load(tmp_path, f"name: t\nworkflow:\n  nodes:\n"
                       f"    a: {{kind: {kind}{host}, exec: 'true', {typo}: x}}\n")


def test_another_kinds_option_and_a_free_name_warn_but_load(tmp_path: Path) -> None:
    loaded = load(tmp_path, "name: t\nworkflow:\n  nodes:\n"
                            "    a: {exec: 'true', partition: debug, owner: ann}\n"
                            "    b: {exec: 'true', owner: bob, label: '{name} {owner}'}\n"
                            "    c: {exec: 'true', extra: {anything: 1}, status: ready}\n")
    said = {(w.node, w.field): w.message for w in loaded.warnings}
    assert "kind slurm" in said[("a", "partition")] and "does nothing" in said[("a", "partition")]
    assert "kept for labels" in said[("a", "owner")]
    assert ("b", "owner") not in said  # the label uses it
    assert not [k for k in said if k[0] == "c"]  # extra: and cloudmesh-cc's keys are quiet
    assert loaded.workflow.jobs["b"].extras["owner"] == "bob"


def test_options_in_defaults_are_not_blamed_on_local_nodes(tmp_path: Path) -> None:
    loaded = load(tmp_path, "name: t\ndefaults: {partition: debug}\nworkflow:\n  nodes:\n"
                            "    a: {exec: 'true'}\n    b: {kind: slurm, exec: 'true'}\n")
    assert loaded.warnings == []


def test_the_executors_tables_stay_within_the_listed_options() -> None:
    assert set(slurm.OPTIONS) <= options.BY_KIND["slurm"]
    assert set(lsf.OPTIONS) <= options.BY_KIND["lsf"]


def test_every_kind_has_its_options() -> None:
    from jobmesh.common.spec import KINDS
    assert set(options.BY_KIND) == set(KINDS)


@pytest.mark.parametrize("field,value,words", [
    ("time", "'2 hours'", "time '2 hours' is not a Slurm time limit"),
    ("mem", "lots", "mem 'lots' is not a Slurm memory size"),
    ("array", "many", "must be true, false or the most"),
    ("squeue_interval", "soon", "number of seconds"),
    ("escalate", "{gpu: 2}", "'gpu' cannot be escalated")])
def test_a_bad_option_value_fails_validation_naming_file_node_field(
        tmp_path: Path, field: str, value: str, words: str) -> None:
    with pytest.raises(SpecError) as exc:
        load(tmp_path, "name: t\nworkflow:\n  nodes:\n    fit:\n      kind: slurm\n"
                       f"      exec: 'true'\n      {field}: {value}\n")
    text = str(exc.value)
    assert "wf.yaml:7" in text and "node 'fit'" in text and f"field '{field}'" in text, text
    assert words in text, text


def test_good_slurm_values_and_placeholders_pass(tmp_path: Path) -> None:
    for time, mem in [("30", "500M"), ("'2:00:00'", "4G"), ("1-00:00", "4000"),
                      ("UNLIMITED", "1.5GB"), ("'{t}'", "'{m}'")]:
        wf = load(tmp_path, "name: t\nvariables: {t: 10, m: 1G}\nworkflow:\n  nodes:\n"
                            f"    fit: {{kind: slurm, exec: 'true', time: {time}, "
                            f"mem: {mem}}}\n")
        assert "fit" in wf.workflow.jobs
    assert options.check_values("lsf", {"time": "2 hours", "mem": "lots"}) == []


def test_a_bad_value_from_defaults_names_the_node(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load(tmp_path, "name: t\ndefaults: {kind: slurm, time: soon}\nworkflow:\n  nodes:\n"
                       "    a: {exec: 'true'}\n")
    assert "node 'a'" in str(exc.value) and "field 'time'" in str(exc.value)
