""":class:`LearnedAgent`: schedules by run times learned from the tasks that finished.

The model (:class:`RuntimeModel`) is a running mean and spread (Welford's algorithm) of
the run time of each *kind* of task, its key the image and command (or the value of a
label the user names, ``--key-label cloudai.kind``). A kind never seen is predicted at
the mean of every run seen, or at ``default_runtime`` before anything finished. It
learns from tasks the agent sees leave the workers: each one that succeeded is read back
(``Client.get``, or a page of ``Client.tasks(status="succeeded")`` when many ended at
once) and its last attempt's ``finished_at - started_at`` is added; at start it reads
the last ``history`` succeeded tasks.

Each round, :func:`plan` (pure, no IO) orders the queue by priority, then shortest
predicted run first (a task queued longer than ``starve_after`` goes ahead, oldest first),
and places each task on the worker it fits best by free CPU, memory and GPUs, taking its
request off that worker's free capacity so one decision never over-commits. The oldest
*large* task (one asking at least ``large_fraction`` of the biggest worker's CPU, memory
or GPUs), once it has waited ``reserve_after`` (by default its own predicted run time),
goes first when it fits; when it does not, one worker is reserved for it (the one
predicted to have room soonest, kept from round to round), and only tasks predicted
(mean + ``backfill_sigma`` × spread, of a kind seen) to end before then may use that
worker meanwhile. So short tasks do not wait behind long ones, and large ones are not
starved by a stream of small ones filling every gap.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .agent import Agent
from .scheduling import (
    MIN_CPU_MILLIS,
    MIN_MEMORY_BYTES,
    Assignment,
    AssignmentResult,
    Capacity,
    ClusterState,
    Placer,
    QueuedTask,
    schedulable,
)
from .client import Client
from .enums import TaskStatus
from .errors import NotFound
from .models import Task, TaskSpec

#: At most this many tasks are read one by one (``Client.get``) per batch; more are
#: looked for in one page of ``Client.tasks`` first.
FEW = 8


@dataclass
class RunStats:
    """Welford's running mean and variance of one kind's run times (seconds)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    @property
    def variance(self) -> float:
        """The sample variance (0 with fewer than two runs)."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)


@dataclass(frozen=True)
class Prediction:
    """A predicted run time (seconds): ``mean`` and spread ``std``, from ``samples`` runs
    of the kind itself; ``known`` is False for a fallback (a kind not seen enough)."""

    mean: float
    std: float
    samples: int
    known: bool

    def upper(self, sigma: float) -> float:
        """``mean + sigma * std``: a cautious guess of how long it runs."""
        return self.mean + sigma * self.std


class RuntimeModel:
    """Run times per kind of task.

    Args:
        default_runtime: the prediction (seconds) for a kind not seen while nothing at
            all has been seen, or always with ``fallback="default"``.
        fallback: ``"global"``: a kind not seen is predicted at the mean (and spread) of
            every run; ``"default"``: at ``default_runtime``.
        min_samples: runs of a kind needed before its own mean is used.
    """

    def __init__(
        self, default_runtime: float = 60.0, *, fallback: str = "global", min_samples: int = 1
    ) -> None:
        if fallback not in ("global", "default"):
            raise ValueError(f"fallback must be 'global' or 'default', not {fallback!r}")
        self.default_runtime = default_runtime
        self.fallback = fallback
        self.min_samples = max(min_samples, 1)
        self.kinds: dict[str, RunStats] = {}
        self.all = RunStats()

    def observe(self, key: str, seconds: float) -> None:
        """Adds one finished run of kind ``key``."""
        seconds = max(seconds, 0.0)
        self.kinds.setdefault(key, RunStats()).add(seconds)
        self.all.add(seconds)

    def predict(self, key: str) -> Prediction:
        s = self.kinds.get(key)
        if s is not None and s.n >= self.min_samples:
            return Prediction(s.mean, s.std, s.n, True)
        n = s.n if s is not None else 0
        if self.fallback == "global" and self.all.n > 0:
            return Prediction(self.all.mean, self.all.std, n, False)
        return Prediction(self.default_runtime, 0.0, n, False)


def task_key(spec: TaskSpec, label: str | None = None) -> str:
    """A task's kind: the value of ``label`` when it has that label, else its image and
    command line (entrypoint, then command)."""
    if label is not None and label in spec.labels:
        return f"{label}={spec.labels[label]}"
    return " ".join([spec.image, *(shlex.quote(a) for a in (*spec.entrypoint, *spec.command))])


def run_seconds(task: Task) -> float | None:
    """How long a succeeded task's last attempt ran, if it says."""
    if task.status is not TaskStatus.SUCCEEDED or not task.attempts:
        return None
    a = task.attempts[-1]
    if a.started_at is None or a.finished_at is None:
        return None
    return (a.finished_at - a.started_at).total_seconds()


# ---- the plan: pure ------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A queued task as :func:`plan` sees it: ``created`` in epoch seconds."""

    task: QueuedTask
    created: float
    predicted: Prediction


@dataclass(frozen=True)
class Running:
    """A task holding ``request`` on a worker, predicted to end at ``ends`` (epoch s)."""

    request: Capacity
    ends: float


@dataclass(frozen=True)
class Reservation:
    """A worker kept for a large task that fits nowhere yet; ``at`` is when it is
    predicted to have room (epoch seconds; ``inf`` when not known)."""

    task_id: str
    worker_id: str
    at: float


@dataclass
class Plan:
    """What :func:`plan` decided: the assignments, in order, and the reservation."""

    assignments: list[Assignment] = field(default_factory=list)
    reservation: Reservation | None = None


def is_large(request: Capacity, biggest: Capacity, fraction: float) -> bool:
    """Whether ``request`` asks at least ``fraction`` of the biggest worker's CPU,
    memory or GPUs (any GPU at all when workers have one each)."""
    return (
        (biggest.cpu_millis > 0 and request.cpu_millis >= fraction * biggest.cpu_millis)
        or (biggest.memory > 0 and request.memory >= fraction * biggest.memory)
        or (biggest.gpus > 0 and request.gpus > 0 and request.gpus >= fraction * biggest.gpus)
    )


def room_at(
    request: Capacity, free: Capacity, running: Iterable[Running], now: float
) -> float:
    """When ``request`` is predicted to fit a worker with ``free`` now and ``running``
    tasks ending as predicted: ``now`` if it fits, ``inf`` if it never does."""
    if request.fits_in(free):
        return now
    for r in sorted(running, key=lambda r: r.ends):
        free = free + r.request
        if request.fits_in(free):
            return max(r.ends, now)
    return math.inf


def order(
    candidates: Iterable[Candidate], now: float, starve_after: float, first: str | None = None
) -> list[Candidate]:
    """Priority high to low; within a priority, the task ``first`` (the oldest large
    one), then those queued longer than ``starve_after``, oldest first, then the rest
    shortest predicted run first (ties: oldest first)."""

    def key(c: Candidate) -> tuple[int, int, float, float, int]:
        starving = now - c.created >= starve_after
        return (
            -c.task.priority,
            -1 if c.task.id == first else 0 if starving else 1,
            c.created if starving else c.predicted.mean,
            c.created,
            c.task.position,
        )

    return sorted(candidates, key=key)


def plan(
    placer: Placer,
    candidates: Sequence[Candidate],
    running: Mapping[str, Sequence[Running]],
    now: float,
    *,
    large_fraction: float = 0.5,
    starve_after: float = 120.0,
    backfill_sigma: float = 2.0,
    reserve_after: float | None = None,
    previous: Reservation | None = None,
) -> Plan:
    """Places ``candidates`` on ``placer``'s workers (taking what it places off their
    free capacity), as the module says. ``running`` lists, by worker, the tasks running
    there with their predicted ends; ``previous`` is the last round's reservation, kept
    while its task still waits and its worker can take it. The oldest large task is
    served first (and reserved for) once it has waited ``reserve_after`` seconds (None:
    its predicted run time, at least 1 s, so a large task waits at most about as long
    as it runs, plus the drain); until then it takes its turn by predicted run time."""
    out = Plan()
    if not placer.free:
        return out
    biggest = Capacity(
        max(c.cpu_millis for c in placer.capacity.values()),
        max(c.memory for c in placer.capacity.values()),
        max(c.gpus for c in placer.capacity.values()),
        max(c.disk for c in placer.capacity.values()),
    )
    large = [
        c for c in candidates
        if is_large(c.task.request, biggest, large_fraction)
        and any(c.task.request.fits_in(cap) and _pin_ok(c.task, w)
                for w, cap in placer.capacity.items())
    ]
    head = min(large, key=lambda c: (-c.task.priority, c.created, c.task.position), default=None)
    if head is not None:
        patience = reserve_after if reserve_after is not None else max(head.predicted.mean, 1.0)
        if now - head.created < patience:
            head = None
    first = head.task.id if head is not None else None
    reserved: Reservation | None = None
    for c in order(candidates, now, starve_after, first):
        if c.task.id == first:
            a = placer.best_fit(c.task)
            if a is not None:
                out.assignments.append(a)
            else:
                reserved = out.reservation = _reserve(placer, c, running, now, previous)
            continue
        among = placer.candidates(c.task)
        if reserved is not None and reserved.worker_id in among:
            ends = now + c.predicted.upper(backfill_sigma)
            ok = c.predicted.known and math.isfinite(reserved.at) and ends <= reserved.at
            if not ok:
                among.remove(reserved.worker_id)
        a = placer.best_fit(c.task, among)
        if a is not None:
            out.assignments.append(a)
    return out


def _pin_ok(t: QueuedTask, worker_id: str) -> bool:
    return t.worker is None or t.worker == worker_id


def _reserve(
    placer: Placer,
    head: Candidate,
    running: Mapping[str, Sequence[Running]],
    now: float,
    previous: Reservation | None,
) -> Reservation:
    req = head.task.request
    able = [
        w for w, cap in placer.capacity.items() if req.fits_in(cap) and _pin_ok(head.task, w)
    ]
    at = {w: room_at(req, placer.free[w], running.get(w, ()), now) for w in able}
    if previous is not None and previous.task_id == head.task.id and previous.worker_id in at:
        w = previous.worker_id
    else:
        def rank(w: str) -> tuple[float, int, int, str]:
            short = req - placer.free[w]
            return (at[w], short.cpu_millis, short.memory, w)

        w = min(able, key=rank)
    return Reservation(head.task.id, w, at[w])


# ---- the agent -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    key: str
    created: float
    request: Capacity


@dataclass
class _Run:
    key: str
    started: float
    request: Capacity


class LearnedAgent(Agent):
    """Learned run times, shortest predicted first, a reservation for the oldest large
    task (see the module). Keyword arguments besides these go to :class:`Agent`.

    Args:
        key_label: a label naming a task's kind; tasks without it (and with
            ``None``) are keyed by image and command.
        default_runtime: seconds predicted before anything has finished.
        fallback: ``"global"`` or ``"default"`` (:class:`RuntimeModel`).
        min_samples: runs of a kind before its own mean is trusted.
        large_fraction: the share of the biggest worker's CPU, memory or GPUs that
            makes a task large.
        starve_after: seconds after which a queued task goes ahead of shorter ones.
        backfill_sigma: how many spreads above its mean a task must still end before a
            reservation to use the reserved worker.
        reserve_after: seconds the oldest large task waits before it goes first and
            gets a reservation (None: its predicted run time, at least 1 s).
        history: succeeded tasks read at start to warm the model (0: none).
    """

    def __init__(
        self,
        client: Client,
        *,
        key_label: str | None = None,
        default_runtime: float = 60.0,
        fallback: str = "global",
        min_samples: int = 1,
        large_fraction: float = 0.5,
        starve_after: float = 120.0,
        backfill_sigma: float = 2.0,
        reserve_after: float | None = None,
        history: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(client, **kwargs)
        self.model = RuntimeModel(default_runtime, fallback=fallback, min_samples=min_samples)
        self.key_label = key_label
        self.large_fraction = large_fraction
        self.starve_after = starve_after
        self.backfill_sigma = backfill_sigma
        self.reserve_after = reserve_after
        self.history = history
        self.reservation: Reservation | None = None
        self._warm = history <= 0
        self._known: dict[str, _Known] = {}
        self._running: dict[str, _Run] = {}

    def key(self, spec: TaskSpec) -> str:
        return task_key(spec, self.key_label)

    def decide(self, state: ClusterState) -> list[Assignment]:
        now = time.time()
        if not self._warm:
            for t in self.client.tasks(status="succeeded", limit=self.history, page_size=500):
                self._learn_from(t)
            self._warm = True
        self._track(state, now)
        missing = [q.id for q in state.queued if q.id not in self._known]
        for t in self._read(missing, "queued").values():
            self._remember(t)
        candidates = [
            Candidate(q, k.created, self.model.predict(k.key))
            for q in state.queued if (k := self._known.get(q.id)) is not None
        ]
        running: dict[str, list[Running]] = {}
        for w in state.workers:
            if schedulable(w):
                running[w.id] = [
                    Running(r.request, r.started + self.model.predict(r.key).mean)
                    for tid in w.running if (r := self._running.get(tid)) is not None
                ]
        p = plan(
            Placer(state), candidates, running, now,
            large_fraction=self.large_fraction, starve_after=self.starve_after,
            backfill_sigma=self.backfill_sigma, reserve_after=self.reserve_after,
            previous=self.reservation,
        )
        self.reservation = p.reservation
        for a in p.assignments:
            k = self._known[a.task_id]
            self._running[a.task_id] = _Run(k.key, now, k.request)
        live = {q.id for q in state.queued} | set(self._running)
        for tid in [t for t in self._known if t not in live]:
            del self._known[tid]
        return p.assignments

    def on_result(self, result: AssignmentResult) -> None:
        if not result.accepted:
            self._running.pop(result.task_id, None)

    def _track(self, state: ClusterState, now: float) -> None:
        """Learns from the tasks that left the workers since the last round, and notes
        the ones that appeared there (placed by someone else, or before a restart)."""
        on = {tid for w in state.workers for tid in w.running}
        gone = [tid for tid in self._running if tid not in on]
        for t in self._read(gone, "succeeded").values():
            self._learn_from(t)
        for tid in gone:
            del self._running[tid]
        new = [tid for tid in on if tid not in self._running]
        for t in self._read(new, "assigned,running").values():
            if t.ended:
                continue
            self._remember(t)
            a = t.attempts[-1] if t.attempts else None
            at = (a.started_at or a.assigned_at) if a is not None else None
            started = at.timestamp() if at is not None else now
            k = self._known[t.id]
            self._running[t.id] = _Run(k.key, started, k.request)

    def _learn_from(self, t: Task) -> None:
        s = run_seconds(t)
        if s is not None:
            self.model.observe(self.key(t.spec), s)

    def _remember(self, t: Task) -> None:
        created = t.created_at.timestamp() if t.created_at is not None else time.time()
        self._known[t.id] = _Known(self.key(t.spec), created, _reserved(t.spec))

    def _read(self, ids: Sequence[str], status: str) -> dict[str, Task]:
        """The tasks of ``ids`` (those that still exist): one page of ``tasks(status)``
        when there are many, then one ``get`` each for the rest."""
        want = set(ids)
        found: dict[str, Task] = {}
        if len(want) > FEW:
            size = min(max(4 * len(want), 100), 1000)
            for t in self.client.tasks(status=status, page_size=size, limit=size):
                if t.id in want:
                    found[t.id] = t
                    if len(found) == len(want):
                        break
        for tid in want - set(found):
            try:
                found[tid] = self.client.get(tid)
            except NotFound:
                pass
        return found


def _reserved(spec: TaskSpec) -> Capacity:
    """What the master reserves for ``spec`` (its minimums applied)."""
    return Capacity(
        round(spec.cpu * 1000) if spec.cpu else MIN_CPU_MILLIS,
        spec.memory or MIN_MEMORY_BYTES,
        spec.gpus,
        0,
    )


__all__ = [
    "Candidate",
    "LearnedAgent",
    "Plan",
    "Prediction",
    "Reservation",
    "RunStats",
    "RuntimeModel",
    "Running",
    "is_large",
    "order",
    "plan",
    "room_at",
    "run_seconds",
    "task_key",
]
