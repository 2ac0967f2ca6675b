"""What the client returns and takes: frozen dataclasses with Python types (``datetime``
in UTC, ``timedelta``, enums, bytes as ``int``, CPU in cores), converted from and to the
protocol's messages here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from google.protobuf import timestamp_pb2

from . import units
from .constraints import Constraint, Preference
from .enums import LogStream, TaskStatus, WorkerHealth
from .errors import InvalidArgument
from ._pb import client_pb2, types_pb2

#: The label ``Client.retry`` (AdminService.RetryTask) puts on the new task: the old id.
RETRY_OF_LABEL = "cloudai.retry-of"


def _time(msg: Any, name: str) -> datetime | None:
    """A set Timestamp field as an aware UTC datetime, else None."""
    if not msg.HasField(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(msg, name)
    return ts.ToDatetime(tzinfo=timezone.utc)


def _frozen_map(m: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(m or {}))


#: A dependency's condition by its name, as the protocol numbers it.
_CONDITIONS: dict[str, types_pb2.DependencyCondition] = {
    "ok": types_pb2.DEPENDENCY_CONDITION_OK,
    "notok": types_pb2.DEPENDENCY_CONDITION_NOT_OK,
    "any": types_pb2.DEPENDENCY_CONDITION_ANY,
}
_CONDITION_NAMES: dict[int, str] = {v: k for k, v in _CONDITIONS.items()}


@dataclass(frozen=True)
class TaskSpec:
    """What to run. Build one with :meth:`TaskSpec.of` (which takes units as strings and
    floats), or read it from :attr:`Task.spec`.

    Attributes:
        image: the image reference.
        command: the container's command (Docker's Cmd), arguments of the entrypoint;
            empty: the image's own.
        entrypoint: replaces the image's entrypoint; empty: the image's own; ``("",)``
            clears it so that ``command[0]`` is the program.
        env: environment variables.
        cpu: cores to reserve (``None``: none asked).
        memory: bytes to reserve and limit (``None``: the worker's default limit).
        gpus: GPUs to reserve.
        priority: higher runs first; equal priority runs oldest first.
        retries: extra attempts after a failure of the task itself (``None``: the
            master's default, no retry).
        timeout: wall-clock limit of one attempt (``None``: none).
        worker: run only on this worker id.
        labels: labels, for the user and for cloudai (``cloudai.retry-of``).
        idempotency_key: enqueueing twice with the same key returns the first task.
        after: the tasks it runs after, as ``(task id, condition)`` pairs; the condition
            is ``"ok"`` (the parent succeeded), ``"notok"`` or ``"any"``. Until they have
            ended as each needs, the task is ``waiting``.
        not_before: not started before this time (timezone-aware), or ``None``.
        constraints: what a worker's labels and built-in attributes must meet
            (:class:`cloudai.constraints.Constraint`); never relaxed.
        prefer: workers matching more of these go first
            (:class:`cloudai.constraints.Preference`).
    """

    image: str
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: _frozen_map(None), hash=False)
    cpu: float | None = None
    memory: int | None = None
    gpus: int = 0
    priority: int = 0
    retries: int | None = None
    timeout: timedelta | None = None
    worker: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _frozen_map(None), hash=False)
    idempotency_key: str | None = None
    after: tuple[tuple[str, str], ...] = ()
    not_before: datetime | None = None
    constraints: tuple[Constraint, ...] = ()
    prefer: tuple[Preference, ...] = ()

    @classmethod
    def of(
        cls,
        image: str,
        command: Sequence[str] | None = None,
        entrypoint: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cpu: units.Cpu | None = None,
        memory: units.Memory | None = None,
        gpus: int = 0,
        priority: int = 0,
        retries: int | None = None,
        timeout: units.Seconds | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        after: Sequence[str | tuple[str, str]] | None = None,
        not_before: datetime | None = None,
        constraints: Sequence[str | Constraint] | None = None,
        prefer: Sequence[str | Preference] | None = None,
    ) -> TaskSpec:
        """A spec from the arguments of :meth:`cloudai.Client.enqueue` (memory as ``int``
        bytes or ``"256M"``, CPU as cores or ``"500m"``, timeout as seconds or a
        ``timedelta``). Units and types are checked here; the image and the rest are the
        master's to check."""
        if not isinstance(image, str):
            raise TypeError(f"image must be a str, not {image!r}")
        if isinstance(command, str):
            raise TypeError(
                "command must be a list of strings, e.g. ['sh', '-c', 'echo hi'], not a str"
            )
        if isinstance(entrypoint, str):
            entrypoint = (entrypoint,)
        for name, xs in (("constraints", constraints), ("prefer", prefer)):
            if isinstance(xs, str):
                raise TypeError(f"{name} must be a list, e.g. ['zone=a'], not a str")
        for name, n in (("gpus", gpus), ("priority", priority), ("retries", retries)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
                raise TypeError(f"{name} must be an int, not {n!r}")
        if gpus < 0:
            raise InvalidArgument(f"invalid gpus {gpus}: negative")
        if retries is not None and retries < 0:
            raise InvalidArgument(f"invalid retries {retries}: negative")
        parents: list[tuple[str, str]] = []
        for a in after or ():
            task, cond = (a, "ok") if isinstance(a, str) else a
            if cond not in _CONDITIONS:
                raise InvalidArgument(
                    f"invalid condition {cond!r} for {task}: expected ok, notok or any"
                )
            parents.append((task, cond))
        if not_before is not None and not_before.tzinfo is None:
            raise InvalidArgument(f"not_before must be timezone-aware, not {not_before!r}")
        return cls(
            image=image,
            command=tuple(command or ()),
            entrypoint=tuple(entrypoint or ()),
            env=_frozen_map(env),
            cpu=None if cpu is None else units.cpu_millis(cpu) / 1000,
            memory=None if memory is None else units.memory_bytes(memory),
            gpus=gpus,
            priority=priority,
            retries=retries,
            timeout=None if timeout is None else units.duration(timeout, "timeout"),
            worker=worker,
            labels=_frozen_map(labels),
            idempotency_key=idempotency_key,
            after=tuple(parents),
            not_before=not_before,
            constraints=tuple(Constraint.of(c) for c in constraints or ()),
            prefer=tuple(Preference.of(p) for p in prefer or ()),
        )

    def to_pb(self) -> types_pb2.TaskSpec:
        spec = types_pb2.TaskSpec(
            image=self.image,
            command=list(self.command),
            entrypoint=list(self.entrypoint),
            env=dict(self.env),
            resources=types_pb2.Resources(
                cpu_millis=0 if self.cpu is None else round(self.cpu * 1000),
                memory_bytes=self.memory or 0,
                gpus=self.gpus,
            ),
            priority=self.priority,
            max_attempts=0 if self.retries is None else self.retries + 1,
            labels=dict(self.labels),
        )
        if self.timeout is not None:
            spec.timeout.FromTimedelta(self.timeout)
        if self.worker is not None:
            spec.pinned_worker = self.worker
        if self.idempotency_key is not None:
            spec.idempotency_key = self.idempotency_key
        for task, cond in self.after:
            spec.after.append(
                types_pb2.Dependency(task_id=task, condition=_CONDITIONS[cond])
            )
        if self.not_before is not None:
            spec.not_before.FromDatetime(self.not_before.astimezone(timezone.utc))
        spec.constraints.extend(c.to_pb() for c in self.constraints)
        spec.prefer.extend(p.to_pb() for p in self.prefer)
        return spec

    @classmethod
    def from_pb(cls, s: types_pb2.TaskSpec) -> TaskSpec:
        r = s.resources
        return cls(
            image=s.image,
            command=tuple(s.command),
            entrypoint=tuple(s.entrypoint),
            env=_frozen_map(s.env),
            cpu=r.cpu_millis / 1000 if r.cpu_millis else None,
            memory=r.memory_bytes or None,
            gpus=r.gpus,
            priority=s.priority,
            retries=s.max_attempts - 1 if s.max_attempts else None,
            timeout=s.timeout.ToTimedelta() if s.HasField("timeout") else None,
            worker=s.pinned_worker if s.HasField("pinned_worker") else None,
            labels=_frozen_map(s.labels),
            idempotency_key=s.idempotency_key if s.HasField("idempotency_key") else None,
            after=tuple((d.task_id, _CONDITION_NAMES[d.condition]) for d in s.after),
            not_before=(
                s.not_before.ToDatetime(tzinfo=timezone.utc)
                if s.HasField("not_before")
                else None
            ),
            constraints=tuple(Constraint.from_pb(c) for c in s.constraints),
            prefer=tuple(Preference(p.key, p.value) for p in s.prefer),
        )


@dataclass(frozen=True)
class ArrayEnqueued:
    """The answer to :meth:`cloudai.Client.enqueue_array`.

    Attributes:
        id: the array's id (each element has it in ``CLOUDAI_ARRAY_ID`` and the label
            ``cloudai.array``).
        size: its elements.
        created: elements made now (0 when an idempotency key matched the same array).
        max_running: its cap; 0 for none.
        first_task_id: the element of the first index.
    """

    id: str
    size: int
    created: int
    max_running: int
    first_task_id: str
    warning: str | None = None


@dataclass(frozen=True)
class Enqueued:
    """The answer to one spec of :meth:`cloudai.Client.enqueue_many`.

    Attributes:
        id: the task's id.
        created: False when the idempotency key matched an existing task (``id`` is
            that task's).
        warning: set when no registered worker could ever take the task (it is queued
            all the same): the closest worker and what it lacks.
    """

    id: str
    created: bool
    warning: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One assignment of a task to a worker.

    Attributes:
        number: 1 for the first.
        worker: the worker it went to.
        outcome: the status it ended in; ``None`` while it is live.
        exit_code: the container's, when it exited.
        error: why it could not run or was lost, else ``None``.
        lost_to_silence: lost because its worker went silent (a late result may still
            count).
    """

    number: int
    worker: str
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: TaskStatus | None
    exit_code: int | None
    error: str | None
    lost_to_silence: bool

    @classmethod
    def from_pb(cls, a: types_pb2.Attempt) -> Attempt:
        return cls(
            number=a.number,
            worker=a.worker_id,
            assigned_at=_time(a, "assigned_at"),
            started_at=_time(a, "started_at"),
            finished_at=_time(a, "finished_at"),
            outcome=None if a.outcome == types_pb2.TASK_STATUS_UNSPECIFIED
            else TaskStatus.from_pb(a.outcome),
            exit_code=a.exit_code if a.HasField("exit_code") else None,
            error=a.error or None,
            lost_to_silence=a.lost_to_silence,
        )


@dataclass(frozen=True)
class Task:
    """A task as the master stores it.

    Attributes:
        id: its id (a UUIDv7: ids sort by creation).
        status: where it is.
        spec: what it runs.
        created_at, updated_at, finished_at: when it was enqueued, last changed, ended.
        not_before: not dispatched before this time (retry backoff), if set.
        attempts: every attempt so far, oldest first.
        worker: the worker of the current or last attempt, if any.
        exit_code: the deciding attempt's exit code, if it exited.
        error: why it failed without an exit code (or was lost), else ``None``.
        cancel_requested: a cancel was asked and has not taken effect yet.
        submitted_by: the user who enqueued it (``None`` in local-dev mode).
    """

    id: str
    status: TaskStatus
    spec: TaskSpec
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    attempts: tuple[Attempt, ...]
    worker: str | None
    exit_code: int | None
    error: str | None
    cancel_requested: bool
    submitted_by: str | None

    @property
    def ended(self) -> bool:
        """True once the task can change no more."""
        return self.status.ended

    @property
    def labels(self) -> Mapping[str, str]:
        """The spec's labels."""
        return self.spec.labels

    @property
    def retry_of(self) -> str | None:
        """The id of the task this one retries (:meth:`cloudai.Client.retry`), if any."""
        return self.spec.labels.get(RETRY_OF_LABEL)

    @classmethod
    def from_pb(cls, t: types_pb2.Task) -> Task:
        return cls(
            id=t.id,
            status=TaskStatus.from_pb(t.status),
            spec=TaskSpec.from_pb(t.spec),
            created_at=_time(t, "created_at"),
            updated_at=_time(t, "updated_at"),
            finished_at=_time(t, "finished_at"),
            not_before=_time(t, "not_before"),
            attempts=tuple(Attempt.from_pb(a) for a in t.attempts),
            worker=t.worker_id or None,
            exit_code=t.exit_code if t.HasField("exit_code") else None,
            error=t.error or None,
            cancel_requested=t.cancel_requested,
            submitted_by=t.submitted_by or None,
        )


@dataclass(frozen=True)
class Resources:
    """CPU (cores), memory and disk (bytes), GPUs."""

    cpu: float
    memory: int
    gpus: int
    disk: int

    @classmethod
    def from_pb(cls, r: types_pb2.Resources) -> Resources:
        return cls(cpu=r.cpu_millis / 1000, memory=r.memory_bytes, gpus=r.gpus, disk=r.disk_bytes)


@dataclass(frozen=True)
class Worker:
    """A worker the master knows.

    Attributes:
        capacity: what it offers; ``free``: what is not reserved now.
        last_heartbeat: when the master last heard from it.
        running: ids of the tasks it runs.
        cpu_percent, memory_used, memory_total: the host's usage at its last heartbeat,
            when reported.
        gpu_model: the model of its GPUs, if it has any.
        cordoned: an operator cordoned it: no new task goes there.
        drain_deadline: while it is drained, when what still runs there is stopped and
            retried elsewhere.
        attributes: the built-in attributes it discovered (``os``, ``arch``,
            ``hostname``, ``docker.version``, ``gpu.model``, ``gpu.memory``); with the
            labels, what task constraints match.
    """

    id: str
    health: WorkerHealth
    labels: Mapping[str, str] = field(hash=False)
    capacity: Resources
    free: Resources
    last_heartbeat: datetime | None
    running: tuple[str, ...]
    hostname: str
    version: str
    cpu_percent: float | None
    memory_used: int | None
    memory_total: int | None
    gpu_model: str | None
    cordoned: bool
    drain_deadline: datetime | None
    attributes: Mapping[str, str] = field(default_factory=lambda: _frozen_map(None), hash=False)

    @classmethod
    def from_pb(cls, w: types_pb2.WorkerInfo) -> Worker:
        usage = w.usage if w.HasField("usage") else None
        return cls(
            id=w.id,
            health=WorkerHealth.from_pb(w.health),
            labels=_frozen_map(w.labels),
            capacity=Resources.from_pb(w.capacity),
            free=Resources.from_pb(w.free),
            last_heartbeat=_time(w, "last_heartbeat"),
            running=tuple(w.running_task_ids),
            hostname=w.hostname,
            version=w.version,
            cpu_percent=usage.cpu_percent if usage else None,
            memory_used=usage.memory_used_bytes if usage else None,
            memory_total=usage.memory_total_bytes if usage else None,
            gpu_model=(w.gpu.model or None) if w.HasField("gpu") else None,
            cordoned=w.cordoned,
            drain_deadline=_time(w, "drain_deadline"),
            attributes=_frozen_map(w.attributes),
        )


@dataclass(frozen=True)
class LogLine:
    """One line of a task's output.

    Attributes:
        text: the line, without its newline (decoded as UTF-8; undecodable bytes become
            U+FFFD).
        stream: stdout, stderr, or cloudai's own (system).
        time: when the worker read it (the time of the chunk the line began in).
        attempt: the attempt that wrote it (1 for the first; 0 for cloudai's markers).
        seq: the position of its last chunk in the task's log (for resuming).
    """

    text: str
    stream: LogStream
    time: datetime | None
    attempt: int
    seq: int


@dataclass(frozen=True)
class Stats:
    """Queue counts.

    Attributes:
        counts: tasks by status (every status, 0 when none).
        oldest_queued_at: when the oldest queued task was enqueued, if any is queued.
        finished_last_minute: tasks that ended in the last minute.
    """

    counts: Mapping[TaskStatus, int] = field(hash=False)
    oldest_queued_at: datetime | None
    finished_last_minute: int

    def __getitem__(self, status: TaskStatus | str) -> int:
        """Tasks in ``status`` (``stats["queued"]``)."""
        return self.counts.get(TaskStatus.parse(status), 0)

    @property
    def total(self) -> int:
        """Tasks in every status."""
        return sum(self.counts.values())

    @classmethod
    def from_pb(cls, r: client_pb2.QueueStatsResponse) -> Stats:
        counts: dict[TaskStatus, int] = {s: 0 for s in TaskStatus if s is not TaskStatus.UNKNOWN}
        for c in r.counts:
            s = TaskStatus.from_pb(c.status)
            counts[s] = counts.get(s, 0) + c.count
        return cls(
            counts=MappingProxyType(counts),
            oldest_queued_at=_time(r, "oldest_queued_at"),
            finished_last_minute=r.finished_last_minute,
        )
