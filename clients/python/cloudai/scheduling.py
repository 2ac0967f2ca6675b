"""What a scheduling agent sees and proposes (:mod:`cloudai.agent` runs the loop): the
cluster state, queued tasks, resources in the master's integer units, assignments and
the master's answers to them (each refusal classified), and :class:`Placer`, which fits
tasks to workers' free capacity without over-committing within one decision. No IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from ._pb import agent_pb2, types_pb2
from .constraints import Constraint, Op, Preference
from .enums import WorkerHealth
from .models import Resources, Worker

#: The master's smallest reservation of a task that asks for no CPU (millicores) or no
#: memory (bytes): ``FetchClusterState`` reports requests with these already applied.
MIN_CPU_MILLIS = 100
MIN_MEMORY_BYTES = 256 << 20


@dataclass(frozen=True, order=True)
class Capacity:
    """Resources in the master's own integer units, so that sums and fits are exact:
    CPU in millicores, memory and disk in bytes, GPUs."""

    cpu_millis: int = 0
    memory: int = 0
    gpus: int = 0
    disk: int = 0

    @classmethod
    def of_pb(cls, r: types_pb2.Resources) -> Capacity:
        return cls(r.cpu_millis, r.memory_bytes, r.gpus, r.disk_bytes)

    @classmethod
    def of(cls, r: Resources) -> Capacity:
        """From the client's :class:`cloudai.Resources` (CPU in cores)."""
        return cls(round(r.cpu * 1000), r.memory, r.gpus, r.disk)

    def fits_in(self, free: Capacity) -> bool:
        """Whether this request fits in ``free`` on every dimension (the master's rule)."""
        return (
            self.cpu_millis <= free.cpu_millis
            and self.memory <= free.memory
            and self.gpus <= free.gpus
            and self.disk <= free.disk
        )

    def __add__(self, o: Capacity) -> Capacity:
        return Capacity(
            self.cpu_millis + o.cpu_millis, self.memory + o.memory, self.gpus + o.gpus,
            self.disk + o.disk,
        )

    def __sub__(self, o: Capacity) -> Capacity:
        """Floored at zero on each dimension."""
        return Capacity(
            max(self.cpu_millis - o.cpu_millis, 0), max(self.memory - o.memory, 0),
            max(self.gpus - o.gpus, 0), max(self.disk - o.disk, 0),
        )


def attributes_of(w: Worker) -> dict[str, str]:
    """What constraints see of ``w``: its labels and built-in attributes (a built-in wins
    over a label of the same name, which workers refuse anyway)."""
    return {**w.labels, **w.attributes}


@dataclass(frozen=True)
class QueuedTask:
    """A task waiting to be placed, as ``FetchClusterState`` reports it.

    Attributes:
        id: the task's id (UUIDv7: ids sort by creation).
        request: what the master will reserve for it (minimums applied).
        priority: higher first.
        worker: the worker it is pinned to, if any.
        image: its image reference.
        position: its place in the master's dispatch order (priority high to low, then
            oldest first), from 0.
        constraints: what a worker's attributes must meet (the master refuses
            an assignment that does not).
        prefer: preferences: workers that match more of them go first.
    """

    id: str
    request: Capacity
    priority: int
    worker: str | None
    image: str
    position: int
    constraints: tuple[Constraint, ...] = ()
    prefer: tuple[Preference, ...] = ()

    @classmethod
    def from_pb(cls, q: agent_pb2.QueuedTask, position: int) -> QueuedTask:
        return cls(
            id=q.task_id,
            request=Capacity.of_pb(q.request),
            priority=q.priority,
            worker=q.pinned_worker if q.HasField("pinned_worker") else None,
            image=q.image,
            position=position,
            constraints=tuple(Constraint.from_pb(c) for c in q.constraints),
            prefer=tuple(Preference(p.key, p.value) for p in q.prefer),
        )


def schedulable(w: Worker) -> bool:
    """Whether the master may give ``w`` new work: healthy, not cordoned, not draining.
    (A worker still reconciling after a reconnect is refused too; the master says so.)"""
    return w.health is WorkerHealth.HEALTHY and not w.cordoned and w.drain_deadline is None


@dataclass(frozen=True)
class ClusterState:
    """What one ``FetchClusterState`` returned, less what the agent holds back (tasks
    and workers recently refused for a reason that will not change at once).

    Attributes:
        workers: every worker the leader knows, by id.
        queued: the eligible queued tasks in dispatch order (at most ``max_queued``).
        fetched_at: when it was read (UTC).
    """

    workers: tuple[Worker, ...]
    queued: tuple[QueuedTask, ...]
    fetched_at: datetime

    def schedulable(self) -> list[Worker]:
        """The workers that may get new work (:func:`schedulable`)."""
        return [w for w in self.workers if schedulable(w)]


@dataclass(frozen=True)
class Assignment:
    """A proposal: run ``task_id`` on ``worker_id``."""

    task_id: str
    worker_id: str


class Refusal(str, Enum):
    """Why the master refused an assignment, read from its code (``AssignmentCode``;
    from its reason's words for a master that sends no code), and what the loop does
    about it."""

    #: The task is no longer queued (placed by another call, cancelled, ended): forget it.
    NOT_QUEUED = "not_queued"
    #: No task has that id (or it is malformed): forget it.
    NOT_FOUND = "not_found"
    #: The request does not fit the worker's free capacity now: the agent's view was
    #: stale; the next round reads the cluster again at once.
    DOES_NOT_FIT = "does_not_fit"
    #: The worker is unknown, not healthy and connected, cordoned or reconciling: it is
    #: held back for ``hold`` seconds.
    WORKER_UNAVAILABLE = "worker_unavailable"
    #: The task is pinned to another worker: it is offered again (``Placer`` respects
    #: pins) after ``hold`` seconds.
    PINNED_ELSEWHERE = "pinned_elsewhere"
    #: The task is waiting for its retry backoff: held back for ``hold`` seconds.
    RETRY_BACKOFF = "retry_backoff"
    #: The worker fails one of the task's constraints: the task is held back for
    #: ``hold`` seconds.
    CONSTRAINT_UNMET = "constraint_unmet"
    #: The store failed or this master lost its lease: the loop backs off.
    TRANSIENT = "transient"
    #: A reason this client does not know: held back for ``hold`` seconds.
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, code: int, reason: str) -> Refusal:
        """The refusal an ``AssignmentCode`` names; the reason's words when the master
        sent none (``UNSPECIFIED``: an older master)."""
        return _CODES.get(code) or cls.classify(reason)

    @classmethod
    def classify(cls, reason: str) -> Refusal:
        """The refusal a master's reason string names."""
        r = reason.lower()
        for words, code in _REASONS:
            if any(w in r for w in words):
                return code
        return cls.UNKNOWN


_C = agent_pb2
_CODES: dict[int, Refusal] = {
    _C.ASSIGNMENT_CODE_UNKNOWN_TASK: Refusal.NOT_FOUND,
    _C.ASSIGNMENT_CODE_NOT_QUEUED: Refusal.NOT_QUEUED,
    _C.ASSIGNMENT_CODE_IN_BACKOFF: Refusal.RETRY_BACKOFF,
    # Being placed right now (by the master's dispatcher or an earlier call): it will not
    # be queued by the next state.
    _C.ASSIGNMENT_CODE_HELD_BY_DISPATCHER: Refusal.NOT_QUEUED,
    _C.ASSIGNMENT_CODE_UNKNOWN_WORKER: Refusal.WORKER_UNAVAILABLE,
    _C.ASSIGNMENT_CODE_WORKER_UNSCHEDULABLE: Refusal.WORKER_UNAVAILABLE,
    _C.ASSIGNMENT_CODE_DOES_NOT_FIT: Refusal.DOES_NOT_FIT,
    _C.ASSIGNMENT_CODE_PINNED_ELSEWHERE: Refusal.PINNED_ELSEWHERE,
    _C.ASSIGNMENT_CODE_CONSTRAINT_UNMET: Refusal.CONSTRAINT_UNMET,
    _C.ASSIGNMENT_CODE_UNAVAILABLE: Refusal.TRANSIENT,
}

# Checked in order: the first match wins (master/src/agent_service.rs, placement.rs and
# queue/src/error.rs word them).
_REASONS: tuple[tuple[tuple[str, ...], Refusal], ...] = (
    (("not queued",), Refusal.NOT_QUEUED),
    (("retry backoff", "retry's backoff"), Refusal.RETRY_BACKOFF),
    (("pinned to",), Refusal.PINNED_ELSEWHERE),
    (("does not fit", "has room"), Refusal.DOES_NOT_FIT),
    (("unknown worker", "not healthy", "cordon", "reconcil", "drain"),
     Refusal.WORKER_UNAVAILABLE),
    (("not found", "invalid task id", "invalid id", "invalid uuid", "invalid"),
     Refusal.NOT_FOUND),
    (("store", "fenced", "lease", "epoch", "timed out", "unavailable"), Refusal.TRANSIENT),
)


@dataclass(frozen=True)
class AssignmentResult:
    """The master's answer to one :class:`Assignment`.

    Attributes:
        accepted: the task is assigned (stored, and sent to the worker).
        reason: the master's words when refused, else ``""``.
        refusal: ``reason`` classified; ``None`` when accepted.
    """

    task_id: str
    worker_id: str
    accepted: bool
    reason: str
    refusal: Refusal | None

    @classmethod
    def from_pb(cls, r: agent_pb2.AssignmentResult) -> AssignmentResult:
        return cls(
            task_id=r.task_id,
            worker_id=r.worker_id,
            accepted=r.accepted,
            reason=r.reason,
            refusal=None if r.accepted else Refusal.of(r.code, r.reason),
        )


class Placer:
    """Free capacity during one decision: each placement subtracts its request, so a
    decision never over-commits a worker. Only schedulable workers are offered."""

    free: dict[str, Capacity]
    capacity: dict[str, Capacity]
    attributes: dict[str, Mapping[str, str]]

    def __init__(self, state: ClusterState | Iterable[Worker]) -> None:
        workers = state.schedulable() if isinstance(state, ClusterState) else [
            w for w in state if schedulable(w)
        ]
        self.free = {w.id: Capacity.of(w.free) for w in workers}
        self.capacity = {w.id: Capacity.of(w.capacity) for w in workers}
        self.attributes = {w.id: attributes_of(w) for w in workers}

    @classmethod
    def of(
        cls,
        capacity: Mapping[str, Capacity],
        free: Mapping[str, Capacity] | None = None,
        attributes: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Placer:
        """A placer over workers given by id: their capacity, their free capacity (all
        of it when ``free`` is None or leaves a worker out) and their attributes (none
        when ``attributes`` leaves a worker out)."""
        p = cls(())
        p.capacity = dict(capacity)
        p.free = {w: (free or {}).get(w, c) for w, c in capacity.items()}
        p.attributes = {w: (attributes or {}).get(w, {}) for w in capacity}
        return p

    def fits(self, task: QueuedTask, worker_id: str) -> bool:
        """Whether ``task`` may go to ``worker_id`` now (pin, constraints, free
        capacity)."""
        if task.worker is not None and task.worker != worker_id:
            return False
        free = self.free.get(worker_id)
        if free is None or not task.request.fits_in(free):
            return False
        attrs = self.attributes.get(worker_id, {})
        return all(c.matches(attrs) for c in task.constraints)

    def preferred(self, task: QueuedTask, worker_id: str) -> int:
        """How many of ``task``'s preferences ``worker_id`` matches."""
        attrs = self.attributes.get(worker_id, {})
        return sum(1 for p in task.prefer if p.matches(attrs))

    def candidates(self, task: QueuedTask) -> list[str]:
        """The workers ``task`` fits now, by id."""
        return sorted(w for w in self.free if self.fits(task, w))

    def take(self, task: QueuedTask, worker_id: str) -> Assignment:
        """Places ``task`` on ``worker_id`` (which it must fit)."""
        if not self.fits(task, worker_id):
            raise ValueError(f"task {task.id} does not fit worker {worker_id}")
        self.free[worker_id] = self.free[worker_id] - task.request
        return Assignment(task.id, worker_id)

    def first_fit(self, task: QueuedTask) -> Assignment | None:
        """``task`` on the first worker (by id) it fits that matches most of its
        preferences, or None."""
        c = self.candidates(task)
        if not c:
            return None
        return self.take(task, min(c, key=lambda w: (-self.preferred(task, w), w)))

    def best_fit(self, task: QueuedTask, among: Iterable[str] | None = None) -> Assignment | None:
        """``task`` on the worker that matches most of its preferences and, among those,
        leaves least room (CPU, then memory, share of capacity; ties to the lowest id),
        or None where it fits nowhere."""
        allowed = set(self.free) if among is None else set(among)
        c = [w for w in self.candidates(task) if w in allowed]
        if not c:
            return None
        return self.take(
            task, min(c, key=lambda w: (-self.preferred(task, w), self.leftover(task, w), w))
        )

    def leftover(self, task: QueuedTask, worker_id: str) -> tuple[float, float]:
        """The share of ``worker_id``'s CPU and memory left free after ``task``."""
        free, cap = self.free[worker_id], self.capacity[worker_id]
        cpu = (free.cpu_millis - task.request.cpu_millis) / max(cap.cpu_millis, 1)
        mem = (free.memory - task.request.memory) / max(cap.memory, 1)
        return cpu, mem


__all__ = [
    "MIN_CPU_MILLIS",
    "MIN_MEMORY_BYTES",
    "Assignment",
    "AssignmentResult",
    "Capacity",
    "ClusterState",
    "Constraint",
    "Op",
    "Preference",
    "Placer",
    "QueuedTask",
    "Refusal",
    "attributes_of",
    "schedulable",
]
