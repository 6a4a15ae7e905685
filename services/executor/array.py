"""Job arrays: the ready elements of one ``foreach`` node go to the batch system as one
array (``sbatch --array=0-(N-1)%K``, ``bsub -J 'name[1-N]%K'``) instead of one submission
each. Every element stays a jobmesh job, with its own run directory, state, log, progress,
outputs and retries; only the submission is shared.

Elements that arrive together (the scheduler releases a foreach node's jobs in one burst)
are gathered for a moment per group: same cluster, workflow, run, foreach node and
attempt, and the same directives (a ``mem: '{mem}'`` that differs per element makes
separate groups). A group is split where the cluster's ``MaxArraySize`` requires. Retried
elements (attempt 2 on) and chained ones go out alone, as single jobs.

One launch script per group stages every element's run directory (claimed with
``mkdir``, as for single jobs) with an ``array`` file naming its group folder and index,
then, in the group folder ``<run>/@arrays/<name>/``, links each index to its element's
run directory (the array's ``--output`` goes through the link into the element's
``job.log``), writes ``submitting``, submits the array once, and writes the array id to
the group's ``jobid`` and ``<id>_<index>`` to each element's. The array's name is
deterministic (a hash of its elements), so after a crash between submit and record an
element finds its array by the id files or by that name, and nothing is submitted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobmesh.common.attempt import AttemptKey
from jobmesh.common.messages import JobReady

from . import launch, rundir
from .base import InvalidJobError, SubmitError, fail_waiting
from .remote import RJob
from .transport import HostRefused, HostUnreachable, Transport

if TYPE_CHECKING:
    from .batch import BatchExecutor
    from .batchsys import BatchSystem

GATHER = 0.3       # s: a group is submitted when no element joined it for this long
GATHER_MAX = 2.0   # s: ... or this long after its first element
DEFAULT_MAX = 1000  # elements per array when the cluster does not say (Slurm's 1001 - 1)
ARRAY_MARK = "@@ARRAY"
_COMPRESS = ("awk '{n=split($0,a,\" \");s=a[1];p=a[1];o=\"\";for(i=2;i<=n+1;i++){"
             "if(i<=n&&a[i]==p+1){p=a[i];continue};o=o (o==\"\"?\"\":\",\") "
             "(s==p?s:s\"-\"p);if(i<=n){s=a[i];p=a[i]}};print o}'")


def wanted(job: JobReady) -> bool:
    """May this job go out as an element of an array? ``array: false`` opts out."""
    flag = job.spec.extras.get("array", True)
    return (bool(job.spec.foreach_of) and flag not in (False, 0, "false", "no")
            and job.attempt == 1 and not job.native_deps)


def throttle(job: JobReady) -> int | None:
    """``array: K`` (a number): at most K elements of the array run at once."""
    flag = job.spec.extras.get("array", True)
    if isinstance(flag, bool) or flag in (None, ""):
        return None
    try:
        k = int(str(flag))
    except ValueError:
        return None
    return k if k > 0 else None


@dataclass
class Element:
    job: JobReady
    rdir: str
    files: dict[str, bytes]
    modes: dict[str, int]
    shared: list[str]  # the directives every element of its group has
    done: asyncio.Future[str | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


def array_name(elements: list[Element], limit: int = 100) -> str:
    """jm-<workflow>-<node>-<attempt>-a<hash of the elements>-<run hash>."""
    job = elements[0].job
    names = "\n".join(e.job.job for e in elements).encode()
    tag = hashlib.sha1(job.run.encode()).hexdigest()[:6]
    digest = hashlib.sha1(names).hexdigest()[:10]
    base = re.sub(r"[^A-Za-z0-9_.-]", "_",
                  f"jm-{job.workflow}-{job.spec.foreach_of}-{job.attempt}")
    return f"{base[: limit - 19]}-a{digest}-{tag}"


def group_dir(element: Element, name: str) -> str:
    """<workdir>/<workflow>/<run>/@arrays/<name> ('@' is in no job name)."""
    run = posixpath.dirname(posixpath.dirname(element.rdir))
    return f"{run}/@arrays/{name}"


class Arrays:
    """Gathers a batch executor's array elements and submits them, one array per group."""

    def __init__(self, ex: BatchExecutor):
        self.ex = ex
        self.groups: dict[tuple[Any, ...], list[Element]] = {}
        self.timers: dict[tuple[Any, ...], asyncio.Task[None]] = {}
        self.max_size: dict[str, int] = {}
        self.submits = 0  # array submissions made (for benchmarks and tests)

    async def element(self, t: Transport, job: JobReady) -> str:
        """Stage an element and submit it with its group; its native id."""
        ex = self.ex
        home = await ex._with_retries(t, lambda: ex._home(t))
        root = ex._workdir(home, job.spec)
        await ex._with_retries(t, lambda: ex._prepare(t, root))
        rdir = rundir.run_dir(root, job)
        files, modes = ex._files(job, rdir, root)
        own = launch.job_name(job)  # the element's own lines (name, log, folder) are not shared
        shared = [ln for ln in ex.directives.pop(rdir) if rdir not in ln and own not in ln]
        element = Element(job, rdir, files, modes, shared)
        native = await self.submit(t, element)
        if native is None:  # taken: a redelivered message; never submitted twice
            await ex.attach(job, "")
            return f"{t.name}:{rdir}"
        rj = RJob(job, t, rdir)
        ex.jobs[AttemptKey.of(job)] = rj
        ex.native[AttemptKey.of(job)] = native
        await ex._accepted(rj, native)
        ex._poll(t)
        return native

    async def submit(self, t: Transport, element: Element) -> str | None:
        """Queue an element; its array id ``<id>_<index>`` once submitted, None when its
        run directory was taken already (attach to it instead)."""
        job = element.job
        key = (t.name, job.workflow, job.run, job.spec.foreach_of, job.attempt,
               tuple(element.shared), self.ex._env_prefix(job), throttle(job))
        group = self.groups.setdefault(key, [])
        group.append(element)
        timer = self.timers.get(key)
        if timer is None or timer.done():
            self.timers[key] = asyncio.create_task(self._gather(t, key))
        return await element.done

    async def _gather(self, t: Transport, key: tuple[Any, ...]) -> None:
        loop = asyncio.get_running_loop()
        first = loop.time()
        seen = -1
        while True:
            n = len(self.groups.get(key, []))
            if n == seen or loop.time() - first >= GATHER_MAX or n >= DEFAULT_MAX:
                break
            seen = n
            await asyncio.sleep(GATHER)
        elements = self.groups.pop(key, [])
        self.timers.pop(key, None)
        try:
            size = await self._max_size(t, elements[0].job)
            for i in range(0, len(elements), size):
                await self._send(t, elements[i:i + size])
        except BaseException as exc:
            fail_waiting((e.done for e in elements), exc)
            if not isinstance(exc, Exception):
                raise

    async def _max_size(self, t: Transport, job: JobReady) -> int:
        """Elements per array: the cluster's MaxArraySize (asked once per connection)."""
        if t.name not in self.max_size:
            size = DEFAULT_MAX
            try:
                res = await t.run(f"{self.ex._env_prefix(job)}{self.ex.system.max_array()}")
                text = res.stdout.decode(errors="replace").strip()
                if text.isdigit() and int(text) > 1:
                    size = min(int(text), DEFAULT_MAX)  # indices below it
            except (HostUnreachable, HostRefused):
                pass
            self.max_size[t.name] = size
        return self.max_size[t.name]

    async def _send(self, t: Transport, elements: list[Element]) -> None:
        system = self.ex.system
        name = array_name(elements)
        group = group_dir(elements[0], name)
        first = system.first_index
        items = []
        for i, e in enumerate(elements):
            files = dict(e.files)
            files[f"{e.rdir}/array"] = f"{group} {first + i}\n".encode()
            items.append(launch.Launch(e.rdir, files, e.modes, "true"))
        script = "\n".join(["#!/bin/bash", *system.array_header(elements[0].shared, name,
                                                                  group),
                            f'exec /bin/bash "{group}/${system.index_var}/batch.sh"', ""])
        links = "".join(
            f'[ -n "$ok_{i}" ] && {{ r="$r {first + i}"; ln -sfn {shlex.quote(e.rdir)} '
            f"{first + i}; }}\n" for i, e in enumerate(elements))
        submit = system.array_submit("array.sh", name, '"$spec"',
                                     throttle(elements[0].job))
        lines = (f"{links}[ -n \"$r\" ] || {{ echo {ARRAY_MARK} none; exit 0; }}\n"
                 f"spec=$(echo $r | {_COMPRESS})\n"
                 f"{self.ex._env_prefix(elements[0].job)}touch submitting && {submit} "
                 "> submit.out 2>&1; rc=$?; cat submit.out\n"
                 f"if [ $rc = 0 ]; then id=$(sed -n 's/^\\([0-9][0-9]*\\).*/\\1/p;"
                 "s/.*Job <\\([0-9][0-9]*\\)>.*/\\1/p' submit.out | tail -n 1)\n"
                 "  printf '%s\\n' \"$id\" > jobid\n"
                 f"  for i in $r; do printf '{self.ex.system.element_format}\\n' \"$id\" "
                 "\"$i\" > \"$i/jobid\"; done; fi\n"
                 f"echo {ARRAY_MARK} $r; exit $rc")
        items.append(launch.Launch(group, {f"{group}/array.sh": script.encode()},
                                   {f"{group}/array.sh": 0o755}, lines))
        body = launch.script(items)
        self.submits += 1
        res = await self.ex._with_retries(t, lambda: t.run("/bin/sh -s", stdin=body,
                                                           timeout=300))
        outcomes = launch.parse(res.stdout, len(items))
        await self._settle(t, elements, outcomes)

    async def _settle(self, t: Transport, elements: list[Element],
                      outcomes: list[Any]) -> None:
        tail = outcomes[-1]
        for e, outcome in zip(elements, outcomes[:-1]):
            if outcome is None:
                e.done.set_result(None)  # taken: attach finds its id files
            elif isinstance(outcome, PermissionError):
                e.done.set_exception(InvalidJobError(
                    f"cannot create the run directory {e.rdir} on {t.name}"))
            elif isinstance(outcome, Exception):
                e.done.set_exception(SubmitError(f"{t.name}: {outcome}"))
        live = [(i, e) for i, e in enumerate(elements) if not e.done.done()]
        if not live:
            return
        out = tail.stdout.decode(errors="replace") if hasattr(tail, "stdout") else ""
        problem: Exception | None = None
        if isinstance(tail, Exception) and "before" not in str(tail) or tail is None:
            # The script stopped while submitting (or the group was there already): the
            # array may be in the queue. Keep every file; the message comes back, finds
            # the run directories taken and the id by the files or the array's name.
            for _, e in live:
                e.done.set_exception(SubmitError(f"{t.name}: the array submission was cut "
                                                 "short; looking it up again"))
            return
        if isinstance(tail, Exception):
            problem = SubmitError(f"{t.name}: {tail}")
        else:
            head = out.split(ARRAY_MARK)[0]
            try:
                array_id = self.ex.system.parse_submit(head)
            except ValueError:
                problem = await self._refused(t, elements, head or f"status {tail.status}")
            else:
                first = self.ex.system.first_index
                for i, e in live:
                    e.done.set_result(self.ex.system.element_id(array_id, first + i))
                return
        await self._clean(t, [e for _, e in live], elements)
        for _, e in live:
            e.done.set_exception(problem)

    async def _refused(self, t: Transport, elements: list[Element], out: str) -> Exception:
        limit = self.ex.limit_hit(t, out)
        if limit:  # a submit limit: every element waits QUEUED and comes again
            for e in elements:
                await self.ex._say_waiting(e.job, limit)
            return SubmitError(f"{self.ex.system.name} submit limit: {limit}")
        return InvalidJobError(f"{self.ex.system.name} refused the array: "
                               f"{out.strip()[-500:]}")

    async def _clean(self, t: Transport, live: list[Element], elements: list[Element]) -> None:
        """Remove what a refused array staged, so the elements can come again."""
        group = group_dir(elements[0], array_name(elements))
        dirs = " ".join(shlex.quote(p) for p in [group, *(e.rdir for e in live)])
        try:
            await t.run(f"rm -rf {dirs}")
        except Exception:
            pass


def recover(system: BatchSystem, q: str) -> str:
    """Shell printing the id of the element whose run directory is ``q`` (quoted) after
    a crash: its group's id file, else the array found by its deterministic name."""
    return (f"{{ [ -s {q}/array ] && read -r g i < {q}/array && n=${{g##*/}} && "
            f"a=$(cat \"$g/jobid\" 2>/dev/null || {{ [ -e \"$g/submitting\" ] && "
            f"{system.find_array(chr(34) + '$n' + chr(34))}; }}) && [ -n \"$a\" ] && "
            f"printf '{system.element_format}\\n' \"$a\" \"$i\"; }}")
