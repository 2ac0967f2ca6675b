"""The Celery peer of cloudai's drain, latency and workflow benchmarks.

  python celery_peer.py drain   --redis URL --n N --concurrency C
  python celery_peer.py latency --redis URL --n N --rate R --concurrency C
  python celery_peer.py chain   --redis URL --n N --parent-ms MS --concurrency C

Prints one JSON line on stdout: {"rate": tasks/s} or {"latencies_ms": [...]}. The
chain mode runs `chain(parent.si(), child.si())` N times, one at a time, and reports each
child's start minus its parent's end, both stamped inside the task bodies on
CLOCK_MONOTONIC (system-wide on Linux, so comparable across the pool's processes).
The broker is redis db 0, the counters db 1 (both flushed first). The worker is started
here as `celery worker -P prefork -c C` and stopped at the end.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))


def start_worker(args, env):
    cmd = [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
           "-P", "prefork", "-c", str(args.concurrency), "-l", "WARNING",
           "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                            start_new_session=True)


def stop_worker(proc):
    # Warm shutdown through the main process (it stops its pool children); the whole
    # process group is killed only if that does not finish in time.
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    except Exception:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


CHAIN_WARMUP = 5


def chains(args, env, r, tasks):
    """Parent end -> child start (ms) of each measured chain, after a warm-up."""
    from celery import chain
    worker = start_worker(args, env)
    try:
        for i in range(CHAIN_WARMUP + args.n):
            chain(tasks.parent.si(i, args.parent_ms), tasks.child.si(i)).apply_async()
            wait_for(lambda: r.hexists("bench:child", i), 60, f"chain {i}")
            # The child's own end is not measured: let it finish (idle cluster).
            time.sleep(0.005)
    finally:
        stop_worker(worker)
    ends, starts = r.hgetall("bench:parent"), r.hgetall("bench:child")
    return [(float(starts[str(i).encode()]) - float(ends[str(i).encode()])) * 1000.0
            for i in range(CHAIN_WARMUP, CHAIN_WARMUP + args.n)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["drain", "latency", "chain"])
    p.add_argument("--redis", required=True, help="redis://HOST:PORT")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--parent-ms", type=int, default=30)
    args = p.parse_args()

    base = args.redis.rstrip("/")
    env = dict(os.environ, BENCH_BROKER=base + "/0", BENCH_COUNTERS=base + "/1",
               PYTHONWARNINGS="ignore",
               BENCH_N=str(args.n))
    os.environ.update(env)
    sys.path.insert(0, HERE)
    import celery_tasks  # noqa: E402  (needs the env above)

    r = redis.Redis.from_url(base + "/1")
    redis.Redis.from_url(base + "/0").flushdb()
    r.flushdb()

    if args.mode == "drain":
        # Preload the queue (not timed), then time the worker from first to last task.
        with celery_tasks.app.producer_or_acquire() as producer:
            for _ in range(args.n):
                celery_tasks.noop.apply_async(producer=producer)
        worker = start_worker(args, env)
        try:
            wait_for(lambda: r.get("bench:last") is not None,
                     max(120, args.n / 200), "celery to drain")
        finally:
            stop_worker(worker)
        first, last = float(r.get("bench:first")), float(r.get("bench:last"))
        print(json.dumps({"rate": (args.n - 1) / max(last - first, 1e-9)}))
    elif args.mode == "chain":
        print(json.dumps({"latencies_ms": chains(args, env, r, celery_tasks)}))
    else:
        worker = start_worker(args, env)
        try:
            # Warm up until the worker runs tasks, then send at the fixed rate.
            celery_tasks.stamp.delay(time.time())
            wait_for(lambda: r.llen("bench:lat") >= 1, 60, "the celery worker")
            for _ in range(19):
                celery_tasks.stamp.delay(time.time())
            wait_for(lambda: r.llen("bench:lat") >= 20, 60, "the warm-up")
            r.delete("bench:lat")
            period = 1.0 / args.rate
            start = time.perf_counter()
            with celery_tasks.app.producer_or_acquire() as producer:
                for i in range(args.n):
                    delay = start + i * period - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    celery_tasks.stamp.apply_async((time.time(),), producer=producer)
            wait_for(lambda: r.llen("bench:lat") >= args.n, 60, "every stamp")
        finally:
            stop_worker(worker)
        lat = [float(x) * 1000.0 for x in r.lrange("bench:lat", 0, -1)]
        print(json.dumps({"latencies_ms": lat}))


if __name__ == "__main__":
    main()
