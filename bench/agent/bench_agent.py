#!/usr/bin/env python3
"""The built-in dispatcher against the LearnedAgent on one mixed, bursty workload.

One command runs both, one after the other, on the same seeded workload, each on a fresh
master (SQLite in a temporary folder) with the same fake-executor workers, and prints a
table: mean and p95 queue wait (enqueue → first attempt started, as the master's
``cloudai_task_queue_wait_seconds``) overall, for short and for large tasks, and the
makespan (first enqueue → last task ended)::

    python3 bench/agent/bench_agent.py            # CLOUDAI_BIN or target/{release,debug}/cloudai

The workload (``--seed``): ``--bursts`` bursts ``--gap`` seconds apart, each with
``--short`` short tasks (1/8 of a worker's CPU, run times log-normal around 400 ms),
``--long`` long ones (1/4 of a worker, 6–10 s) and ``--large`` large ones (a whole
worker's CPU, 3–5 s), in a
shuffled order, enqueued as one batch. The fake executor runs each for its
``CLOUDAI_FAKE_RUN_MS``. Kinds differ by command (``short``, ``long``, ``large``): the
agent's default key (image + command) tells them apart, learning online from nothing.
It needs the Python client's dependencies (``grpcio``, ``protobuf``): run it with the
venv of ``clients/python`` (``.ci/run`` makes one).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python"))

import cloudai  # noqa: E402

T = TypeVar("T")


def eventually(what: str, f: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v is not None and v is not False:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_bin() -> str:
    if os.environ.get("CLOUDAI_BIN"):
        return os.environ["CLOUDAI_BIN"]
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "cloudai"
        if p.exists():
            return str(p)
    raise SystemExit("no cloudai binary: cargo build --release -p cloudai, or set CLOUDAI_BIN")


@dataclass(frozen=True)
class Job:
    burst: int
    kind: str
    cpu: float
    run_ms: int


def workload(args: argparse.Namespace) -> list[list[Job]]:
    rng = random.Random(args.seed)
    bursts = []
    for b in range(args.bursts):
        jobs = [Job(b, "short", args.cpu / 8, round(rng.lognormvariate(math.log(400), 0.5)))
                for _ in range(args.short)]
        jobs += [Job(b, "long", args.cpu / 4, rng.randint(6000, 10000))
                 for _ in range(args.long)]
        jobs += [Job(b, "large", float(args.cpu), rng.randint(3000, 5000))
                 for _ in range(args.large)]
        rng.shuffle(jobs)
        bursts.append(jobs)
    return bursts


class Cluster:
    """A master and fake workers (and for the agent, the agent), in ``dir``."""

    def __init__(self, bin: str, dir: Path, args: argparse.Namespace, mode: str) -> None:
        agent = mode != "dispatcher"
        self.dir = dir
        self.procs: list[subprocess.Popen[bytes]] = []
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._spawn("master", [bin, "master", "--no-shell", "--listen", f"127.0.0.1:{port}",
                               "--http-listen", "off", "--store", f"sqlite://{dir / 'db'}",
                               "--secret-file", str(dir / "secret"),
                               "--heartbeat-interval", "500ms",
                               *(["--agent-only"] if agent else [])])
        self.client = cloudai.Client(self.url, connect_timeout=1, timeout=30)
        eventually("the master", self._answers)
        for i in range(args.workers):
            self._spawn(f"worker-{i}", [bin, "worker", "--fake-executor", "--master", self.url,
                                        "--id", f"w{i}", "--cpu", str(args.cpu),
                                        "--memory", args.memory,
                                        "--heartbeat-interval", "500ms"])
        eventually("the workers", lambda: sum(
            w.health is cloudai.WorkerHealth.HEALTHY for w in self.client.workers()
        ) == args.workers)
        got = {w.capacity.cpu for w in self.client.workers()}
        if got != {float(args.cpu)}:
            self.stop()
            raise SystemExit(f"workers report {got} CPUs, not --cpu {args.cpu} (a worker "
                             "offers at most the host's cores): pass --cpu to match")
        if agent:
            env = {**os.environ, "PYTHONPATH": str(REPO / "clients" / "python")}
            extra = ["--learned", "--history", "0"] if mode == "agent" else []
            self._spawn("agent", [sys.executable, "-m", "cloudai.agent", "--master", self.url,
                                  "--interval", str(args.interval), *extra,
                                  *args.agent_args.split()], env)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.dir / f"{name}.log", "wb") as out:
            self.procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                               stderr=out, cwd=self.dir, env=env))

    def _answers(self) -> bool:
        try:
            self.client.stats()
            return True
        except cloudai.Unavailable:
            return False

    def stop(self) -> None:
        self.client.close()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run(mode: str, bin: str, bursts: list[list[Job]], args: argparse.Namespace) -> dict[str, Any]:
    dir = Path(tempfile.mkdtemp(prefix=f"cloudai-bench-agent-{mode}-"))
    c = Cluster(bin, dir, args, mode)
    kinds: dict[str, str] = {}
    try:
        start = time.monotonic()
        for b, jobs in enumerate(bursts):
            pause = start + b * args.gap - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            done = c.client.enqueue_many([
                {"image": "cloudai/busybox:test", "command": [j.kind], "cpu": j.cpu,
                 "memory": "256M", "env": {"CLOUDAI_FAKE_RUN_MS": str(j.run_ms)}}
                for j in jobs
            ])
            kinds.update({e.id: j.kind for e, j in zip(done, jobs)})

        progress = [0, time.monotonic()]

        def ended() -> bool:
            s = c.client.stats()
            if s["succeeded"] != progress[0]:
                progress[:] = [s["succeeded"], time.monotonic()]
            elif time.monotonic() - progress[1] > 60:
                raise SystemExit(f"{mode}: no task ended for 60 s ({dict(s.counts)}; see {dir})")
            return s["queued"] + s["assigned"] + s["running"] == 0

        eventually("every task to end", ended, timeout=args.bursts * args.gap + 600)
        tasks = list(c.client.tasks(page_size=1000))
    finally:
        c.stop()
    bad = [t for t in tasks if t.status is not cloudai.TaskStatus.SUCCEEDED]
    if bad or len(tasks) != len(kinds):
        raise SystemExit(f"{mode}: {len(bad)} tasks did not succeed (see {dir})")
    waits: dict[str, list[float]] = {"all": [], "short": [], "long": [], "large": []}
    for t in tasks:
        a = t.attempts[0]
        assert a.started_at is not None and t.created_at is not None
        w = (a.started_at - t.created_at).total_seconds()
        waits["all"].append(w)
        waits[kinds[t.id]].append(w)
    first = min(t.created_at for t in tasks if t.created_at is not None)
    last = max(t.finished_at for t in tasks if t.finished_at is not None)
    if not args.keep:
        shutil.rmtree(dir, ignore_errors=True)
    return {"waits": waits, "makespan": (last - first).total_seconds()}


def p95(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=None, help="the cloudai binary (default CLOUDAI_BIN, "
                   "else target/release or target/debug)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--cpu", type=int, default=2,
                   help="CPUs per worker, at most the host's cores (a large task's ask)")
    p.add_argument("--memory", default="8G")
    p.add_argument("--bursts", type=int, default=4)
    p.add_argument("--gap", type=float, default=8.0, help="seconds between bursts")
    p.add_argument("--short", type=int, default=60)
    p.add_argument("--long", type=int, default=6)
    p.add_argument("--large", type=int, default=2)
    p.add_argument("--interval", type=float, default=0.05, help="the agent's idle poll (s)")
    p.add_argument("--modes", default="dispatcher,agent",
                   help="what places tasks, in turn: dispatcher (built-in), agent "
                   "(LearnedAgent), greedy (GreedyAgent: the dispatcher's order, as an agent)")
    p.add_argument("--agent-args", default="", help="more arguments of python -m cloudai.agent")
    p.add_argument("--repeat", type=int, default=1, help="runs of each mode (medians)")
    p.add_argument("--keep", action="store_true", help="keep each run's folder (logs)")
    args = p.parse_args()
    bin = args.bin or default_bin()
    bursts = workload(args)
    n = sum(len(b) for b in bursts)
    print(f"workload: seed {args.seed}, {args.bursts} bursts {args.gap:g} s apart of "
          f"{args.short} short + {args.long} long + {args.large} large = {n} tasks; "
          f"{args.workers} fake workers × {args.cpu} CPU; binary {bin}", flush=True)
    modes = args.modes.split(",")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for i in range(args.repeat):
        for mode in modes:  # interleaved, so a busy spell of the host hits both
            t0 = time.monotonic()
            results[mode].append(run(mode, bin, bursts, args))
            print(f"  {mode} #{i + 1}: done in {time.monotonic() - t0:.0f} s", flush=True)
    rows: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
        ("mean queue wait, all (s)", lambda r: mean(r["waits"]["all"])),
        ("p95 queue wait, all (s)", lambda r: p95(r["waits"]["all"])),
        ("mean queue wait, short (s)", lambda r: mean(r["waits"]["short"])),
        ("p95 queue wait, short (s)", lambda r: p95(r["waits"]["short"])),
        ("mean queue wait, long (s)", lambda r: mean(r["waits"]["long"])),
        ("mean queue wait, large (s)", lambda r: mean(r["waits"]["large"])),
        ("p95 queue wait, large (s)", lambda r: p95(r["waits"]["large"])),
        ("makespan (s)", lambda r: r["makespan"]),
    ]
    names = {"dispatcher": "built-in dispatcher", "agent": "LearnedAgent",
             "greedy": "GreedyAgent"}
    ratio = len(modes) == 2 and modes[0] == "dispatcher"
    head = ["figure", *(names.get(m, m) for m in modes)]
    if ratio:
        head.append(f"{names.get(modes[1], modes[1])} / dispatcher")
    print()
    if args.repeat > 1:
        print(f"median (min–max) of {args.repeat} runs each")
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for name, f in rows:
        per = [[f(r) for r in results[m]] for m in modes]
        cells = [name, *(cell(v) for v in per)]
        if ratio and statistics.median(per[0]) > 0:
            cells.append(f"{statistics.median(per[1]) / statistics.median(per[0]):.2f}×")
        print("| " + " | ".join(cells) + " |")


def cell(vs: list[float]) -> str:
    if len(vs) == 1:
        return f"{vs[0]:.2f}"
    return f"{statistics.median(vs):.2f} ({min(vs):.2f}–{max(vs):.2f})"


if __name__ == "__main__":
    main()
