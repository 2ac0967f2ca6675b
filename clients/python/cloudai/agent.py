"""Scheduling agents: programs that place cloudai's queued tasks instead of the master's
built-in dispatcher (run the master with ``--agent-only``).

:class:`Agent` is the loop, written once: read the cluster (``AgentService.
FetchClusterState``), ask :meth:`Agent.decide` for assignments, send them
(``SubmitAssignments``), act on each answer by its :class:`Refusal`, back off with jitter
when the master cannot be reached, and stop cleanly on SIGTERM or SIGINT. A subclass
writes only ``decide``::

    from cloudai import Client
    from cloudai.agent import Agent, Assignment, ClusterState, Placer

    class FirstFit(Agent):
        def decide(self, state: ClusterState) -> list[Assignment]:
            placer = Placer(state)
            return [a for t in state.queued if (a := placer.first_fit(t)) is not None]

    FirstFit(Client("http://127.0.0.1:50051", token="cai_...")).run()

The master checks every assignment as it checks its own (the task still queued and past
its retry backoff, the worker healthy, connected and not cordoned, the pin respected, the
request within the worker's free capacity) and answers each alone, so an agent can be
wrong or stale without harm: nothing is over-committed, and a task is never placed twice.
An agent keeps no state the master needs; killed and started again, it carries on.

Built in: :class:`GreedyAgent` (dispatch order, best fit: what the dispatcher does) and
:class:`cloudai.learned.LearnedAgent` (learned run times, shortest first, a reservation
for the oldest large task). ``python -m cloudai.agent --help`` runs either
(:mod:`cloudai.agent_cli`). The types an agent sees and proposes are in
:mod:`cloudai.scheduling`, re-exported here.
"""

from __future__ import annotations

import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from ._pb import agent_pb2, agent_pb2_grpc
from ._transport import Master
from .client import Client
from .errors import CloudaiError, InvalidArgument, PermissionDenied, Unauthenticated
from .models import Worker
from .scheduling import (
    MIN_CPU_MILLIS,
    MIN_MEMORY_BYTES,
    Assignment,
    AssignmentResult,
    Capacity,
    ClusterState,
    Constraint,
    Placer,
    Preference,
    QueuedTask,
    Refusal,
    schedulable,
)

log = logging.getLogger("cloudai.agent")


class Backoff:
    """Exponential backoff with full jitter: the n-th delay in a row is uniform in
    ``[0, min(cap, base * 2**n)]``, so that many agents (or restarts) do not retry in step.
    """

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        delay = self._rng.uniform(0, min(self.cap, self.base * 2**self.failures))
        self.failures = min(self.failures + 1, 30)
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Round:
    """What one :meth:`Agent.step` did.

    Attributes:
        state: the cluster as ``decide`` saw it (``None`` when it could not be read).
        results: the master's answer to each assignment sent.
        error: the error that ended the round early, if any.
    """

    state: ClusterState | None = None
    results: list[AssignmentResult] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.results)


#: How often a sleeping loop looks for a stopping signal (seconds).
SIGNAL_POLL = 0.05

#: Errors no retry fixes: the loop stops and raises them.
FATAL = (Unauthenticated, PermissionDenied, InvalidArgument)


class Agent:
    """The agent loop; subclasses implement :meth:`decide`.

    Args:
        client: the master (or masters) to schedule for; the agent API needs an admin's
            token when auth is on.
        interval: seconds between rounds while nothing could be placed (the master has
            no push for agents: the agent polls). After a round that placed something or
            met a stale view the next one starts at once.
        max_queued: queued tasks each round reads (the master caps it at 10 000).
        hold: seconds a refused task or worker is left out of the state given to
            ``decide`` (see :class:`Refusal`).
        backoff_base, backoff_max: the backoff after a failed round (seconds).
        seed: seeds the backoff's jitter (tests).
    """

    def __init__(
        self,
        client: Client,
        *,
        interval: float = 0.2,
        max_queued: int = 1000,
        hold: float = 2.0,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        seed: int | None = None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.max_queued = max_queued
        self.hold = hold
        self.backoff = Backoff(backoff_base, backoff_max, random.Random(seed))
        self._stop = threading.Event()
        self._signalled = False
        self._held_tasks: dict[str, float] = {}
        self._held_workers: dict[str, float] = {}
        #: Results counted by refusal (``"accepted"`` for the accepted ones).
        self.counts: dict[str, int] = {}
        #: Rounds run, and the seconds they took in all (read, decide, submit).
        self.rounds = 0
        self.round_seconds = 0.0

    # ---- what a subclass writes -----------------------------------------------------

    def decide(self, state: ClusterState) -> Sequence[Assignment]:
        """The assignments to propose for ``state``. Each is checked by the master on
        its own; propose each task at most once (a second is refused as not queued)."""
        raise NotImplementedError

    def on_result(self, result: AssignmentResult) -> None:
        """Called for each answer, after the loop's own handling. Does nothing here."""

    # ---- the loop -------------------------------------------------------------------

    def stop(self) -> None:
        """Asks :meth:`run` to return after the round in progress (thread- and
        signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called or a stopping signal came."""
        return self._signalled or self._stop.is_set()

    def _sleep(self, seconds: float) -> None:
        """Sleeps ``seconds``, or less when asked to stop (signals are seen within
        :data:`SIGNAL_POLL` s: the handler takes no lock, so it only sets a flag)."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, SIGNAL_POLL))

    def run(self, *, handle_signals: bool = True) -> None:
        """Runs rounds until :meth:`stop` (or SIGTERM/SIGINT, when ``handle_signals`` and
        on the main thread: the round in progress ends, then ``run`` returns). Errors
        in a round are logged and retried with backoff, except :data:`FATAL` ones
        (a bad token, a role that may not), which are raised."""
        restore: list[tuple[int, Any]] = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                restore.append((sig, signal.signal(sig, self._on_signal)))
        self._signalled = False
        log.info("agent %s started against %s", type(self).__name__, self.client.url)
        try:
            while not self.stopping:
                r = self.step()
                if r.error is not None:
                    if isinstance(r.error, FATAL):
                        raise r.error
                    delay = self.backoff.next()
                    log.warning("agent round failed (retrying in %.2f s): %s", delay, r.error)
                    self._sleep(delay)
                    continue
                self.backoff.reset()
                if not self._busy(r):
                    self._sleep(self.interval)
        finally:
            if self._signalled:
                log.info("agent got SIGTERM or SIGINT: stopping")
            for signum, old in restore:
                signal.signal(signum, old)
            per = self.round_seconds / self.rounds * 1000 if self.rounds else 0.0
            log.info("agent stopped: %s; %d rounds, %.1f ms each on average",
                     _summary(self.counts), self.rounds, per)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = True

    def _busy(self, r: Round) -> bool:
        """Whether the next round should start at once: this one placed something or
        learned its view was stale."""
        return any(x.accepted or x.refusal is Refusal.DOES_NOT_FIT for x in r.results)

    def step(self) -> Round:
        """One round: read, decide, submit, handle. Never raises for a failed call or a
        failing ``decide``: the error is in the returned :class:`Round`."""
        r = Round()
        t0 = time.monotonic()
        try:
            r.state = self._held_back(self.fetch())
            assignments = list(self.decide(r.state))
            if assignments:
                r.results = self.submit(assignments)
        except CloudaiError as e:
            r.error = e
        except Exception as e:  # noqa: BLE001 - a subclass's bug must not end the loop
            log.exception("decide failed")
            r.error = e
        for res in r.results:
            self._handle(res)
            self.on_result(res)
        took = time.monotonic() - t0
        self.rounds += 1
        self.round_seconds += took
        if log.isEnabledFor(logging.DEBUG):
            log.debug("round: %d queued, %d submitted, %d accepted in %.1f ms",
                      len(r.state.queued) if r.state else -1, len(r.results), r.accepted,
                      took * 1000)
        if any(x.refusal is Refusal.TRANSIENT for x in r.results) and r.error is None:
            r.error = CloudaiError("the master could not store some assignments", None, None)
        return r

    def fetch(self) -> ClusterState:
        """``FetchClusterState``, as a :class:`ClusterState` (nothing held back)."""
        req = agent_pb2.FetchClusterStateRequest(max_queued=self.max_queued)
        s = self._call(lambda m: _stub(m).FetchClusterState(req, **self._opts()))
        return ClusterState(
            workers=tuple(Worker.from_pb(w) for w in s.workers),
            queued=tuple(QueuedTask.from_pb(q, i) for i, q in enumerate(s.queued)),
            fetched_at=datetime.now(timezone.utc),
        )

    def submit(self, assignments: Sequence[Assignment]) -> list[AssignmentResult]:
        """``SubmitAssignments``: the master's answer to each, in order. Safe to resend:
        a task assigned already is refused as not queued."""
        req = agent_pb2.SubmitAssignmentsRequest(
            assignments=[
                agent_pb2.Assignment(task_id=a.task_id, worker_id=a.worker_id)
                for a in assignments
            ]
        )
        resp = self._call(lambda m: _stub(m).SubmitAssignments(req, **self._opts()))
        return [AssignmentResult.from_pb(x) for x in resp.results]

    def _opts(self) -> dict[str, Any]:
        return {"metadata": self.client._md(), "timeout": self.client._timeout}

    def _call(self, fn: Callable[[Master], Any]) -> Any:
        return self.client._t.call(fn, idempotent=True)

    def _held_back(self, state: ClusterState) -> ClusterState:
        now = time.monotonic()
        for held in (self._held_tasks, self._held_workers):
            for k in [k for k, until in held.items() if until <= now]:
                del held[k]
        if not self._held_tasks and not self._held_workers:
            return state
        return ClusterState(
            workers=tuple(w for w in state.workers if w.id not in self._held_workers),
            queued=tuple(q for q in state.queued if q.id not in self._held_tasks),
            fetched_at=state.fetched_at,
        )

    def _handle(self, r: AssignmentResult) -> None:
        key = "accepted" if r.refusal is None else r.refusal.value
        self.counts[key] = self.counts.get(key, 0) + 1
        if r.refusal is None:
            log.debug("assigned %s to %s", r.task_id, r.worker_id)
            return
        log.info("assignment of %s to %s refused (%s): %s", r.task_id, r.worker_id,
                 r.refusal.value, r.reason)
        until = time.monotonic() + self.hold
        if r.refusal is Refusal.WORKER_UNAVAILABLE:
            self._held_workers[r.worker_id] = until
        elif r.refusal in (Refusal.PINNED_ELSEWHERE, Refusal.RETRY_BACKOFF,
                           Refusal.CONSTRAINT_UNMET, Refusal.UNKNOWN):
            self._held_tasks[r.task_id] = until
        # NOT_QUEUED / NOT_FOUND: the next state will not list it. DOES_NOT_FIT: the next
        # round's fresh state decides again. TRANSIENT: the loop backs off.

    def held(self) -> tuple[set[str], set[str]]:
        """The tasks and the workers held back now."""
        now = time.monotonic()
        return (
            {k for k, u in self._held_tasks.items() if u > now},
            {k for k, u in self._held_workers.items() if u > now},
        )


def _stub(m: Master) -> agent_pb2_grpc.AgentServiceStub:
    return agent_pb2_grpc.AgentServiceStub(m.channel)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing submitted"


class GreedyAgent(Agent):
    """Places tasks in the master's dispatch order (priority, then oldest), each on the
    worker it fits best, skipping those that fit nowhere now: what the built-in
    dispatcher does, as an agent (a baseline, and the default of ``python -m
    cloudai.agent``)."""

    def decide(self, state: ClusterState) -> list[Assignment]:
        placer = Placer(state)
        return [a for t in state.queued if (a := placer.best_fit(t)) is not None]


__all__ = [
    "FATAL",
    "MIN_CPU_MILLIS",
    "MIN_MEMORY_BYTES",
    "Agent",
    "Assignment",
    "AssignmentResult",
    "Backoff",
    "Capacity",
    "ClusterState",
    "Constraint",
    "GreedyAgent",
    "Placer",
    "Preference",
    "QueuedTask",
    "Refusal",
    "Round",
    "schedulable",
]


if __name__ == "__main__":
    # Run the package's own module, not this __main__ copy, so classes are one.
    from cloudai.agent_cli import main

    sys.exit(main())
