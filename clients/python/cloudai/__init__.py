"""Python client of cloudai, the persistent, queue-driven job system for containers.

    >>> from cloudai import Client
    >>> with Client("http://127.0.0.1:50051") as c:
    ...     task = c.enqueue("cloudai/sample-task:latest", memory="256M")
    ...     print(c.wait(task.id).status)

Modules:

- :mod:`cloudai.client`: :class:`Client`, the calls.
- :mod:`cloudai.models`: what the calls return (:class:`Task`, :class:`Worker`,
  :class:`LogLine`, :class:`Stats`) and take (:class:`TaskSpec`), as frozen dataclasses.
- :mod:`cloudai.enums`: :class:`TaskStatus`, :class:`LogStream`, :class:`WorkerHealth`.
- :mod:`cloudai.errors`: the exceptions, one per gRPC code worth handling.
- :mod:`cloudai.units`: memory, CPU and duration arguments.
- :mod:`cloudai.agent`: :class:`Agent`, the loop of a scheduling agent (a subclass writes
  ``decide``), :class:`GreedyAgent`, and ``python -m cloudai.agent``
  (:mod:`cloudai.agent_cli`).
- :mod:`cloudai.scheduling`: what an agent sees and proposes (:class:`ClusterState`,
  :class:`Assignment`, :class:`Refusal`, ``Placer``), no IO.
- :mod:`cloudai.learned`: :class:`LearnedAgent`, learned run times, shortest first.
- :mod:`cloudai.logs`: log chunks into lines.
- ``cloudai._transport``: channels, TLS, tokens, failover between masters.
- ``cloudai._pb``: the generated stubs (``clients/python/regen.py``).
"""

from typing import TYPE_CHECKING, Any

from .client import DEFAULT_URL, Client
from .constraints import Constraint, Preference
from .errors import (
    AlreadyExists,
    CloudaiError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    UnplaceableWarning,
    WaitTimeout,
)
from .enums import LogStream, TaskStatus, WorkerHealth
from .models import (
    RETRY_OF_LABEL,
    ArrayEnqueued,
    Attempt,
    Enqueued,
    LogLine,
    Resources,
    Stats,
    Task,
    TaskSpec,
    Worker,
)

if TYPE_CHECKING:
    from .agent import Agent, Assignment, AssignmentResult, ClusterState, GreedyAgent, Refusal
    from .learned import LearnedAgent

# The agents are imported on first use, so that ``python -m cloudai.agent`` runs the
# module fresh (it is not in sys.modules already) and a plain client does not load them.
_LAZY = {
    "Agent": "agent",
    "Assignment": "agent",
    "AssignmentResult": "agent",
    "ClusterState": "agent",
    "GreedyAgent": "agent",
    "Refusal": "agent",
    "LearnedAgent": "learned",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudai' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "RETRY_OF_LABEL",
    "Agent",
    "AlreadyExists",
    "Assignment",
    "AssignmentResult",
    "Attempt",
    "Client",
    "CloudaiError",
    "ClusterState",
    "Constraint",
    "DeadlineExceeded",
    "Enqueued",
    "FailedPrecondition",
    "GreedyAgent",
    "InvalidArgument",
    "LearnedAgent",
    "LogLine",
    "LogStream",
    "NotFound",
    "PermissionDenied",
    "Preference",
    "Refusal",
    "ResourceExhausted",
    "Resources",
    "Stats",
    "Task",
    "TaskSpec",
    "TaskStatus",
    "Unauthenticated",
    "Unavailable",
    "UnplaceableWarning",
    "WaitTimeout",
    "Worker",
    "WorkerHealth",
]
