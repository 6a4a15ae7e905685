"""Values NATS refuses for their size, and what the monitor does instead.

A server refuses a message over its ``max_payload`` (the client raises
``MaxPayloadError`` before sending), and a stream refuses one over its ``max_msg_size``
(JetStream error 10054). Sending it again cannot help, so such a failure is not retried:

- a snapshot too large is stored trimmed (``trimmed``: its jobs' outputs, messages and
  attempt history left out; states, counts and times stay), and if even that is refused,
  not at all for the rest of the run;
- a run record or a grown spec too large is not stored;
- graphs go in chunks no larger than the server takes (``chunked``).

Each is logged once per workflow and run (``Refusals``), naming the size and the limit.
Other errors (NATS away) are retried as before.
"""

from __future__ import annotations

import logging
from typing import Any

from nats import errors as nerr
from nats.js import api

from jobmesh.common.messages import WorkflowSnapshot
from jobmesh.common.natsconn import too_large  # noqa: F401  (limits.too_large)

log = logging.getLogger("jobmesh.monitor")
CHUNK = 128 * 1024            # the object store's own chunk size
HEADROOM = 1024               # a chunk's subject and headers count towards max_payload


def limit_of(exc: BaseException, nc: Any) -> int | None:
    """The limit a refused write was over: the server's max_payload, or None (a stream's
    maximum message size, which the error does not give)."""
    return max_payload(nc) if isinstance(exc, nerr.MaxPayloadError) else None


def max_payload(nc: Any) -> int | None:
    try:
        return int(nc.max_payload)
    except (AttributeError, TypeError, ValueError):
        return None


def trimmed(snap: WorkflowSnapshot) -> WorkflowSnapshot:
    """The snapshot without what makes a large one large: its jobs' outputs, messages
    and attempt history."""
    jobs = {name: js.model_copy(update={"outputs": {}, "msg": None, "history": []})
            for name, js in snap.jobs.items()}
    return snap.model_copy(update={"jobs": jobs})


def chunked(name: str, nc: Any) -> api.ObjectMeta:
    """Object metadata whose chunks the server accepts (a 1 MB server takes 128 KB chunks;
    a smaller one would refuse every graph)."""
    limit = max_payload(nc) or CHUNK + HEADROOM
    size = max(4096, min(CHUNK, limit - HEADROOM))
    return api.ObjectMeta(name=name, options=api.ObjectMetaOptions(max_chunk_size=size))


class Refusals:
    """What was refused, per workflow: each (what, workflow, run) is logged once."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, str]] = set()

    def note(self, what: str, wf: str, run: str, size: int, limit: int | None,
             then: str) -> None:
        key = (what, wf, run)
        if key in self.seen:
            return
        self.seen.add(key)
        over = (f"over NATS's max_payload of {limit:,} bytes" if limit
                else "over the stream's maximum message size")
        log.warning("the %s of workflow %s (run %s) is %s bytes, %s: %s", what, wf, run,
                    f"{size:,}", over, then)

    def forget(self, wf: str) -> None:
        self.seen = {k for k in self.seen if k[1] != wf}
