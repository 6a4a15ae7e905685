"""A real single-node Slurm (slurmctld + slurmd) started by the tests, as root, with
everything under one folder (shared/recipes.md section 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests import leftovers
from tests.sshhosts import free_port


def available() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run slurmctld and slurmd"
    for exe in ("slurmctld", "slurmd", "sbatch", "squeue"):
        if not shutil.which(exe):
            return f"needs {exe} (make test installs slurmctld, slurmd and slurm-client)"
    return None


class Slurm:
    def __init__(self, folder: Path, cpus: int | None = None,
                 max_array_size: int | None = None):
        """``cpus`` above the machine's lets many tiny jobs run at once (slurmd accepts
        the configured count); ``max_array_size`` sets Slurm's MaxArraySize."""
        self.dir = folder
        for sub in ("state", "spool", "log"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.conf = folder / "slurm.conf"
        ctld, slurmd = free_port(), free_port()
        machine = os.cpu_count() or 2
        cpus = cpus or machine
        extra = "SlurmdParameters=config_overrides\n" if cpus > machine else ""
        if max_array_size:
            extra += f"MaxArraySize={max_array_size}\n"
        self.conf.write_text(f"""ClusterName=jmtest
SlurmctldHost=localhost
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={folder}/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=2
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
{extra}""")
        # Status queries every 2 s keep the tests quick; sites get 30 s (batch.py).
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "JOBMESH_SQUEUE_INTERVAL": "2"}

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=30)

    def start_ctld(self) -> None:
        subprocess.run(["slurmctld"], env=self.env, check=True, capture_output=True)
        self._note("slurmctld")

    def start(self) -> None:
        self.start_ctld()
        subprocess.run(["slurmd", "-N", "localhost"], env=self.env, check=True,
                       capture_output=True)
        self._note("slurmd")
        deadline = time.monotonic() + 30
        while self.run("sinfo", "-h", "-n", "localhost", "-o", "%T").stdout.strip() != "idle":
            if time.monotonic() > deadline:
                logs = "".join(p.read_text()[-1500:] for p in (self.dir / "log").glob("*.log"))
                raise RuntimeError(f"slurm did not become ready:\n{logs}")
            time.sleep(0.1)

    def _note(self, name: str) -> None:
        """Write the daemon down for the next session's sweep (tests/leftovers.py)."""
        deadline = time.monotonic() + 10
        while (pid := self._pid(name)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid is not None:
            leftovers.note("process", pid, name)

    def _pid(self, name: str) -> int | None:
        f = self.dir / f"{name}.pid"
        text = f.read_text().strip() if f.exists() else ""
        return int(text) if text.isdigit() else None

    def stop_daemon(self, name: str) -> None:
        pid = self._pid(name)
        if pid is None:
            return
        leftovers.forget("process", pid, name)
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self.run("scancel", "--user=root")
        for name in ("slurmd", "slurmctld"):
            self.stop_daemon(name)

    def state(self, job_id: str) -> str:
        return self.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()
