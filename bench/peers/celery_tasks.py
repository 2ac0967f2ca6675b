"""Celery tasks for the peer benchmark: a no-op that counts itself, a start stamp, and
the two ends of a chain (a parent that runs a while and stamps its end, a child that
stamps its start, both on CLOCK_MONOTONIC).

Both use a plain Redis connection (one per worker process) on a separate database from
the broker's, so counting adds one round trip per task and nothing else.
"""
import os
import time

import redis
from celery import Celery

app = Celery("cloudai_bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "4")),
)

_r = None


def counters():
    global _r
    if _r is None:
        _r = redis.Redis.from_url(os.environ["BENCH_COUNTERS"])
    return _r


@app.task(name="noop")
def noop():
    n = counters().incr("bench:done")
    now = time.time()
    if n == 1:
        counters().set("bench:first", now)
    if n == int(os.environ.get("BENCH_N", "0")):
        counters().set("bench:last", now)


@app.task(name="stamp")
def stamp(sent):
    counters().rpush("bench:lat", time.time() - sent)


@app.task(name="parent")
def parent(i, ms):
    time.sleep(ms / 1000.0)
    # The stamp's own write (one loopback round trip) falls inside the measured gap.
    counters().hset("bench:parent", i, time.clock_gettime(time.CLOCK_MONOTONIC))


@app.task(name="child")
def child(i):
    counters().hset("bench:child", i, time.clock_gettime(time.CLOCK_MONOTONIC))
