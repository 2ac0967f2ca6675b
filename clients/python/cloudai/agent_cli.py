"""``python -m cloudai.agent``: runs :class:`cloudai.agent.GreedyAgent`, or with
``--learned`` :class:`cloudai.learned.LearnedAgent`, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .agent import FATAL, Agent, GreedyAgent, log
from .client import Client
from .errors import CloudaiError
from .learned import LearnedAgent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cloudai.agent",
        description="Run a scheduling agent against a cloudai master started with "
        "--agent-only. SIGTERM or SIGINT stops it (exit 0).",
        epilog="example: python -m cloudai.agent --master http://127.0.0.1:50051 --learned",
    )
    p.add_argument("--master", default=os.environ.get("CLOUDAI_MASTER") or
                   "http://127.0.0.1:50051",
                   help="master URL(s), comma-separated (env CLOUDAI_MASTER)")
    p.add_argument("--token", default=os.environ.get("CLOUDAI_TOKEN") or None,
                   help="an admin's API token (env CLOUDAI_TOKEN)")
    p.add_argument("--ca", default=os.environ.get("CLOUDAI_CA") or None,
                   help="CA of the master's certificate, for https (env CLOUDAI_CA)")
    p.add_argument("--learned", action="store_true",
                   help="LearnedAgent: learned run times, shortest first, a reservation for "
                   "the oldest large task (default: GreedyAgent, dispatch order)")
    p.add_argument("--interval", type=float, default=0.2,
                   help="seconds between rounds when idle (default 0.2)")
    p.add_argument("--max-queued", type=int, default=1000,
                   help="queued tasks read per round (default 1000)")
    p.add_argument("--key-label", default=None,
                   help="learned: the label naming a task's kind (default: image + command)")
    p.add_argument("--default-runtime", type=float, default=None,
                   help="learned: seconds predicted for a kind never seen when nothing is "
                   "known at all (default 60)")
    p.add_argument("--large-fraction", type=float, default=None,
                   help="learned: a task is large when it asks this share of the biggest "
                   "worker's CPU, memory or GPUs (default 0.5)")
    p.add_argument("--reserve-after", type=float, default=None,
                   help="learned: seconds the oldest large task waits before it goes first "
                   "and gets a reserved worker (default: its predicted run time)")
    p.add_argument("--history", type=int, default=None,
                   help="learned: succeeded tasks read at start to warm the model "
                   "(default 500)")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cloudai.agent``: 0 after SIGTERM/SIGINT, 2 on a fatal error."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        client = Client(args.master, token=args.token, ca=args.ca, timeout=10.0)
    except CloudaiError as e:
        log.error("%s", e)
        return 2
    agent: Agent
    with client:
        common: dict[str, Any] = {"interval": args.interval, "max_queued": args.max_queued}
        if args.learned:
            extra = {
                k: v for k, v in (
                    ("key_label", args.key_label),
                    ("default_runtime", args.default_runtime),
                    ("large_fraction", args.large_fraction),
                    ("history", args.history),
                    ("reserve_after", args.reserve_after),
                ) if v is not None
            }
            agent = LearnedAgent(client, **common, **extra)
        else:
            agent = GreedyAgent(client, **common)
        try:
            agent.run()
        except FATAL as e:
            log.error("agent stopped: %s", e)
            return 2
    return 0
