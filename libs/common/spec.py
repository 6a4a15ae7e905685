"""The workflow spec: what a user wrote, normalised and checked.

``Workflow`` travels on the wire inside ``WorkflowSubmitted``, so it is plain data.
Node attributes that jobmesh does not know are kept (cloudmesh-cc labels may use them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sized
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import to_json

from .names import POOL_RE
from .safety import LINE_FIELDS, check_line

# The executor kinds, listed once: everything else (the loader, the CLI, the stack, the
# executor service, per-kind options) takes them from here.
Kind = Literal["local", "ssh", "wsl", "slurm", "lsf"]
KINDS: tuple[str, ...] = get_args(Kind)
BATCH_KINDS = ("slurm", "lsf")  # submitted to a batch system
SCRIPT_SUFFIXES = (".sh", ".py", ".ipynb")

# cloudmesh-cc's status words and the colours it draws them in, plus ours.
DEFAULT_COLORS: dict[str, str] = {
    "ready": "white",
    "submitted": "#FFF2CC",
    "running": "#CCE5FF",
    "done": "#CCFFCC",
    "failed": "#FFCCCC",
    "canceled": "#E0E0E0",
    "skipped": "#F2F2F2",
}
DEFAULT_LABEL = "{name}"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
MAX_DURATION = 10 * 365 * 86400.0  # ten years: longer is "never" and stays a finite number
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """'90s', '5m', '2h', '1.5d', 30 -> seconds. Raises ValueError with a hint."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 5m or 2h")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):  # nan, .inf
            raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 5m or 2h")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return min(float(value), MAX_DURATION)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 5m or 2h")
    return min(float(m.group(1)) * _UNIT[m.group(2)], MAX_DURATION)


class Repeat(BaseModel):
    """``repeat: {until: "outputs.loss < 0.1", max: 5, delay: 30s}``: rerun the node (or
    its ``group:``) after each success until ``until`` holds or ``max`` iterations ran."""

    model_config = ConfigDict(extra="forbid")

    until: str
    max: int = Field(ge=1)
    delay: float = 0.0

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, v: Any) -> Any:
        return 0.0 if v is None else parse_duration(v)


class JobSpec(BaseModel):
    """One node of the workflow."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: Kind = "local"
    pool: str | None = None
    user: str | None = None
    host: str | None = None
    script: str | None = None  # absolute path after loading
    exec: str | None = None
    venv: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    label: str | None = None
    shape: str | None = None
    style: str | None = None
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 0.0
    allow_failure: bool = False
    cache: bool = True  # reuse an earlier run's result when its cache key matches
    after: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)  # notebook parameters
    inputs: list[str] = Field(default_factory=list)   # files/globs staged into the run dir
    outputs: list[str] = Field(default_factory=list)  # files/globs copied back on success
    # control flow (docs/workflows.md#control-flow)
    foreach: Any = None           # {key: [values]}, a list, or "{parents.X.outputs.K}"
    foreach_mode: Literal["product", "zip"] = "product"
    when: str | None = None       # a condition (jobmesh.common.expr) over parents/variables
    repeat: Repeat | None = None
    group: str | None = None      # the nodes a repeat reruns together
    params: dict[str, Any] = Field(default_factory=dict)  # this instance's foreach values
    foreach_of: str | None = None  # the foreach node this job was expanded from

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, v: Any) -> Any:
        if isinstance(v, (str, int, float)):
            return [str(v)]
        if isinstance(v, list):
            return [str(x) if isinstance(x, (int, float)) else x for x in v]
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (str(x) if isinstance(x, (int, float, bool)) else x) for k, x in v.items()}
        return v

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _files(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            for item in v:
                text = str(item)
                if text.startswith(("/", "~")) or ".." in text.replace("\\", "/").split("/"):
                    raise ValueError(f"{text!r} must be a path inside the workflow's folder "
                                     "(relative, without '..')")
        return v

    @field_validator("foreach_mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> Any:
        return "product" if v in ("cross", "product", None) else v

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, v: Any) -> Any:
        return ("true" if v else "false") if isinstance(v, bool) else v

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("timeout", "retry_delay", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @field_validator("retries")
    @classmethod
    def _retries(cls, v: int) -> int:
        if v < 0:
            raise ValueError("retries cannot be negative")
        return v

    @property
    def job_type(self) -> str:
        """sh | py | ipynb | exec | noop: what the executor runs."""
        if self.exec is not None:
            return "exec"
        if self.script:
            for suffix in SCRIPT_SUFFIXES:
                if self.script.endswith(suffix):
                    return suffix[1:]
        return "noop"

    @property
    def pool_name(self) -> str:
        return self.pool or self.kind

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Workflow(BaseModel):
    """A whole workflow: its jobs in file order and its edges (parent, child)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    jobs: dict[str, JobSpec]
    edges: list[tuple[str, str]] = Field(default_factory=list)
    colors: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_COLORS))
    base_dir: str = "."
    source: str = ""
    variables: dict[str, Any] = Field(default_factory=dict)
    allow_large: bool = False  # more than expand.MAX_JOBS jobs were allowed (--allow-large)
    submitted_digest: str | None = None  # set once jobs were added while it ran

    @property
    def dynamic(self) -> bool:
        """Does a node wait for a parent's output to expand (foreach over an output)?"""
        return any(j.foreach is not None for j in self.jobs.values())

    def parents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.jobs}
        for a, b in self.edges:
            out[b].append(a)
        return out

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.jobs}
        for a, b in self.edges:
            out[a].append(b)
        return out

    def digest(self) -> str:
        """A stable hash of what runs, to tell an edited workflow from the same one. A
        workflow that grew while it ran (dynamic foreach) keeps the hash it was submitted
        with."""
        import hashlib

        if self.submitted_digest:
            return self.submitted_digest
        payload = self.__pydantic_serializer__.to_json(  # (= model_dump_json, as bytes)
            self, exclude={"source", "submitted_digest", "allow_large"})
        return hashlib.sha256(payload).hexdigest()[:16]

    def packed(self) -> bytes:
        """``packing.pack`` of its JSON (``to_json(self)``), for the specs bucket. A big
        workflow's jobs are serialised one by one into the compressor, so its whole JSON
        (a 100,000-job sweep: ~60 MB) never sits in memory at once."""
        from .packing import compressed, pack

        whole = self.__pydantic_serializer__.to_json
        if len(self.jobs) < STREAM_FROM:
            return pack(whole(self))
        shell = whole(self.model_copy(update={"jobs": {}}))
        head = b'{"name":' + to_json(self.name) + b',"jobs":{'
        if not shell.startswith(head + b"}"):  # not laid out as assumed: the plain way
            return pack(whole(self))

        def pieces() -> Iterator[bytes]:
            yield head
            for i, (name, job) in enumerate(self.jobs.items()):
                yield (b"," if i else b"") + to_json(name) + b":" + \
                    job.__pydantic_serializer__.to_json(job)
            yield shell[len(head):]

        return compressed(pieces())


STREAM_FROM = 1000  # jobs: a smaller workflow's JSON is packed whole (Workflow.packed)


_FIELDS = frozenset(JobSpec.model_fields)
_CONTAINERS = ("args", "after", "inputs", "outputs", "parameters", "env")
SHARE_FIELDS_SET_FROM = 1000  # jobs


def share_fields_set(jobs: Iterable[JobSpec]) -> None:
    """Let jobs whose given fields are the same names share one ``model_fields_set``,
    and all the jobs one empty list or dict per field.

    pydantic keeps, per model, the set of fields it was given: for a foreach's job
    (name, exec, env, params, foreach_of) a 728-byte set, a quarter of a decoded job.
    jobmesh never reads it (no ``exclude_unset``; ``model_copy`` copies it), so the jobs
    of a big workflow share one per distinct set; a field set on one job afterwards
    would mark it given on the others too, which changes nothing jobmesh does. Workflows
    under ``SHARE_FIELDS_SET_FROM`` jobs are left alone."""
    if not isinstance(jobs, Sized) or len(jobs) < SHARE_FIELDS_SET_FROM:
        return
    shared: dict[frozenset[str], set[str]] = {}
    empty: dict[str, Any] = {}  # per field: one empty list or dict for all the jobs
    texts: dict[str, str] = {}  # equal short env values: one string
    for job in jobs:
        given = job.__pydantic_fields_set__
        one = shared.setdefault(frozenset(given), given)
        if one is not given:
            object.__setattr__(job, "__pydantic_fields_set__", one)
        # Likewise the empty lists and dicts (args, after, inputs, outputs, parameters,
        # env: ~0.3 KB a job); jobmesh never changes a spec's containers in place.
        values = job.__dict__
        for name in _CONTAINERS:
            value = values[name]
            if not value and type(value) in (list, dict):
                values[name] = empty.setdefault(name, value)
        # A foreach fills its values into each job's env ('0.0001' in a thousand jobs):
        # equal values become one string (~0.1 KB a job of a sweep; same value, so safe
        # even in a dict that two jobs share).
        env = values["env"]
        for key, text in env.items():
            if type(text) is str and len(text) <= 64:
                same = texts.setdefault(text, text)
                if same is not text:
                    env[key] = same


def check_spec(spec: JobSpec) -> list[tuple[str, str]]:
    """What is unsafe in a node once its placeholders are filled, as (field, message):
    a pool that cannot be a NATS subject token, a line break in a value that reaches a
    batch directive or a command line, a NUL anywhere, an env name that is not a shell
    name, a port or max_sessions that is not a number. The loader reports these at
    validate time; the scheduler fails a job with them when data brought them in.
    (Not a model validator: events already stored must still decode.)"""
    out: list[tuple[str, str]] = []
    if spec.pool is not None and not POOL_RE.match(_PLACEHOLDER.sub("x", spec.pool)):
        out.append(("pool", f"invalid pool name {spec.pool!r}: use 1-64 letters, digits, "
                    "'-' or '_'"))
    extras = spec.extras
    for key in LINE_FIELDS:
        value = getattr(spec, key) if key in _FIELDS else extras.get(key)
        try:
            check_line(value, f"'{key}'")
        except ValueError as exc:
            out.append((key, str(exc)))
    texts = [("exec", spec.exec), *(("args", a) for a in spec.args),
             *(("env", v) for v in spec.env.values())]
    out += [(k, f"'{k}' holds a NUL character") for k, t in texts if t and "\x00" in t]
    out += [("env", f"env name {k!r} is not a shell variable name; use letters, digits "
             "and '_', not starting with a digit") for k in spec.env if not _ENV_NAME.match(k)]
    for key in ("port", "max_sessions"):
        value = extras.get(key)
        if value is None or (isinstance(value, str) and _PLACEHOLDER.search(value)):
            continue
        text = str(value)
        if isinstance(value, bool) or not _PORT.match(text) or not 1 <= int(text) <= 65535:
            out.append((key, f"'{key}' must be a whole number from 1 to 65535, not "
                        f"{value!r}"))
    return out


def will_retry(spec: JobSpec, attempt: int, first: int = 1) -> bool:
    """A failed attempt is retried while attempts remain (attempt counts from 1; ``first``
    is the first attempt of the current repeat iteration)."""
    return attempt - first + 1 <= spec.retries


def retry_delay(spec: JobSpec, attempt: int) -> float:
    """Exponential backoff: retry_delay, then twice that, and so on (capped at 1 h)."""
    return min(float(spec.retry_delay) * 2.0 ** max(0, attempt - 1), 3600.0)
