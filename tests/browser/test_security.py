"""Other sites' pages against a running `jobmesh up`, in Chromium (issue 14, D1).

A page the user opens while jobmesh runs tries what needs no CORS preflight: a
`fetch(..., {mode: 'no-cors'})` multipart upload and `text/plain` POSTs to run a workflow.
The user has opened the GUI before (the browser holds its cookie), and the attacker's page
is on the same site (127.0.0.1, another port), where even a SameSite=Strict cookie goes
along. Nothing may be created or run."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import Stack
from tests.conftest import wait_until

pytestmark = pytest.mark.browser

ATTACK = """<!doctype html><html><body><script>
const target = new URLSearchParams(location.search).get('target');
async function attack() {
  const yaml = "workflow:\\n  nodes:\\n    pwn: {exec: 'touch /tmp/jobmesh-pwned-by-page'}\\n";
  const form = new FormData();
  form.append('file', new Blob([yaml]), 'pwned.yaml');
  form.append('replace', 'true');
  const tries = [
    fetch(`${target}/api/workflows`, {method: 'POST', mode: 'no-cors', body: form,
                                      credentials: 'include'}),
    fetch(`${target}/api/workflows/victim/run`, {method: 'POST', mode: 'no-cors',
      body: '{}', headers: {'Content-Type': 'text/plain'}, credentials: 'include'}),
    fetch(`${target}/api/workflows/pwned/run`, {method: 'POST', mode: 'no-cors',
      body: '{}', headers: {'Content-Type': 'text/plain'}, credentials: 'include'}),
    fetch(`${target}/api/workflows/victim`, {method: 'DELETE', mode: 'no-cors',
                                              credentials: 'include'}),
  ];
  await Promise.allSettled(tries);
  document.title = 'sent';
}
attack();
</script></body></html>"""


class AttackSite:
    """The attacker's web server: another origin on the same machine."""

    def __init__(self, host: str = "127.0.0.1"):
        page = ATTACK.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[AttackSite]:
    s = AttackSite()
    yield s
    s.close()


def test_a_page_from_another_origin_cannot_upload_or_run(page: Any, stack: Stack,
                                                         site: AttackSite) -> None:
    stack.upload("victim", "workflow:\n  nodes:\n    a: {exec: 'true'}\n")
    # The page fixture opened the URL `jobmesh up` prints: the browser holds the cookie,
    # the address bar lost the token.
    assert "token=" not in page.url
    cookies = {c["name"]: c for c in page.context.cookies(stack.url)}
    port = stack.url.rsplit(":", 1)[1]
    cookie = cookies[f"jobmesh-token-{port}"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # no script can read it
    for target in (stack.url, stack.url.replace("127.0.0.1", "localhost")):
        page.goto(f"{site.url}/?target={target}")
        wait_until(lambda: page.title() == "sent", 30, "the attack's requests to be sent")
    names = [w["name"] for w in stack.api.get("/api/workflows").json()]
    assert "pwned" not in names and "victim" in names
    victim = stack.api.get("/api/workflows/victim").json()
    assert victim["status"] is None, "the attacker's page ran the workflow"
    # The GUI itself still works with its cookie.
    page.goto(stack.url + "/#/wf/victim")
    page.click("#act-run")
    wait_until(lambda: (stack.api.get("/api/workflows/victim").json()["status"] or {})
               .get("state") == "SUCCEEDED", 60, "the GUI's own run to succeed")
    assert stack.api.delete("/api/workflows/victim").status_code == 200
