"""The GUI's copy of the job-event rule (static/jobstate.js, applyEvent) against the same
fixture of event sequences as libs/common/jobfold.py: the table a user sees in the browser
and the state the monitor stores must not drift apart. Runs the module in Node.js."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "job_events.json"
MODULE = ROOT / "services" / "gateway" / "static" / "jobstate.js"
CASES = json.loads(FIXTURE.read_text())["cases"]
FIELDS = ("state", "attempt", "progress", "msg", "exit_code", "reason", "native_id")
SCRIPT = """
import { applyEvent } from %(module)s;
import { readFileSync } from 'node:fs';
const cases = JSON.parse(readFileSync(%(fixture)s, 'utf8')).cases;
const out = cases.map((c) => {
  const j = { state: 'PENDING', attempt: 1, progress: 0, msg: null, exit_code: null,
              reason: null, native_id: null, started: null, ended: null };
  for (const ev of c.events) applyEvent(j, ev);
  return j;
});
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def gui_results() -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "Node.js runs the GUI's module here: apt-get install nodejs (make setup does)"
    script = SCRIPT % {"module": json.dumps(MODULE.as_uri()),
                       "fixture": json.dumps(str(FIXTURE))}
    res = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_gui_applies_events_as_the_monitor(gui_results: list[dict[str, Any]], i: int) -> None:
    expect = {k: v for k, v in CASES[i]["expect"].items() if k in FIELDS}
    assert {k: gui_results[i][k] for k in expect} == expect
