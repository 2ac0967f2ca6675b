"""A custom scheduling agent in a dozen lines: spread tasks over workers (the one with
the most free CPU first) instead of packing them, and keep GPU workers for GPU tasks.

    cloudai master --agent-only &          # the built-in dispatcher off
    python clients/python/examples/spread_agent.py --master http://127.0.0.1:50051

The loop (reading the cluster, submitting, refusals, backoff, SIGTERM) is the base
class's; only ``decide`` is written here.
"""

from __future__ import annotations

import argparse
import logging

from cloudai import Client
from cloudai.agent import Agent, Assignment, ClusterState, Placer


class SpreadAgent(Agent):
    def decide(self, state: ClusterState) -> list[Assignment]:
        placer = Placer(state)  # free capacity, less what this decision placed
        gpu_workers = {w.id for w in state.workers if w.capacity.gpus > 0}
        out = []
        for task in state.queued:  # the master's order: priority, then oldest
            fits = placer.candidates(task)
            if task.request.gpus == 0:
                fits = [w for w in fits if w not in gpu_workers] or fits
            if fits:
                best = max(fits, key=lambda w: (placer.free[w].cpu_millis, w))
                out.append(placer.take(task, best))
        return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--master", default="http://127.0.0.1:50051")
    p.add_argument("--token", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    with Client(args.master, token=args.token) as c:
        SpreadAgent(c, interval=0.2).run()  # until SIGTERM or Ctrl-C
