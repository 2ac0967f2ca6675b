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
- :mod:`cloudai.logs`: log chunks into lines.
- ``cloudai._transport``: channels, TLS, tokens, failover between masters.
- ``cloudai._pb``: the generated stubs (``clients/python/regen.py``).
"""

from .client import DEFAULT_URL, Client
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
    WaitTimeout,
)
from .enums import LogStream, TaskStatus, WorkerHealth
from .models import (
    RETRY_OF_LABEL,
    Attempt,
    Enqueued,
    LogLine,
    Resources,
    Stats,
    Task,
    TaskSpec,
    Worker,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "RETRY_OF_LABEL",
    "AlreadyExists",
    "Attempt",
    "Client",
    "CloudaiError",
    "DeadlineExceeded",
    "Enqueued",
    "FailedPrecondition",
    "InvalidArgument",
    "LogLine",
    "LogStream",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Resources",
    "Stats",
    "Task",
    "TaskSpec",
    "TaskStatus",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
    "Worker",
    "WorkerHealth",
]
