"""Progress written next to the script: ``<script>.log``.

cloudmesh-cc tells Python and notebook jobs to report progress into the file named after
the script with the ``.log`` ending, next to it, and cloudmesh-common's
``progress(filename=...)`` appends its ``# cloudmesh ...`` lines there. In a run directory
the script is staged as ``script.<ext>``, so both ``<stem>.log`` (the name the user's code
knows) and ``script.log`` (what ``__file__`` gives) are followed, beside ``job.log``, by
every executor: local jobs read them here, remote and batch jobs in the same probe as the
job's log.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from jobmesh.common.messages import JobReady
from jobmesh.common.progress import LogScan, scan

from . import rundir

MAX_READ = 1 << 20  # bytes per file per read
_SAFE = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")  # names passed to a remote shell and parser


def names(job: JobReady) -> list[str]:
    """The side logs to follow for a job, relative to its run directory."""
    if not job.spec.script:
        return []
    found: list[str] = []
    for stem in (PurePosixPath(job.spec.script).stem,
                 PurePosixPath(rundir.staged_script(job) or "").stem):
        name = f"{stem}.log"
        if stem and name != "job.log" and name not in found and _SAFE.match(name):
            found.append(name)
    return found


@dataclass
class Tail:
    """A file read from a stored offset; only whole lines are folded."""

    offset: int = 0
    partial: bytes = b""

    def feed(self, data: bytes, into: LogScan) -> None:
        self.offset += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        if cut:
            scan(data[:cut].decode("utf-8", "replace"), into)

    def flush(self, into: LogScan) -> None:
        if self.partial:
            scan(self.partial.decode("utf-8", "replace"), into)
            self.partial = b""


@dataclass
class SideLogs:
    """The side logs of one job and how far each was read."""

    tails: dict[str, Tail] = field(default_factory=dict)

    @classmethod
    def of(cls, job: JobReady) -> SideLogs:
        return cls({name: Tail() for name in names(job)})

    def read_local(self, rdir: Path, into: LogScan) -> bool:
        """Fold what the files in rdir gained since the last read; True when any did."""
        changed = False
        for name, tail in self.tails.items():
            try:
                with open(rdir / name, "rb") as f:
                    f.seek(tail.offset)
                    data = f.read(MAX_READ)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
            if data:
                tail.feed(data, into)
                changed = True
        return changed

    def probe_args(self) -> list[tuple[str, int]]:
        """(name, first byte to read, 1-based) for the remote probe."""
        return [(name, tail.offset + 1) for name, tail in self.tails.items()]

    def read_probe(self, fields: dict[str, str], into: LogScan) -> bool:
        """Fold the bytes a probe brought back (``side:<name>=<base64>``)."""
        changed = False
        for name, tail in self.tails.items():
            raw = fields.get(f"side:{name}")
            data = base64.b64decode(raw) if raw else b""
            if data:
                tail.feed(data, into)
                changed = True
        return changed

    def flush(self, into: LogScan) -> None:
        for tail in self.tails.values():
            tail.flush(into)
