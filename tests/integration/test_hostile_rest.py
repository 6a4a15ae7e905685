"""Hostile workflows and variables over REST (issue 14: D3, D5, D6, D14, uploaded
scripts): a 4xx with the loader's message, never a 500, and values stay data."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import cli

pytestmark = pytest.mark.integration


def _up(home: Path) -> str:
    res = cli(home, "up", "--port", "0", timeout=90)
    assert res.returncode == 0, res.stderr + res.stdout
    return json.loads((home / "service.json").read_text())["url"]


def auth(home: Path) -> dict[str, str]:
    """`jobmesh up` keeps the API's token in the home's gateway.token."""
    return {"Authorization": f"Bearer {(home / 'gateway.token').read_text().strip()}"}


@pytest.fixture
def api(home: Path) -> Iterator[httpx.Client]:
    url = _up(home)
    with httpx.Client(base_url=url, timeout=30, headers=auth(home)) as client:
        yield client
    assert cli(home, "down", timeout=90).returncode == 0


BOMB = ("name: bomb\nvariables:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"  {c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
                  for p, c in zip("abcdefg", "bcdefgh"))
        + "workflow: {nodes: {a: {}}}\n")


@pytest.mark.parametrize("text,words", [
    ("x: !!int a\nworkflow: {nodes: {a: {}}}\n", "!!int cannot be read"),
    ('x: !!float ""\nworkflow: {nodes: {a: {}}}\n', "!!float cannot be read"),
    ("workflow: {nodes: {a: {x: !!timestamp a}}}\n", "!!timestamp"),
    ('workflow: {nodes: {a: {script: "a\\0b.sh"}}}\n', "control character"),
    ("workflow: {nodes: {a: {script: " + "s" * 300 + ".sh}}}\n", "too long"),
    ("workflow: {nodes: {a: {script: ../../etc/passwd.sh}}}\n", "inside the workflow's folder"),
    ("workflow: {nodes: {a: {exec: 'true', pool: 'bad.pool>'}}}\n", "invalid pool name"),
    ('workflow: {nodes: {a: {exec: "true", kind: slurm, partition: "x\\ny"}}}\n',
     "control character"),
    ("workflow: {nodes: {a: {exec: 'true', kind: ssh, host: h, port: x}}}\n",
     "'port' must be a whole number"),
    (BOMB, "aliases (*name) make this file hold more than"),
])
def test_hostile_uploads_get_a_4xx_with_the_loaders_message(api: httpx.Client, text: str,
                                                            words: str) -> None:
    began = time.monotonic()
    r = api.post("/api/workflows", files={"file": ("wf.yaml", text.encode())},
                 data={"name": "hostile"})
    assert 400 <= r.status_code < 500, r.text
    assert words in r.json()["detail"]
    assert time.monotonic() - began < 10  # the bomb is refused before it is expanded


def test_rest_variables_cannot_break_a_directive_or_the_bus(api: httpx.Client,
                                                              home: Path) -> None:
    wf = ("variables: {v: hi, p: debug}\nworkflow:\n  nodes:\n"
          "    a: {exec: 'echo got {v} > $JOBMESH_WORKFLOW_DIR/got.txt'}\n"
          "    s: {exec: 'true', kind: slurm, host: h, partition: '{p}'}\n")
    up = api.post("/api/workflows", files={"file": ("vars.yaml", wf.encode())})
    assert up.status_code == 201, up.text
    r = api.post("/api/workflows/vars/run", json={"variables": {"p": "x\ntouch PWN"}})
    assert r.status_code == 422 and "control character" in r.json()["detail"]
    deep: list = []
    for _ in range(100):
        deep = [deep]
    r = api.post("/api/workflows/vars/run", json={"variables": {"v": deep}})
    assert r.status_code == 422 and "nests deeper" in r.json()["detail"]
    assert not list(home.rglob("PWN"))


def test_a_workflow_over_the_message_limit_is_a_413_at_once(api: httpx.Client) -> None:
    """Two jobs carrying 12 MB of random (incompressible) env values are over NATS's
    8 MB max_payload even compressed: the run is refused with 413 and what to change,
    not a 503 after 90 s of retries."""
    import base64
    import os

    import yaml

    env = {f"NOTE{i}": base64.b64encode(os.urandom(750_000)).decode() for i in range(8)}
    text = yaml.safe_dump({"name": "huge", "workflow": {"nodes": {"train": {
        "exec": "true # {seed}", "env": env, "foreach": {"seed": [1, 2]}}},
        "dependencies": []}})
    up = api.post("/api/workflows", files={"file": ("huge.yaml", text.encode())})
    assert up.status_code == 201, up.text
    began = time.monotonic()
    r = api.post("/api/workflows/huge/run", timeout=120)
    assert r.status_code == 413, r.text
    assert "max_payload" in r.json()["detail"] and "dynamic foreach" in r.json()["detail"]
    assert time.monotonic() - began < 60
    assert api.get("/api/workflows").status_code == 200  # the gateway goes on


def test_a_large_sweep_is_uploaded_and_run_with_allow_large(api: httpx.Client) -> None:
    """More than 10,000 jobs after expansion: refused without allow_large (422 saying so),
    accepted with it; the flag is kept, so the stored workflow shows and runs without
    passing it again."""
    from tests.helpers import wait_until

    text = ("name: wide\nworkflow:\n  nodes:\n"
            "    w: {exec: 'true', foreach: {i: '[1-10001]'}}\n")
    r = api.post("/api/workflows", files={"file": ("wide.yaml", text.encode())})
    assert r.status_code == 422 and "allow-large" in r.json()["detail"], r.text
    r = api.post("/api/workflows", files={"file": ("wide.yaml", text.encode())},
                 data={"allow_large": "true"}, timeout=120)
    assert r.status_code == 201 and len(r.json()["jobs"]) == 10001, r.text[:300]
    assert api.get("/api/workflows/wide").status_code == 200
    r = api.post("/api/workflows/wide/run", params={"parallel": 2}, timeout=120)
    assert r.status_code == 202, r.text
    assert api.post("/api/workflows/wide/cancel", timeout=60).status_code == 202
    wait_until(lambda: api.get("/api/workflows/wide").json()["status"]["state"]
               in ("CANCELED", "FAILED", "SUCCEEDED"), 120, "the canceled run to end")
