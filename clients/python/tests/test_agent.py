"""Agents against a real master started with ``--agent-only`` and fake-executor workers:
the loop places tasks, refusals are handled by their code, a restarted agent loses
nothing, SIGTERM/SIGINT stop it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pytest

import cloudai
from cloudai.agent import (
    Agent,
    Assignment,
    AssignmentResult,
    ClusterState,
    GreedyAgent,
    Refusal,
)
from cloudai.learned import LearnedAgent

from conftest import QUICK, Master, eventually

CLIENT_DIR = Path(__file__).resolve().parents[1]
#: Longest an agent may take to exit after SIGTERM/SIGINT.
STOP_BOUND = 5.0


def run_ms(ms: int) -> dict[str, str]:
    return {"CLOUDAI_FAKE_RUN_MS": str(ms)}


@pytest.fixture
def agent_master(master: Callable[..., Master]) -> Master:
    """A master whose dispatcher is off, with one fake worker of 2 CPUs and 4 GiB."""
    m = master("--agent-only")
    m.start_worker("w1", "--cpu", "2", "--memory", "4G")
    return m


class Running:
    """An agent's ``run`` on a thread, stopped (and joined) at the end."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.agent.run(handle_signals=False)
        except BaseException as e:  # noqa: BLE001
            self.error = e

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(QUICK)
        assert not self.thread.is_alive(), "the agent did not stop"
        assert self.error is None, self.error


def all_succeeded(c: cloudai.Client, ids: Sequence[str]) -> Callable[[], list[cloudai.Task] | None]:
    def check() -> list[cloudai.Task] | None:
        tasks = [c.get(i) for i in ids]
        failed = [t for t in tasks if t.ended and t.status is not cloudai.TaskStatus.SUCCEEDED]
        assert not failed, f"tasks ended otherwise: {[(t.id, t.status, t.error) for t in failed]}"
        return tasks if all(t.status is cloudai.TaskStatus.SUCCEEDED for t in tasks) else None

    return check


@pytest.mark.parametrize("kind", [GreedyAgent, LearnedAgent])
def test_the_loop_places_tasks_and_they_succeed(agent_master: Master, kind: type[Agent]) -> None:
    with agent_master.client() as c:
        ids = [e.id for e in c.enqueue_many(
            [{"image": "cloudai/busybox:test", "cpu": 0.5, "memory": "256M", "env": run_ms(100),
              "command": ["job", str(i % 3)]} for i in range(12)]
        )]
        # Agent-only: nothing is placed without one.
        assert c.stats()["queued"] == 12
        agent = kind(c, interval=0.05)
        r = Running(agent)
        try:
            tasks = eventually("every task to succeed", all_succeeded(c, ids))
        finally:
            r.stop()
        assert all(len(t.attempts) == 1 and t.worker == "w1" for t in tasks)
        assert agent.counts.get("accepted") == 12, agent.counts
        # Four 0.5-CPU tasks at most at a time on 2 CPUs: never over-committed (a
        # refused one would be counted as does_not_fit).
        assert set(agent.counts) == {"accepted"}, agent.counts
    if isinstance(agent, LearnedAgent):
        # It learned the three kinds from the tasks that finished.
        keys = {k for k, s in agent.model.kinds.items() if s.n > 0}
        assert keys == {f"cloudai/busybox:test job {i}" for i in range(3)}
        assert all(0.05 <= s.mean < 5 for s in agent.model.kinds.values())


class Scripted(Agent):
    """Proposes what a test gives it, once; remembers the states it saw."""

    def __init__(self, client: cloudai.Client) -> None:
        super().__init__(client, hold=60.0)
        self.next: list[Assignment] = []
        self.seen: list[ClusterState] = []
        self.answers: list[AssignmentResult] = []

    def decide(self, state: ClusterState) -> list[Assignment]:
        self.seen.append(state)
        out, self.next = self.next, []
        return out

    def on_result(self, result: AssignmentResult) -> None:
        self.answers.append(result)


def test_refusals_are_handled_by_their_code(agent_master: Master) -> None:
    m = agent_master
    m.start_worker("w2", "--cpu", "1", "--memory", "1G")
    with m.client() as c:
        huge = c.enqueue("cloudai/busybox:test", cpu=8, env=run_ms(50))
        pinned = c.enqueue("cloudai/busybox:test", cpu=0.5, worker="w2", env=run_ms(50))
        twice = c.enqueue("cloudai/busybox:test", cpu=0.5, env=run_ms(50))
        spare = c.enqueue("cloudai/busybox:test", cpu=0.5, env=run_ms(50))
        a = Scripted(c)
        a.next = [
            Assignment(huge.id, "w1"),  # 8 CPUs on a 2-CPU worker
            Assignment(pinned.id, "w1"),  # pinned to w2
            Assignment(twice.id, "w1"),
            Assignment(twice.id, "w1"),  # already assigned by the line above
            Assignment(spare.id, "nowhere"),  # no such worker
            Assignment("0199b6f0-0000-7000-8000-000000000000", "w1"),  # no such task
        ]
        r = a.step()
        assert r.error is None, r.error
        got = [(x.task_id, x.refusal) for x in r.results]
        assert got == [
            (huge.id, Refusal.DOES_NOT_FIT),
            (pinned.id, Refusal.PINNED_ELSEWHERE),
            (twice.id, None),
            (twice.id, Refusal.NOT_QUEUED),
            (spare.id, Refusal.WORKER_UNAVAILABLE),
            ("0199b6f0-0000-7000-8000-000000000000", Refusal.NOT_FOUND),
        ], [(x.task_id, x.reason) for x in r.results]
        assert [x.refusal for x in a.answers] == [x.refusal for x in r.results]
        assert all(x.reason for x in r.results if not x.accepted)
        assert a.counts == {
            "accepted": 1, "does_not_fit": 1, "pinned_elsewhere": 1, "not_queued": 1,
            "worker_unavailable": 1, "not_found": 1,
        }
        # The pinned task and the unknown worker are held back; the next state lacks them.
        assert a.held() == ({pinned.id}, {"nowhere"})
        a.step()
        state = a.seen[-1]
        queued = {q.id for q in state.queued}
        assert pinned.id not in queued and {huge.id, spare.id} <= queued
        assert twice.id not in queued  # it was placed
        assert eventually("the assigned task to succeed", all_succeeded(c, [twice.id]))

        # A task waiting for its retry backoff is refused as such.
        flaky = c.enqueue("cloudai/busybox:test", cpu=0.5, retries=1,
                          env={**run_ms(10), "CLOUDAI_FAKE_EXIT_CODE": "1"})
        a.next = [Assignment(flaky.id, "w1")]
        assert a.step().accepted == 1

        def backing_off() -> cloudai.Task | None:
            t = c.get(flaky.id)
            now = datetime.now(timezone.utc)
            waiting = t.status is cloudai.TaskStatus.QUEUED and t.not_before is not None
            return t if waiting and len(t.attempts) == 1 and t.not_before > now else None

        t = eventually("the first attempt to fail and the retry to wait", backing_off)
        assert t.not_before is not None
        if (t.not_before - datetime.now(timezone.utc)).total_seconds() > 0.1:
            a.next = [Assignment(flaky.id, "w1")]
            res = a.step().results
            assert [x.refusal for x in res] == [Refusal.RETRY_BACKOFF], res


def agent_process(m: Master, dir: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(CLIENT_DIR)}
    err = open(dir / f"agent-{time.monotonic_ns()}.stderr", "wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "cloudai.agent", "--master", m.url, "--interval", "0.05",
             *args],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env, cwd=dir,
        )
    finally:
        err.close()


def output(dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(dir.glob("agent-*.stderr")))


@pytest.fixture
def agent_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "agents"
    d.mkdir()
    yield d


def test_an_agent_restarted_mid_run_loses_nothing(agent_master: Master, agent_dir: Path) -> None:
    with agent_master.client() as c:
        ids = [e.id for e in c.enqueue_many(
            [{"image": "cloudai/busybox:test", "cpu": 0.5, "memory": "128M",
              "env": run_ms(150 + 50 * (i % 4)), "command": ["k", str(i % 4)]}
             for i in range(48)]
        )]
        p = agent_process(agent_master, agent_dir, "--learned")
        try:
            def some_done() -> bool:
                assert p.poll() is None, output(agent_dir)
                s = c.stats()
                return s["succeeded"] >= 6

            eventually("some tasks to succeed", some_done)
            p.kill()  # as a crash: no clean stop
            p.wait(QUICK)
            left = c.stats()["queued"]
            assert left > 0, "the agent finished before it was killed: give it more tasks"
            p = agent_process(agent_master, agent_dir, "--learned")
            tasks = eventually("every task to succeed", all_succeeded(c, ids), timeout=60)
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(QUICK)
        # Each ran exactly once: one attempt, succeeded.
        assert [len(t.attempts) for t in tasks] == [1] * len(ids)
        assert all(t.attempts[0].outcome is cloudai.TaskStatus.SUCCEEDED for t in tasks)
        assert c.stats()["queued"] == 0
        assert p.returncode == 0, output(agent_dir)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_agent_cleanly(
    agent_master: Master, agent_dir: Path, sig: signal.Signals
) -> None:
    with agent_master.client() as c:
        p = agent_process(agent_master, agent_dir, "--learned")
        try:
            t = c.enqueue("cloudai/busybox:test", cpu=0.5, env=run_ms(20))
            eventually("the agent to place a task", all_succeeded(c, [t.id]))
            # Busy: a long queue it cannot place yet (the worker is full).
            c.enqueue_many([{"image": "cloudai/busybox:test", "cpu": 2, "env": run_ms(3000)}
                            for _ in range(5)])
            eventually("a task to run", lambda: c.stats()["running"] >= 1 or None)
            started = time.monotonic()
            p.send_signal(sig)
            code = p.wait(STOP_BOUND + 5)
            took = time.monotonic() - started
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert code == 0, output(agent_dir)
        assert took < STOP_BOUND, f"took {took:.1f} s to stop"
        assert "agent stopped" in output(agent_dir)
        assert "Traceback" not in output(agent_dir)


def test_sigterm_stops_an_agent_backing_off_from_a_dead_master(
    master: Callable[..., Master], agent_dir: Path
) -> None:
    m = master("--agent-only")
    p = agent_process(m, agent_dir)
    try:
        eventually("the agent to start", lambda: "started against" in output(agent_dir))
        m.proc.stop()
        eventually("the agent to back off", lambda: "retrying in" in output(agent_dir))
        started = time.monotonic()
        p.send_signal(signal.SIGTERM)
        code = p.wait(STOP_BOUND + 5)
        took = time.monotonic() - started
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert code == 0, output(agent_dir)
    assert took < STOP_BOUND, f"took {took:.1f} s to stop"


def test_a_token_that_may_not_is_fatal_exit_2(
    master: Callable[..., Master], agent_dir: Path
) -> None:
    m = master("--agent-only", "--require-auth", users={"vera": "viewer"})
    p = agent_process(m, agent_dir, "--token", m.tokens["vera"])
    try:
        code = p.wait(QUICK)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert code == 2, output(agent_dir)
    assert "agent stopped:" in output(agent_dir) and "Traceback" not in output(agent_dir)


def test_the_example_agent_spreads_tasks(agent_master: Master) -> None:
    sys.path.insert(0, str(CLIENT_DIR / "examples"))
    try:
        from spread_agent import SpreadAgent
    finally:
        sys.path.remove(str(CLIENT_DIR / "examples"))
    agent_master.start_worker("w2", "--cpu", "2", "--memory", "4G")
    with agent_master.client() as c:
        ids = [e.id for e in c.enqueue_many(
            [{"image": "cloudai/busybox:test", "cpu": 0.5, "env": run_ms(2000)} for _ in range(4)]
        )]
        r = Running(SpreadAgent(c, interval=0.05))
        try:
            tasks = eventually("every task to succeed", all_succeeded(c, ids))
        finally:
            r.stop()
    # Spread, not packed: both workers got two (all four fit one worker).
    assert sorted(t.worker or "" for t in tasks) == ["w1", "w1", "w2", "w2"]
