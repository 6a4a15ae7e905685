"""jobmesh: a hybrid workflow manager over NATS JetStream.

The top-level package stays import-light: jobs call ``jobmesh.progress`` and
``jobmesh.output`` from inside their own Python, often in a venv without jobmesh's
services installed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

__version__ = "0.1.0"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def progress_line(percent: float, msg: str | None = None, status: str = "running") -> str:
    """The log line that reports progress; cloudmesh-cc's parser reads it too."""
    value = max(0, min(100, round(float(percent))))
    line = f"# cloudmesh status={status} progress={value} pid={os.getpid()}"
    if msg:
        line += f" msg={_quote(msg)}"
    return line


def progress(percent: float, msg: str | None = None, file: TextIO | None = None) -> None:
    """Report a job's progress (0-100) by printing the progress line to its log."""
    out = file or sys.stdout
    print(progress_line(percent, msg), file=out, flush=True)


def output(key: str, value: Any, file: TextIO | None = None) -> None:
    """Publish a small result; later jobs read it as ``{parents.<job>.outputs.<key>}``."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    out = file or sys.stdout
    print(f"# jobmesh output {key}={text}", file=out, flush=True)
