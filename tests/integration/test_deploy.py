"""Deployment: the compose file, services run alone with NATS authentication and TLS, and
the per-service requirement lists the container images install.

No Docker daemon is needed: the compose file is validated offline with ``docker-compose
config``; the images' dependency split is checked by running each service (for real,
against a real nats-server) with only the distributions its requirements file names
importable.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import JOBMESH, ROOT, run_async, wait_until, write_workflow

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"


# -- the compose file ----------------------------------------------------------------------

def compose(*args: str) -> subprocess.CompletedProcess[str]:
    """docker-compose (v1, validates offline) or else the docker compose plugin."""
    if shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    elif subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cmd = ["docker", "compose"]
    else:
        pytest.fail("neither docker-compose nor the docker compose plugin is installed "
                    "(make setup installs docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBMESH_", "NATS_"))}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=env,
                          cwd=ROOT)


@pytest.mark.parametrize("files", [["compose.yml"], ["compose.yml", "compose.cluster.yml"],
                                   ["compose.yml", "compose.ssh.yml"],
                                   ["compose.yml", "compose.cluster.yml", "compose.ssh.yml"]],
                         ids=["single", "cluster", "ssh", "cluster+ssh"])
def test_compose_config_is_valid(files: list[str]) -> None:
    args = [a for f in files for a in ("-f", str(DEPLOY / f))]
    res = compose(*args, "config", "-q")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("conf", ["nats.conf", "nats-cluster.conf"])
def test_nats_configs_are_valid(conf: str) -> None:
    from jobmesh.cli.natsserver import find_binary

    res = subprocess.run([find_binary(), "-t", "-c", str(DEPLOY / conf)], capture_output=True,
                         text=True, timeout=30, env={**os.environ, "JOBMESH_NATS_TOKEN": "t",
                                                     "NATS_SERVER_NAME": "nats-1"})
    assert res.returncode == 0, res.stderr + res.stdout
    # nats-entrypoint.sh adds the authorization block, with the token quoted
    assert not [line for line in (DEPLOY / conf).read_text().splitlines()
                if line.lstrip().startswith("authorization")]


def entrypoint(folder: Path, token: str | None) -> subprocess.Popen[str]:
    """deploy/nats-entrypoint.sh (as the compose NATS containers run it) with the real
    nats-server on PATH, on a config of deploy/nats.conf's shape on a free loopback port."""
    from jobmesh.cli.natsserver import find_binary

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jobmesh.conf").write_text(f"listen: 127.0.0.1:-1\nmax_payload: 8MB\n"
                                          f"jetstream {{\n  store_dir: {folder / 'js'}\n}}\n")
    env = {"PATH": f"{Path(find_binary()).parent}:{os.environ['PATH']}",
           "NATS_CONF": str(folder / "jobmesh.conf"), "NATS_RUN_CONF": str(folder / "run.conf")}
    if token is not None:
        env["JOBMESH_NATS_TOKEN"] = token
    return subprocess.Popen(["sh", str(DEPLOY / "nats-entrypoint.sh"), "--ports_file_dir",
                             str(folder)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# Tokens NATS would parse as something else if the config said `token: $VAR`: a size, a
# boolean, a negative number, a date. Each made the compose NATS server exit at start.
@pytest.mark.parametrize("token", ["12k", "true", "-x12Ab_", "2024-01-02", "3-4a"])
def test_nats_entrypoint_takes_any_url_safe_token(tmp_path: Path, token: str) -> None:
    proc = entrypoint(tmp_path, token)
    try:
        ports = tmp_path / f"nats-server_{proc.pid}.ports"
        wait_until(lambda: ports.exists() and ports.stat().st_size or proc.poll() is not None,
                   15, "nats-server to start")
        assert proc.poll() is None, proc.communicate()[1]
        url = json.loads(ports.read_text())["nats"][0]
        assert oct((tmp_path / "run.conf").stat().st_mode & 0o777) == "0o600"

        async def attempt(tok: str) -> str:
            import nats

            try:
                nc = await nats.connect(url, token=tok, allow_reconnect=False,
                                        connect_timeout=5)
            except Exception as exc:  # noqa: BLE001 - the refusal is what we look at
                return str(exc)
            await nc.close()
            return "ok"

        assert run_async(attempt(token)) == "ok"
        assert "Authorization Violation" in run_async(attempt(token + "x"))
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


@pytest.mark.parametrize("token", [None, "", 'a"b', "a b", "x$y", "back\\slash"])
def test_nats_entrypoint_refuses_a_token_it_cannot_quote(tmp_path: Path,
                                                         token: str | None) -> None:
    proc = entrypoint(tmp_path, token)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 2
    assert "JOBMESH_NATS_TOKEN" in err and "openssl rand -hex 24" in err, err
    assert not (tmp_path / "run.conf").exists()


def test_compose_runs_what_the_issue_asks() -> None:
    res = compose("-f", str(DEPLOY / "compose.yml"), "config")
    assert res.returncode == 0, res.stderr
    doc = yaml.safe_load(res.stdout)
    svc = doc["services"]
    assert set(svc) >= {"nats", "scheduler", "monitor", "executor-local", "gateway"}
    nats = svc["nats"]
    assert "healthcheck" in nats and any(str(v).endswith(":/data") or "/data" in str(v)
                                         for v in nats["volumes"])
    assert nats["command"] == ["sh", "/etc/nats/entrypoint.sh"]
    assert {str(v).rsplit(":", 2)[0].rsplit("/", 1)[-1] for v in nats["volumes"]} >= {
        "nats-entrypoint.sh", "nats.conf"}
    assert "jetstream" in (DEPLOY / "nats.conf").read_text()
    for name in ("scheduler", "monitor", "gateway"):
        assert svc[name]["depends_on"]["nats"]["condition"] == "service_healthy", name
    # each service is its own image (build target) of the one Dockerfile
    for name, target in [("scheduler", "scheduler"), ("monitor", "monitor"),
                         ("executor-local", "executor"), ("gateway", "gateway")]:
        assert svc[name]["build"]["target"] == target
    # --scale executor-local=N needs no fixed name and no host port
    ex = svc["executor-local"]
    assert "container_name" not in ex and "ports" not in ex
    # the GUI on port 8000, with an API token passed through
    gw = svc["gateway"]
    assert any(str(p.get("published")) == "8000" and int(p["target"]) == 8000
               for p in gw["ports"])
    assert "JOBMESH_TOKEN" in gw["environment"]
    # every jobmesh service reads deploy/config.yaml and gets the NATS token
    for name in ("scheduler", "monitor", "executor-local", "gateway"):
        assert any("config.yaml:/etc/jobmesh/config.yaml" in str(v)
                   for v in svc[name]["volumes"]), name
        assert "JOBMESH_NATS_TOKEN" in svc[name]["environment"], name
    # the config file is one the services accept
    from jobmesh.common.settings import Settings

    conf = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    Settings(**{k: v for k, v in conf.items() if k != "workdir"}, workdir=Path(conf["workdir"]))


def test_dockerfile_targets_and_requirements() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for target in ("scheduler", "monitor", "executor", "gateway"):
        assert f" AS {target}\n" in text, target
        assert (DEPLOY / "requirements" / f"{target}.txt").exists()
    assert "--no-deps" in text
    for name in ("scheduler", "monitor", "executor"):
        closure = requirement_names(DEPLOY / "requirements" / f"{name}.txt")
        assert not closure & {"fastapi", "uvicorn", "starlette"}, name


# -- services alone, against NATS with authentication --------------------------------------

class Nats:
    """nats-server with a config of our own (auth, TLS), on a free loopback port."""

    def __init__(self, folder: Path, conf: str = "", args: tuple[str, ...] = ()):
        from jobmesh.cli.natsserver import find_binary

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "nats.conf").write_text(conf)
        exe = find_binary()
        self.proc = subprocess.Popen(
            [exe, "-c", str(folder / "nats.conf"), "-a", "127.0.0.1", "-p", "-1", "-js",
             "-sd", str(folder / "js"), "--ports_file_dir", str(folder),
             "-l", str(folder / "nats.log"), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ports = folder / f"{Path(exe).name}_{self.proc.pid}.ports"
        wait_until(lambda: ports.exists() and ports.stat().st_size, 10, "nats-server to start")
        url = json.loads(ports.read_text())["nats"][0]
        self.port = int(url.rsplit(":", 1)[1])

    def url(self, scheme: str = "nats") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def service(module: str, *args: str, env: dict[str, str] | None = None,
            home: Path | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, **(env or {})}
    if home is not None:
        full["JOBMESH_HOME"] = str(home)
    return subprocess.Popen([sys.executable, "-m", f"jobmesh.{module}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.terminate()
    out, err = proc.communicate(timeout=30)
    return out, err


def heartbeat(url: str, timeout: float = 30, **auth: Any) -> dict[str, Any]:
    """Wait for an executor's heartbeat: proof it connected and is serving its pool."""
    import nats

    async def go() -> dict[str, Any]:
        nc = await nats.connect(url, connect_timeout=3, allow_reconnect=False, **auth)
        try:
            sub = await nc.subscribe("jobmesh.heartbeat.>")
            msg = await sub.next_msg(timeout=timeout)
            return json.loads(msg.data)
        finally:
            await nc.close()

    return run_async(go())


@pytest.mark.parametrize("how", ["flag", "env", "config", "cli"])
def test_executor_with_a_wrong_token_fails_at_once(tmp_path: Path, how: str) -> None:
    server = Nats(tmp_path / "nats", args=("--auth", "the-right-token"))
    try:
        url = server.url()
        env: dict[str, str] = {}
        if how == "flag":
            cmd = [sys.executable, "-m", "jobmesh.executor", "--nats", url, "--token", "wrong"]
        elif how == "env":
            cmd = [sys.executable, "-m", "jobmesh.executor", "--nats", url]
            env["JOBMESH_NATS_TOKEN"] = "wrong"
        elif how == "config":
            conf = tmp_path / "config.yaml"
            conf.write_text(f"nats_url: {url}\nnats_token: wrong\n")
            cmd = [sys.executable, "-m", "jobmesh.executor", "--config", str(conf)]
        else:
            cmd = [JOBMESH, "executor", "--nats", url, "--token", "wrong", "--pool", "remote",
                   "--kind", "local"]
        t0 = time.monotonic()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                             env={**os.environ, **env, "JOBMESH_HOME": str(tmp_path / "home")})
        took = time.monotonic() - t0
        assert res.returncode != 0
        assert took < 20, f"took {took:.1f}s"  # a retry loop would run into the 30 s timeout
        assert "refused the credentials" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    finally:
        server.stop()


def test_unreachable_nats_fails_at_once_and_names_every_url(tmp_path: Path) -> None:
    from tests.integration.test_cluster import free_ports

    a, b = free_ports(2)
    urls = f"nats://127.0.0.1:{a},nats://127.0.0.1:{b}"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "jobmesh.scheduler", "--nats", urls],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "JOBMESH_HOME": str(tmp_path)})
    assert res.returncode == 1 and time.monotonic() - t0 < 20  # not retried until the timeout
    assert f"cannot connect to NATS at nats://127.0.0.1:{a}, nats://127.0.0.1:{b}" in res.stderr
    assert "Traceback" not in res.stderr


def test_misconfigured_nats_fails_at_once(tmp_path: Path) -> None:
    """R3 on a single server, and a server without JetStream: one clear line each."""
    single = Nats(tmp_path / "single")
    try:
        res = subprocess.run([sys.executable, "-m", "jobmesh.scheduler", "--nats",
                              single.url(), "--replicas", "3"], capture_output=True, text=True,
                             timeout=30, env={**os.environ, "JOBMESH_HOME": str(tmp_path)})
        assert res.returncode == 1 and "not supported in non-clustered mode" in res.stderr, \
            res.stderr
        assert "Traceback" not in res.stderr
    finally:
        single.stop()
    from jobmesh.cli.natsserver import find_binary
    from tests.integration.test_cluster import free_ports

    port = free_ports(1)[0]
    plain = subprocess.Popen([find_binary(), "-a", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"nats://127.0.0.1:{port}"
        t0 = time.monotonic()
        while True:
            res = subprocess.run([sys.executable, "-m", "jobmesh.monitor", "--nats", url],
                                 capture_output=True, text=True, timeout=30,
                                 env={**os.environ, "JOBMESH_HOME": str(tmp_path)})
            if "cannot connect" not in res.stderr or time.monotonic() - t0 > 10:
                break  # (the server may take a moment to listen)
        assert res.returncode == 1 and "JetStream is not enabled" in res.stderr, res.stderr
    finally:
        plain.terminate()
        plain.wait(timeout=10)


def test_token_auth_with_flag_env_and_config(tmp_path: Path) -> None:
    server = Nats(tmp_path / "nats", args=("--auth", "s3cret"))
    conf = tmp_path / "config.yaml"
    conf.write_text(f"nats_url: {server.url()}\nnats_token: s3cret\n")
    procs = [
        service("executor", "--nats", server.url(), "--token", "s3cret", "--pool", "p1",
                home=tmp_path / "h1"),
        service("executor", "--nats", server.url(), "--pool", "p2", home=tmp_path / "h2",
                env={"JOBMESH_NATS_TOKEN": "s3cret"}),
        service("executor", "--config", str(conf), "--pool", "p3", home=tmp_path / "h3"),
    ]
    try:
        pools: set[str] = set()

        async def beats() -> None:
            import nats

            nc = await nats.connect(server.url(), token="s3cret")
            sub = await nc.subscribe("jobmesh.heartbeat.>")
            deadline = time.monotonic() + 40
            while pools != {"p1", "p2", "p3"} and time.monotonic() < deadline:
                try:
                    msg = await sub.next_msg(timeout=1)
                except asyncio.TimeoutError:
                    continue
                pools.add(json.loads(msg.data)["pool"])
            await nc.close()

        run_async(beats())
        assert pools == {"p1", "p2", "p3"}, [stop(p)[1] for p in procs]
    finally:
        for p in procs:
            _, err = stop(p)
            assert "Traceback" not in err, err
        server.stop()


def test_user_and_password_auth(tmp_path: Path) -> None:
    server = Nats(tmp_path / "nats", conf=textwrap.dedent("""\
        authorization {
          users = [
            {user: alice, password: "wonder land"}
          ]
        }
        """))
    conf = tmp_path / "config.yaml"
    conf.write_text(f"nats_url: {server.url()}\nnats_user: alice\nnats_password: wonder land\n")
    try:
        # user and password from a config file
        ex = service("executor", "--config", str(conf), "--pool", "userpw", home=tmp_path / "h1")
        try:
            beat = heartbeat(server.url(), user="alice", password="wonder land")
            assert beat["pool"] == "userpw"
        finally:
            stop(ex)
        # ... and from the environment
        ex = service("executor", "--nats", server.url(), "--pool", "userenv",
                     home=tmp_path / "h2", env={"JOBMESH_NATS_USER": "alice",
                                                "JOBMESH_NATS_PASSWORD": "wonder land"})
        try:
            beat = heartbeat(server.url(), user="alice", password="wonder land")
            assert beat["pool"] == "userenv"
        finally:
            stop(ex)
        # a wrong password is refused at once, with no traceback
        res = subprocess.run([sys.executable, "-m", "jobmesh.executor", "--config", str(conf),
                              "--password", "nope"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "JOBMESH_HOME": str(tmp_path / "h3")})
        assert res.returncode == 1 and "refused the credentials" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    finally:
        server.stop()


def test_nkey_auth(tmp_path: Path) -> None:
    nkeys = pytest.importorskip("nkeys", reason="nkey auth needs the nkeys package "
                                "(nats-py's nkeys extra; the images install it)")
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    (tmp_path / "user.nk").write_bytes(seed + b"\n")
    server = Nats(tmp_path / "nats", conf=textwrap.dedent(f"""\
        authorization {{
          users = [
            {{user: watcher, password: w}}
            {{nkey: {public}}}
          ]
        }}
        """))
    try:
        ex = service("executor", "--nats", server.url(), "--nkey", str(tmp_path / "user.nk"),
                     "--pool", "nkey", home=tmp_path / "h1")
        try:
            assert heartbeat(server.url(), user="watcher", password="w")["pool"] == "nkey"
        finally:
            stop(ex)
        res = subprocess.run([sys.executable, "-m", "jobmesh.executor", "--nats", server.url(),
                              "--nkey", str(tmp_path / "missing.nk")], capture_output=True,
                             text=True, timeout=30,
                             env={**os.environ, "JOBMESH_HOME": str(tmp_path / "h2")})
        assert res.returncode == 1 and "does not exist" in res.stderr, res.stderr
    finally:
        server.stop()


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=jobmesh-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (folder / f"{name}.ext").write_text(ext)
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return {n: folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                    "client.key")}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_a_private_ca_and_client_certificates(tmp_path: Path) -> None:
    c = _certificates(tmp_path / "pki")
    server = Nats(tmp_path / "nats", conf=textwrap.dedent(f"""\
        tls {{
          cert_file: "{c['server.pem']}"
          key_file: "{c['server.key']}"
          ca_file: "{c['ca.pem']}"
          verify: true
        }}
        """))
    try:
        import ssl

        ctx = ssl.create_default_context(cafile=str(c["ca.pem"]))
        ctx.load_cert_chain(str(c["client.pem"]), str(c["client.key"]))
        # the CA and a client certificate: the executor serves
        ex = service("executor", "--nats", server.url("tls"), "--tls-ca", str(c["ca.pem"]),
                     "--tls-cert", str(c["client.pem"]), "--tls-key", str(c["client.key"]),
                     "--pool", "tls", home=tmp_path / "h1")
        try:
            assert heartbeat(server.url("tls"), tls=ctx)["pool"] == "tls"
        finally:
            stop(ex)
        # without the private CA the server's certificate is not trusted: a clear error
        res = subprocess.run([sys.executable, "-m", "jobmesh.executor", "--nats",
                              server.url("tls")], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "JOBMESH_HOME": str(tmp_path / "h2")})
        assert res.returncode == 1 and "TLS to NATS" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    finally:
        server.stop()


# -- each service runs with only what its image installs ------------------------------------

def requirement_names(path: Path) -> set[str]:
    """Distribution names a requirements file asks for, with -r includes."""
    from packaging.requirements import Requirement

    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
            continue
        names.add(canonical(Requirement(line).name))
    return names


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


BLOCKER = r'''
import importlib.metadata as md, sys
from packaging.requirements import Requirement

def canonical(n): return n.lower().replace("_", "-").replace(".", "-")

def closure(names):
    seen, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = md.distribution(n).requires or []
        except md.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(canonical(r.name))
    return seen

allowed = closure(set(sys.argv[1].split(","))) | {"jobmesh"}
source = sys.argv[2]
owners = {top: {canonical(d) for d in dists}
          for top, dists in md.packages_distributions().items()}

class Block:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = owners.get(top)
        if dists and not dists & allowed:
            raise ImportError(f"{name} (from {sorted(dists)}) is not in {source}")
        return None

sys.meta_path.insert(0, Block())
module = sys.argv[3]
sys.argv = [module] + sys.argv[4:]
import runpy
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''


def confined(tmp_path: Path, name: str, module: str, *args: str, env: dict[str, str]
             ) -> subprocess.Popen[str]:
    """Run a service with only the distributions of deploy/requirements/<name>.txt."""
    boot = tmp_path / "confine.py"
    boot.write_text(BLOCKER)
    req = DEPLOY / "requirements" / f"{name}.txt"
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen(
        [sys.executable, str(boot), ",".join(sorted(requirement_names(req))),
         f"deploy/requirements/{name}.txt", module, *args],
        stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})


def test_each_service_runs_with_only_its_image_requirements(tmp_path: Path) -> None:
    """A workflow runs end to end on scheduler, monitor, executor and gateway processes
    that can import nothing beyond their deploy/requirements file (so the executor image
    really needs no FastAPI, and no image misses a dependency)."""
    server = Nats(tmp_path / "nats", args=("--auth", "tok"))
    home = tmp_path / "home"
    env = {"JOBMESH_HOME": str(home), "JOBMESH_NATS_TOKEN": "tok",
           "JOBMESH_NATS_URL": server.url(), "JOBMESH_TOKEN": "api-token"}
    from tests.integration.test_cluster import free_ports

    port = free_ports(1)[0]
    procs = {
        "scheduler": confined(tmp_path, "scheduler", "jobmesh.scheduler", env=env),
        "monitor": confined(tmp_path, "monitor", "jobmesh.monitor", env=env),
        "executor": confined(tmp_path, "executor", "jobmesh.executor", "--pool", "local",
                             env=env),
        "gateway": confined(tmp_path, "gateway", "jobmesh.gateway", "--host", "0.0.0.0",
                            "--port", str(port), env=env),
    }

    def logs() -> str:
        return "\n".join(f"--- {n}\n{(tmp_path / f'{n}.log').read_text()[-2000:]}"
                         for n in procs)

    try:
        wf = write_workflow(tmp_path / "wf", "confined", {
            "a": {"exec": "jobmesh progress 50 -m half; echo '# jobmesh output n=3'"},
            "b": {"exec": 'test "{parents.a.outputs.n}" = 3'},
        }, ["a,b"])
        from jobmesh.common import bus, ops
        from jobmesh.common.loader import load_workflow
        from jobmesh.common.settings import Settings

        async def submit() -> None:
            nc = await bus.connect(Settings(nats_url=server.url(), nats_token="tok"), "test")
            try:
                js = nc.jetstream()
                await bus.ensure(js)
                await ops.submit(js, load_workflow(wf).workflow, 2)
            finally:
                await nc.close()

        run_async(submit())

        def state() -> str | None:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/workflows/confined",
                                         headers={"Authorization": "Bearer api-token"})
            try:
                with urllib.request.urlopen(req, timeout=2) as r:
                    doc = json.loads(r.read())
            except OSError:
                return None
            st = (doc.get("status") or {}).get("state")
            return st if st in ("SUCCEEDED", "FAILED") else None

        for name, p in procs.items():
            assert p.poll() is None, f"{name} exited\n{logs()}"
        final = wait_until(lambda: state() or any(p.poll() is not None
                                                 for p in procs.values()),
                           60, "the workflow to end, seen through the gateway")
        assert final == "SUCCEEDED", logs()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            p.wait(timeout=30)
        server.stop()
    text = logs()
    assert "ImportError" not in text and "ModuleNotFoundError" not in text, text
    assert "Traceback" not in text, text
