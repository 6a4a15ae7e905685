"""Real sshd test hosts: one on loopback, and hosts in network namespaces with their own
addresses on a private bridge (198.18.0.0/15, the benchmarking range: nothing real lives
there). Needs root, sshd and iproute2, which `make test` installs."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests import leftovers
from tests.helpers import free_port

SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """Why SSH tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (sshd, network namespaces)"
    if not Path(SSHD).exists() or not shutil.which("ip") or not shutil.which("ssh-keygen"):
        return "needs openssh-server and iproute2 (make test installs them)"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)



@dataclass
class SSHHost:
    name: str
    address: str
    port: int
    folder: Path
    netns: str | None = None
    pid: int | None = None

    @property
    def log(self) -> Path:
        return self.folder / "sshd.log"

    def logins(self) -> int:
        return self.log.read_text().count("Accepted publickey") if self.log.exists() else 0


@dataclass
class Lab:
    """Keys, a known_hosts file and the sshd hosts of one test session."""

    root: Path
    hosts: dict[str, SSHHost] = field(default_factory=dict)
    bridge: str | None = None
    subnet: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        self.host_key = self.root / "host_key"
        self.client_key = self.root / "client_key"
        self.other_key = self.root / "other_host_key"
        for key in (self.host_key, self.client_key, self.other_key):
            if not key.exists():
                _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        self.authorized = self.root / "authorized_keys"
        self.authorized.write_text((self.root / "client_key.pub").read_text())
        self.authorized.chmod(0o644)
        self.known_hosts = self.root / "known_hosts"
        self.wrong_known_hosts = self.root / "wrong_known_hosts"
        self.known_hosts.write_text("")
        self.wrong_known_hosts.write_text("")

    def _conf(self, host: SSHHost, max_sessions: int, sftp: bool = True) -> Path:
        conf = host.folder / "sshd_config"
        conf.write_text(f"""Port {host.port}
ListenAddress {host.address}
HostKey {self.host_key}
PidFile {host.folder}/sshd.pid
AuthorizedKeysFile {self.authorized}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxSessions {max_sessions}
MaxStartups 100:30:200
LogLevel VERBOSE
{"Subsystem sftp internal-sftp" if sftp else "# no SFTP subsystem"}
# bash sources ~/.bashrc for every command sshd runs (it sees SSH_CLIENT at SHLVL 0).
# This machine's root .bashrc runs 'pyenv init', whose background rehashes pile up under
# hundreds of sessions; SHLVL=1 keeps the test hosts' commands free of it.
SetEnv SHLVL=1
""")
        return conf

    def _start(self, host: SSHHost, max_sessions: int, sftp: bool = True) -> SSHHost:
        host.folder.mkdir(parents=True, exist_ok=True)
        conf = self._conf(host, max_sessions, sftp)
        prefix = ["ip", "netns", "exec", host.netns] if host.netns else []
        _run(*prefix, SSHD, "-f", str(conf), "-E", str(host.log))
        pidfile = host.folder / "sshd.pid"
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd for {host.name} did not start: {host.log.read_text()}")
            time.sleep(0.02)
        host.pid = int(pidfile.read_text())
        leftovers.note("process", host.pid, "sshd")
        pub = (self.root / "host_key.pub").read_text().split()
        other = (self.root / "other_host_key.pub").read_text().split()
        # OpenSSH writes a port only when it is not 22: "[addr]:port key".
        who = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        with open(self.known_hosts, "a") as f:
            f.write(f"{who} {pub[0]} {pub[1]}\n")
        with open(self.wrong_known_hosts, "a") as f:
            f.write(f"{who} {other[0]} {other[1]}\n")
        self.hosts[host.name] = host
        return host

    def loopback(self, name: str = "local-sshd", max_sessions: int = 10,
                 sftp: bool = True) -> SSHHost:
        """A host on 127.0.0.1; ``sftp=False`` leaves out the SFTP subsystem, as some
        hardened hosts do."""
        return self._start(SSHHost(name, "127.0.0.1", free_port(), self.root / name),
                           max_sessions, sftp)

    def namespaces(self, count: int = 2, max_sessions: int = 10) -> list[SSHHost]:
        """Hosts in network namespaces on a bridge of their own."""
        tag = f"{os.getpid() % 10000:04d}{random.randint(0, 99):02d}"
        self.subnet = random.randint(1, 250)
        self.bridge = f"jmb{tag}"
        leftovers.note("link", self.bridge)
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"198.18.{self.subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        out = []
        for i in range(1, count + 1):
            ns = f"jmh{i}-{tag}"
            leftovers.note("netns", ns)
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", f"jv{i}{tag}", "type", "veth", "peer", "name", "eth0",
                 "netns", ns)
            _run("ip", "link", "set", f"jv{i}{tag}", "master", self.bridge, "up")
            addr = f"198.18.{self.subnet}.{10 + i}"
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            out.append(self._start(SSHHost(f"host{i}", addr, 22, self.root / f"host{i}", ns),
                                   max_sessions))
        return out

    def link(self, host: SSHHost, up: bool) -> None:
        """Take a namespace host's link down or up (its veth on the bridge)."""
        i = host.name.removeprefix("host")
        tag = host.netns.split("-", 1)[1] if host.netns else ""
        _run("ip", "link", "set", f"jv{i}{tag}", "up" if up else "down")

    def stop(self) -> None:
        for host in self.hosts.values():
            if host.pid:
                try:
                    os.kill(host.pid, 15)
                except ProcessLookupError:
                    pass
                leftovers.forget("process", host.pid, "sshd")
        for host in self.hosts.values():
            if host.netns:
                subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
                leftovers.forget("netns", host.netns)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            leftovers.forget("link", self.bridge)
        self.hosts.clear()

    def node(self, target: SSHHost, **attrs: object) -> dict[str, object]:
        """Workflow node attributes for a job on this host (attrs override)."""
        return {"kind": "ssh", "host": target.address, "user": "root", "port": target.port,
                "identity": str(self.client_key), "known_hosts": str(self.known_hosts),
                "workdir": str(self.root / "remote" / target.name), **attrs}
