"""A synchronous client for the jobmesh REST API (``jobmesh up``), on httpx.

Every method mirrors one endpoint and returns its JSON as plain dicts and lists (the
shapes are those of the API docs at ``<url>/docs``). Anything that goes wrong talking to
the service raises ``ApiError`` whose message is the gateway's readable ``detail``.
"""

from __future__ import annotations

import builtins
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import pack, sse
from .base import TERMINAL, ApiError, BaseClient, _job, _wf
from .sse import Event

__all__ = ["ApiError", "Client", "Event"]


class Client(BaseClient):
    """``Client()`` talks to ``$JOBMESH_URL``, else to the stack ``jobmesh up`` started
    for ``$JOBMESH_HOME`` (default ~/.jobmesh); ``token`` defaults to ``$JOBMESH_TOKEN``,
    else, when the URL is that stack's, to its ``$JOBMESH_HOME/gateway.token`` (never sent
    to another URL); ``timeout`` (seconds) bounds each request. Raises ApiError(0, ...)
    when there is no URL to use. Use it as a context manager, or call ``close()``."""

    # -- workflows -----------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every workflow: name, state ("NEW" before its first run), run, jobs, counts."""
        return self._call("GET", "/api/workflows").json()  # type: ignore[no-any-return]

    def add(self, path: str | os.PathLike[str], name: str | None = None,
            replace: bool = False, allow_large: bool = False) -> dict[str, Any]:
        """Upload a workflow from a YAML file (with the scripts and inputs it uses), an
        archive (.tar, .tar.gz, .tgz, .zip) or a directory (packed as .tar.gz). Returns
        {"name", "jobs", "edges"}. ApiError 409: the name exists (use replace=True); 422:
        the workflow is invalid (``errors`` names file, line and field); 400: unsafe or
        unreadable archive. FileNotFoundError/ValueError: nothing to upload at ``path``.
        ``allow_large``: more than 10,000 jobs after foreach expansion (kept for its runs)."""
        filename, data = pack.prepare(Path(path))
        return self.upload(filename, data, name, replace, allow_large)

    def upload(self, filename: str, data: bytes, name: str | None = None,
               replace: bool = False, allow_large: bool = False) -> dict[str, Any]:
        """Upload bytes as the file ``filename`` (its ending says YAML or which archive);
        returns and raises as ``add``."""
        form = {"replace": "true" if replace else "false",
                "allow_large": "true" if allow_large else "false",
                **({"name": name} if name else {})}
        files = {"file": (filename, data, "application/octet-stream")}
        return self._call("POST", "/api/workflows", data=form, files=files).json()  # type: ignore[no-any-return]

    def show(self, name: str, format: str = "json") -> Any:
        """json: a dict {"name", "uploaded", "spec", "status"} (status None before the first
        run; else the shape of ``jobmesh status -o json``); yaml, csv: the text."""
        resp = self._call("GET", f"/api/workflows/{_wf(name)}", params={"format": format})
        return resp.json() if format == "json" else resp.text

    def run(self, name: str, parallel: int | None = None,
            variables: dict[str, Any] | None = None, allow_large: bool = False,
            restart: bool = False) -> dict[str, Any]:
        """Start a new run; returns {"name", "run", "state"}. ``variables`` override the
        workflow's declared variables; ``restart`` reruns every job instead of reusing
        the ones whose cache key matches an earlier success. 409: already running; 422:
        an unknown variable."""
        params = {"parallel": parallel} if parallel else {}
        body = {"variables": variables or {}, "allow_large": allow_large,
                "restart": restart} if variables or allow_large or restart else None
        out = self._call("POST", f"/api/workflows/{_wf(name)}/run", params=params,
                         json=body).json()
        self._marks[name] = (out["run"], {})
        return out  # type: ignore[no-any-return]

    def runs(self, name: str) -> builtins.list[dict[str, Any]]:
        """The runs the history keeps, newest first: each {"run", "state", "created",
        "started", "ended", "duration", "jobs", "counts", "current", "replaced_by"}.
        404: no such workflow."""
        return self._call("GET", f"/api/workflows/{_wf(name)}/runs").json()["runs"]  # type: ignore[no-any-return]

    def past_run(self, name: str, run: str) -> dict[str, Any]:
        """One run of the history: {"run", "state", "current", "status", "queued"}, where
        status has the shape of ``jobmesh status -o json``. 404: not kept (older than
        the retention, or never ran); 422: not a run id."""
        return self._call("GET", f"/api/workflows/{_wf(name)}/runs/"  # type: ignore[no-any-return]
                          f"{quote(run, safe='')}").json()

    def cancel(self, name: str) -> dict[str, Any]:
        """Ask the running workflow to cancel. 409: it is not running."""
        return self._call("POST", f"/api/workflows/{_wf(name)}/cancel").json()  # type: ignore[no-any-return]

    def retry(self, name: str) -> dict[str, Any]:
        """Rerun the failed, canceled and skipped jobs of the last run (same run id).
        409: never ran, still running, or succeeded."""
        status = self.show(name).get("status") or {}
        again = {j: s["attempt"] + 1 for j, s in status.get("jobs", {}).items()
                 if s["state"] != "SUCCEEDED"}
        out = self._call("POST", f"/api/workflows/{_wf(name)}/retry").json()
        self._marks[name] = (out["run"], again)
        return out  # type: ignore[no-any-return]

    def delete(self, name: str, force: bool = False) -> dict[str, Any]:
        """Delete a workflow, its state and its upload. 409: running (force=True cancels)."""
        self._marks.pop(name, None)
        return self._call("DELETE", f"/api/workflows/{_wf(name)}",  # type: ignore[no-any-return]
                          params={"force": str(force).lower()}).json()

    def graph(self, name: str) -> bytes:
        """The graph as SVG bytes, coloured by state. 404: it has not run yet."""
        return self._call("GET", f"/api/workflows/{_wf(name)}/graph.svg").content

    def events(self, name: str, last_event_id: int | None = None) -> Iterator[Event]:
        """Parsed SSE events of a workflow, forever (break out when done): 'job' events
        (data: a job event, id: its stream sequence) from the start of the log, or after
        ``last_event_id``, and a 'workflow' event (the state of every job) per change."""
        since = f"?since={int(last_event_id)}" if last_event_id else ""
        for ev in self._stream(f"/api/workflows/{_wf(name)}/events{since}"):
            if ev is not sse.KEEPALIVE and not (
                    ev.id is not None and last_event_id is not None and ev.id <= last_event_id):
                yield ev

    def watch(self, name: str, run: str | None = None,
              stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """The events of one run, ending with its final 'workflow' event (or when the
        server closes the stream). The run is ``run``, else the one this client last
        started or retried, else the current one. After ``retry`` the final event is the
        first that shows every retried job ended in its new attempt, so an old ending is
        never mistaken for the new one."""
        mark_run, attempts = self._marks.get(name, (None, {}))
        target = run or mark_run
        attempts = attempts if target == mark_run else {}
        last_id, pause = 0, 0.1
        while True:
            for ev in self._stream(f"/api/workflows/{_wf(name)}/events", stop=stop):
                if ev is sse.KEEPALIVE:
                    yield ev
                    continue
                data = ev.data if isinstance(ev.data, dict) else {}
                if ev.event == "job":
                    if ev.id is not None and ev.id <= last_id:
                        continue  # seen before a reconnect
                    last_id = ev.id if ev.id is not None else last_id
                    if target is not None and data.get("run") == target:
                        yield ev  # earlier runs' events are replayed first: not ours
                    continue
                if ev.event != "workflow":
                    continue
                target = target or data.get("run")
                ended = data.get("state") in TERMINAL
                if data.get("run") == target:
                    yield ev
                    jobs = data.get("jobs", {})
                    if ended and all(jobs.get(j, {}).get("attempt", 0) >= a
                                     for j, a in attempts.items()):
                        return
                    pause = 0.1 if not ended else pause
                if ended:
                    # An ending that is not ours (an older run, or before the retry took
                    # effect): the gateway drops the snapshots that follow one while it
                    # flushes job events, so ask afresh for the current state.
                    break
            else:
                return  # the server closed the stream, or stop() said so
            if stop is not None and stop():
                return
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def wait(self, name: str, timeout: float = 3600, run: str | None = None) -> dict[str, Any]:
        """Follow the events until the run (see ``watch``) ends; returns its final status
        (the shape of ``jobmesh status -o json``: name, run, state, counts, jobs, ...).
        Raises TimeoutError at the deadline (the run goes on), ApiError if the service
        fails or closes the stream first (409: the workflow has never run)."""
        deadline = time.monotonic() + timeout
        if run is None and name not in self._marks:
            grace = time.monotonic() + min(2.0, timeout)  # a run just started elsewhere
            while self.show(name)["status"] is None:
                if time.monotonic() > grace:
                    raise ApiError(409, f"workflow '{name}' has not run yet; start it with "
                                   "run()")
                time.sleep(0.1)
        box: queue.Queue[tuple[str, Any]] = queue.Queue()
        done = threading.Event()

        def pump() -> None:
            try:
                for ev in self.watch(name, run, stop=done.is_set):
                    if ev.event == "workflow":
                        box.put(("event", ev.data))
                box.put(("end", None))
            except Exception as exc:  # noqa: BLE001  (handed to the caller's thread)
                box.put(("error", exc))

        threading.Thread(target=pump, name=f"jobmesh-wait-{name}", daemon=True).start()
        last: dict[str, Any] | None = None
        try:
            while True:
                try:
                    kind, item = box.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    state = last["state"] if last else "unknown"
                    raise TimeoutError(f"workflow '{name}' did not finish within {timeout}s "
                                       f"(state {state}); it keeps running") from None
                if kind == "error":
                    raise item
                if kind == "end":
                    break
                last = item
        finally:
            done.set()
        if last is None or last.get("state") not in TERMINAL:
            raise ApiError(0, f"the event stream of '{name}' ended before the run did")
        status = self.show(name).get("status")
        if status and status.get("run") == last["run"] and status.get("state") in TERMINAL:
            return status  # type: ignore[no-any-return]
        return last

    # -- jobs ----------------------------------------------------------------------------

    def jobs(self, name: str) -> builtins.list[dict[str, Any]]:
        """Every job: {"name", "spec", "parents", "status" (once it ran)}."""
        return self._call("GET", f"/api/workflows/{_wf(name)}/jobs").json()  # type: ignore[no-any-return]

    def job(self, name: str, job: str) -> dict[str, Any]:
        """One job: {"name", "spec", "parents", "status"}. 404: no such job."""
        return self._call("GET", f"/api/workflows/{_wf(name)}/jobs/{_job(job)}").json()  # type: ignore[no-any-return]

    def put_job(self, name: str, job: str, attributes: dict[str, Any],
                after: builtins.list[str] | str | None = None) -> dict[str, Any]:
        """Add or replace a job of an uploaded workflow (attributes as in the YAML);
        ``after`` (a list or "a,b") replaces its parents. 409: running or not uploaded
        here; 422: the change makes the workflow invalid (nothing is changed then)."""
        if isinstance(after, str):
            after = [a.strip() for a in after.split(",") if a.strip()]
        body = {"attributes": attributes, "after": after}
        return self._call("PUT", f"/api/workflows/{_wf(name)}/jobs/{_job(job)}",  # type: ignore[no-any-return]
                          json=body).json()

    def delete_job(self, name: str, job: str) -> dict[str, Any]:
        """Remove a job and its edges (while not running). 404: no such job."""
        return self._call("DELETE", f"/api/workflows/{_wf(name)}/jobs/{_job(job)}").json()  # type: ignore[no-any-return]

    def cancel_job(self, name: str, job: str) -> dict[str, Any]:
        """Cancel one job of the running workflow. 409: it has ended already."""
        return self._call("POST", f"/api/workflows/{_wf(name)}/jobs/{_job(job)}/cancel").json()  # type: ignore[no-any-return]

    def log(self, name: str, job: str, offset: int = 0, tail: int | None = None
            ) -> dict[str, Any]:
        """Up to 1 MB of the log from ``offset`` (or its last ``tail`` lines): {"data",
        "offset", "next_offset", "size", "done"}. 404: the job has not started."""
        params: dict[str, Any] = {"offset": offset}
        if tail is not None:
            params["tail"] = tail
        return self._call("GET", f"/api/workflows/{_wf(name)}/jobs/{_job(job)}/log",  # type: ignore[no-any-return]
                          params=params).json()

    def follow_log(self, name: str, job: str, offset: int = 0) -> Iterator[str]:
        """The log's text from ``offset`` as it grows, in chunks; ends when the job ends.
        404: the job has not started."""
        path = f"/api/workflows/{_wf(name)}/jobs/{_job(job)}/log/stream"
        for ev in self._stream(path, params={"offset": offset}):
            if ev.event == "log":
                yield ev.data["data"]
            elif ev.event == "end":
                return
