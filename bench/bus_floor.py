"""The bus floor: the least a workflow run on jobmesh's fixed architecture must do.

Usage: .venv/bin/python bench/bus_floor.py WORKFLOW.yaml [--parallel N]

One Python process that starts a private nats-server with a token (before its imports,
as ``jobmesh run`` does), imports the libraries the architecture prescribes (asyncio,
nats-py, pydantic, PyYAML, rich), reads the workflow's ``after:`` lists, and runs its
DAG over JetStream with nothing else: per job one durable ``ready`` message on a
work-queue stream, taken by a pull consumer and acked, ``bash -c true``, and one
durable ``done`` event on an event stream that a push consumer delivers back. No job
models, no run directories, status files, snapshots, monitor, graph, cache or retries.

``bench/run.py`` times this whole command beside the plain floor and ``jobmesh run``,
so the table shows what the architecture alone costs over the floor: whatever
``jobmesh run`` adds on top of this row is jobmesh's own work.
"""
from __future__ import annotations

import secrets
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path


def _server(store: Path, token: str) -> tuple[subprocess.Popen[bytes], Path]:
    exe = Path(sysconfig.get_path("scripts")) / "nats-server"
    conf = store / "nats.conf"
    conf.write_text(f'authorization {{\n  token: "{token}"\n}}\n')
    proc = subprocess.Popen([str(exe) if exe.exists() else "nats-server", "-c", str(conf),
                             "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(store / "js"),
                             "--ports_file_dir", str(store)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, store / f"{Path(proc.args[0]).name}_{proc.pid}.ports"


def main() -> int:
    args = sys.argv[1:]
    parallel = 2
    if "--parallel" in args:
        i = args.index("--parallel")
        parallel = int(args[i + 1])
        del args[i:i + 2]
    store = Path(tempfile.mkdtemp(prefix="busfloor-"))
    token = secrets.token_hex(16)
    server, ports = _server(store, token)
    try:
        # the libraries of the fixed architecture (rich: the live view and final table)
        import asyncio
        import json

        import nats
        import pydantic  # noqa: F401 - imported, as every service must
        import rich.console
        import rich.table  # noqa: F401
        import yaml
        from nats.js.api import RetentionPolicy

        spec = yaml.safe_load(Path(args[0]).read_text())
        nodes = spec["workflow"]["nodes"]
        parents = {j: list(n.get("after", [])) for j, n in nodes.items()}
        deadline = time.monotonic() + 15
        while not (ports.exists() and ports.stat().st_size):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("nats-server did not start")
            time.sleep(0.002)
        url = json.loads(ports.read_text())["nats"][0]
        return asyncio.run(_run(nats, RetentionPolicy, url, token, parents, parallel,
                                rich.console.Console(stderr=True)))
    finally:  # as jobmesh does: ask the server to stop, do not wait for it
        server.terminate()
        print(f"server pid {server.pid}", file=sys.stderr)
        subprocess.Popen(["sh", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; '
                          'rm -rf "$2"', "sh", str(server.pid), str(store)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)


async def _run(nats, retention, url, token, parents, parallel, console) -> int:
    import asyncio
    import subprocess

    nc = await nats.connect(url, token=token)
    js = nc.jetstream()
    await asyncio.gather(
        js.add_stream(name="JOBS", subjects=["floor.jobs"], retention=retention.WORK_QUEUE),
        js.add_stream(name="EVENTS", subjects=["floor.events"]))
    children: dict[str, list[str]] = {j: [] for j in parents}
    missing = {j: len(ps) for j, ps in parents.items()}
    for j, ps in parents.items():
        for p in ps:
            children[p].append(j)
    done, finished = 0, asyncio.Event()

    async def on_event(msg) -> None:  # the scheduler: release the children of a done job
        nonlocal done
        done += 1
        for c in children[msg.data.decode()]:
            missing[c] -= 1
            if not missing[c]:
                await js.publish("floor.jobs", c.encode())
        if done == len(parents):
            finished.set()

    await js.subscribe("floor.events", cb=on_event, manual_ack=False)
    pull = await js.pull_subscribe("floor.jobs", durable="local")

    async def worker() -> None:  # the executor: take a job, run it, report its end
        while not finished.is_set():
            try:
                msgs = await pull.fetch(1, timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            for m in msgs:
                await m.ack()
                # (a thread per running job, as the floor runner has: cheaper here
                # than asyncio's subprocess transports)
                if await asyncio.to_thread(subprocess.call, ["bash", "-c", "true"]):
                    raise RuntimeError(f"job {m.data.decode()} failed")
                await js.publish("floor.events", m.data)

    for j, n in missing.items():
        if not n:
            await js.publish("floor.jobs", j.encode())
    workers = [asyncio.create_task(worker()) for _ in range(parallel)]
    await finished.wait()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await nc.close()
    console.print(f"{done} jobs done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
