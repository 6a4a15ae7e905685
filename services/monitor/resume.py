"""The monitor's checkpoint: start from the stored snapshots instead of the whole log.

A monitor that stops cleanly while every workflow's run has ended writes, in the ``runs``
bucket under ``CHECKPOINT_KEY`` (a key no workflow name can take), the log sequence it
folded up to and, per workflow, the run and sequence of the snapshot it stored, the
revision of the spec it stored, and its open/spoil job counts. The next monitor reads it
and checks it against what the ``workflows`` and ``specs`` buckets hold now: if every
workflow matches exactly, it seeds its fold with those snapshots and specs and follows
the log from the next sequence; otherwise (a monitor died mid-run, another monitor wrote
since, a value was refused for its size, a ``repeat`` job whose iteration bookkeeping a
snapshot does not hold) it replays the whole log, as before. Nothing else changes:
later events fold on top of the seeded state as they would on the replayed one. Seeded
specs are decoded only when read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from nats.js.errors import KeyNotFoundError, NotFoundError

from jobmesh.common import bus, subjects
from jobmesh.common.packing import pack, unpack
from jobmesh.common.states import WorkflowState

from .fold import Fold, Head, head_of

log = logging.getLogger("jobmesh.monitor")
CHECKPOINT_KEY = "=monitor"  # '=' is in no workflow name (names.py)
VERSION = 3
VERSIONS = (2, 3)  # what load reads


def wanted(fold: Fold) -> bool:
    """The fold can be resumed from its stored snapshots: every run ended, no ``repeat``
    job (the fold's per-iteration attempts are not in a snapshot)."""
    return all(fold.snaps.head(wf).state.terminal for wf in fold.snaps) and not any(
        fold.specs.has_repeat(wf) for wf in fold.snaps)


def encode(fold: Fold, seq: int, spec_revs: dict[str, int],
           snap_revs: dict[str, int] | None = None) -> bytes | None:
    """Per workflow: its snapshot's run and sequence, the revision of its stored spec (the
    one this fold holds; None: not known, no checkpoint), its open and spoil counts, and
    the revision of the snapshot it stored with that head's state and end (so the next
    start checks the stored snapshot by its revision instead of unpacking it: 45 MB of
    JSON for a 100,000-job sweep)."""
    if any(wf not in spec_revs for wf in fold.snaps):
        return None
    snap_revs = snap_revs or {}
    runs: dict[str, list[Any]] = {}
    for wf in fold.snaps:
        head = fold.snaps.head(wf)
        runs[wf] = [head.run, head.seq, spec_revs[wf], fold.open[wf], fold.spoil[wf]]
        if wf in snap_revs:
            runs[wf] += [snap_revs[wf], head.state.value, head.ended]
    return pack(json.dumps({"v": VERSION, "seq": seq, "workflows": runs}).encode())


async def save(runs_kv: Any, fold: Fold, seq: int, spec_revs: dict[str, int],
               snap_revs: dict[str, int] | None = None) -> None:
    data = encode(fold, seq, spec_revs, snap_revs)
    if data is None:
        return
    try:
        await runs_kv.put(CHECKPOINT_KEY, data)
    except Exception as exc:  # the next start replays the log: slower, not wrong
        log.warning("monitor checkpoint not written: %s", exc)


async def forget(runs_kv: Any) -> None:
    """A checkpoint is good for one start: the monitor that uses it deletes it, so a later
    crash of that monitor leads to a full replay, not to a stale seed."""
    try:
        await runs_kv.delete(CHECKPOINT_KEY)
    except Exception as exc:
        log.warning("monitor checkpoint not removed: %s", exc)


async def load(js: Any, runs_kv: Any, kv: Any, specs: Any, fold: Fold,
               spec_revs: dict[str, int], snap_revs: dict[str, int] | None = None) -> int:
    """Seed ``fold`` from the checkpoint and the stored snapshots (and ``spec_revs``,
    ``snap_revs``); return the sequence to follow the log after, or 0 (replay the whole
    log; ``fold`` untouched). Seeded snapshots and specs stay as stored (packed) until
    read."""
    try:
        entry = await runs_kv.get(CHECKPOINT_KEY)
        point = json.loads(unpack(entry.value or b"{}"))
    except (KeyNotFoundError, NotFoundError):
        return 0
    except Exception as exc:
        log.warning("monitor checkpoint unreadable (%s): replaying the log", exc)
        return 0
    if not isinstance(point, dict) or point.get("v") not in VERSIONS:
        return 0
    await forget(runs_kv)
    want: dict[str, list[Any]] = point.get("workflows") or {}
    for key in set(await bus.kv_keys(js, subjects.KV_WORKFLOWS)) - set(want):
        try:  # a key left by a deleted workflow holds a delete marker, not a value
            extra = await kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            continue
        if extra.value:
            return 0
    seeds: list[tuple[str, bytes, Head, bytes, tuple[int, int], int, int]] = []
    names = list(want)
    try:  # every get in flight at once: one round trip, not two per workflow
        got = await asyncio.gather(*(kv.get(wf) for wf in names),
                                   *(specs.get(wf) for wf in names))
    except (KeyNotFoundError, NotFoundError):
        return 0
    try:
        for i, wf in enumerate(names):
            run, seq, spec_rev, open_, spoil = want[wf][:5]
            snap_e, spec_e = got[i], got[len(names) + i]
            # the spec as this fold had it: the very revision it wrote (or was seeded from)
            if not snap_e.value or not spec_e.value or spec_e.revision != spec_rev:
                return 0
            head: Head | None
            if len(want[wf]) == 8:  # the snapshot's revision and head: no unpacking
                snap_rev, state, ended = want[wf][5:]
                head = Head(run, seq, WorkflowState(state), ended)
                if snap_e.revision != snap_rev:
                    return 0
            else:  # (version 2)
                head = head_of(unpack(snap_e.value))
            if head is None or (head.run, head.seq) != (run, seq) or not head.state.terminal:
                return 0
            # (both decoded when first read: Snaps, Specs)
            seeds.append((wf, snap_e.value, head, spec_e.value, (open_, spoil), spec_rev,
                          snap_e.revision))
    except (ValueError, TypeError) as exc:
        log.warning("monitor checkpoint malformed (%s): replaying the log", exc)
        return 0
    for wf, snap, head, spec, counts, rev, srev in seeds:
        # (a checkpoint has no repeat job)
        fold.seed(wf, snap, head, spec, counts, repeat=False)
        spec_revs[wf] = rev
        if snap_revs is not None:
            snap_revs[wf] = srev
    return int(point["seq"])

