"""The remote executor's one-round-trip submission, on this machine's real shell (the
transport the batch executors use for a local sbatch): claim, tar-stream staging and
launch in one command; a claimed run directory is attached to, never launched again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from jobmesh.common.messages import JobFailed, JobReady, JobStarted, JobSucceeded
from jobmesh.common.spec import JobSpec
from jobmesh.executor import remotewatch
from jobmesh.executor.remote import RemoteExecutor
from jobmesh.executor.transport import LocalTransport, Result

pytestmark = pytest.mark.integration


class CountingTransport(LocalTransport):
    name = "counted"

    def __init__(self) -> None:
        self.commands: list[str] = []

    async def run(self, command: str, stdin: bytes | None = None, timeout: float = 60
                  ) -> Result:
        self.commands.append(command)
        return await super().run(command, stdin, timeout)


def ready(tmp: Path, **spec: Any) -> JobReady:
    (tmp / "wf").mkdir(exist_ok=True)
    return JobReady(workflow="w", run="20261123T000000-abcd", job="j", attempt=1, pool="ssh",
                    spec=JobSpec(name="j", kind="ssh", workdir=str(tmp / "runs"), **spec),
                    base_dir=str(tmp / "wf"), time=time.time())


async def until_event(events: list[Any], kind: type, deadline: float) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for ev in events:
            if isinstance(ev, kind):
                return ev
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind.__name__} within {deadline}s: {events}")


def test_one_command_claims_stages_and_launches(tmp_path: Path) -> None:
    (tmp_path / "wf" / "data").mkdir(parents=True)
    (tmp_path / "wf" / "data" / "in.txt").write_text("staged\n")
    job = ready(tmp_path, exec="cat data/in.txt; ls -l wrapper.sh | cut -c1-4",
                inputs=["data/in.txt"])
    t, events = CountingTransport(), []

    async def go() -> None:
        async def emit(ev: Any) -> None:
            events.append(ev)

        ex = RemoteExecutor("ssh", emit, lambda spec: t, poll_min=0.05, poll_max=0.2)
        await ex.submit(job)
        launches = len(t.commands)
        await until_event(events, JobSucceeded, 30)
        assert launches == 3  # the home, the helpers' folder, then one command for the job
        await ex.submit(job)  # redelivered: the claim is taken, it attaches
        await ex.close()

    asyncio.run(go())
    rdir = tmp_path / "runs" / "w" / job.run / "j" / "1"
    assert (rdir / "job.log").read_text() == "staged\n-rwx\n"
    assert sum(isinstance(e, JobStarted) for e in events) >= 1
    assert not any(isinstance(e, JobFailed) for e in events)


def test_a_claimed_directory_without_a_job_fails_instead_of_waiting_forever(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remotewatch, "NEVER_STARTED", 1.0)
    job = ready(tmp_path, exec=f"touch {tmp_path}/ran")
    rdir = tmp_path / "runs" / "w" / job.run / "j" / "1"
    rdir.mkdir(parents=True)  # an executor died between the claim and the launch
    events: list[Any] = []

    async def go() -> None:
        async def emit(ev: Any) -> None:
            events.append(ev)

        ex = RemoteExecutor("ssh", emit, lambda spec: CountingTransport(), poll_min=0.05,
                            poll_max=0.2)
        await ex.submit(job)
        failed = await until_event(events, JobFailed, 30)
        assert "never started" in failed.reason
        await ex.close()

    asyncio.run(go())
    assert not (tmp_path / "ran").exists()  # never launched a second time


def test_concurrent_submissions_to_one_host_share_a_few_scripts(tmp_path: Path) -> None:
    t, events = CountingTransport(), []
    jobs = [ready(tmp_path, exec=f"echo job {i}").model_copy(update={"job": f"j{i}"})
            for i in range(30)]

    async def go() -> None:
        async def emit(ev: Any) -> None:
            events.append(ev)

        ex = RemoteExecutor("ssh", emit, lambda spec: t, poll_min=0.05, poll_max=0.2)
        await ex.submit(jobs[0])  # the host's setup: its home and the helpers
        before = len(t.commands)
        await asyncio.gather(*(ex.submit(j) for j in jobs[1:]))
        launches = len(t.commands) - before
        assert launches <= 3, t.commands[before:]
        end = time.monotonic() + 30
        while sum(isinstance(e, JobSucceeded) for e in events) < 30:
            assert time.monotonic() < end, events
            await asyncio.sleep(0.05)
        await ex.close()

    asyncio.run(go())
    for i in range(30):
        log = tmp_path / "runs" / "w" / jobs[i].run / f"j{i}" / "1" / "job.log"
        assert log.read_text() == f"job {i}\n"


def test_a_launch_script_stages_any_bytes_and_frames_each_job(tmp_path: Path) -> None:
    import subprocess

    from jobmesh.executor import launch

    text = b"it's \\n $HOME `x` %s \"q\"\nline2\n"
    binary = bytes(range(256))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")

    async def build() -> bytes:
        def item(rdir: Path, lines: str) -> launch.Launch:
            return launch.Launch(str(rdir), {f"{rdir}/a.txt": text,
                                             f"{rdir}/sub/b.bin": binary},
                                 {f"{rdir}/a.txt": 0o750}, lines, "echo native-42")
        taken = tmp_path / "taken"
        taken.mkdir()
        return launch.script([item(tmp_path / "r1", "cat a.txt"), item(taken, "true"),
                              item(blocked / "r3", "true"), item(tmp_path / "r4", "exit 5")])

    script = asyncio.run(build())
    out = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, timeout=30)
    first, taken, nodir, failed = launch.parse(out.stdout, 4)
    assert isinstance(first, Result) and first.status == 0
    assert first.stdout == text + b"native-42\n"
    assert (tmp_path / "r1" / "sub" / "b.bin").read_bytes() == binary
    assert oct((tmp_path / "r1" / "a.txt").stat().st_mode & 0o777) == "0o750"
    assert taken is None and not (tmp_path / "taken" / "a.txt").exists()
    assert isinstance(nodir, PermissionError)
    assert isinstance(failed, Result) and failed.status == 5
    assert launch.parse(out.stdout[: out.stdout.index(b"@@L 2")], 4)[3].__class__ is \
        ConnectionError  # a script cut short says so for the jobs it did not reach
