"""Exceptions: one class per gRPC status code a caller may want to handle, each carrying
the code, the master's message and the URL of the master that answered.

Every error the client raises for a failed call is a :class:`CloudaiError`; catch that to
handle them all. Some also derive from the built-in exception a Python user would reach
for first (:class:`InvalidArgument` is a :class:`ValueError`, :class:`NotFound` a
:class:`LookupError`, :class:`DeadlineExceeded` a :class:`TimeoutError`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from .models import Task

#: Metadata a standby sends with its refusal: the leader's URL.
LEADER_URL_KEY = "cloudai-leader-url"
#: Metadata the master's enqueue rate limit sends: milliseconds to wait before retrying.
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"

_RETRY_IN = re.compile(r"retry in (\d+(?:\.\d+)?) ?ms")


class CloudaiError(Exception):
    """A call to the master failed.

    Attributes:
        code: the gRPC status code (``None`` for an error found before any call).
        message: the master's message (or the client's, for an error found locally).
        url: the master that answered, when one did.
    """

    code: grpc.StatusCode | None
    message: str
    url: str | None

    def __init__(
        self, message: str, code: grpc.StatusCode | None = None, url: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.url = url

    def __str__(self) -> str:
        where = f" (from {self.url})" if self.url else ""
        code = f"{self.code.name}: " if self.code is not None else ""
        return f"{code}{self.message}{where}"


class NotFound(CloudaiError, LookupError):
    """No task (or worker) has that id or prefix (``NOT_FOUND``)."""


class InvalidArgument(CloudaiError, ValueError):
    """The request is malformed: a bad image reference, an ambiguous id prefix, a size
    or duration that does not parse (``INVALID_ARGUMENT``; also raised before any call
    for arguments the client can check itself)."""


class AlreadyExists(CloudaiError):
    """The idempotency key is already used by a task with a different spec
    (``ALREADY_EXISTS``)."""


class Unauthenticated(CloudaiError):
    """The master requires an API token and got none, or one it does not know
    (``UNAUTHENTICATED``)."""


class PermissionDenied(CloudaiError):
    """The token's role may not make this call, e.g. a viewer's enqueue
    (``PERMISSION_DENIED``)."""


class FailedPrecondition(CloudaiError):
    """The task is not in a state that allows the call: cancelling a task that ended,
    retrying one that has not (``FAILED_PRECONDITION``)."""


class ResourceExhausted(CloudaiError):
    """Over the enqueue rate limit or the queue's cap (``RESOURCE_EXHAUSTED``). Nothing
    was stored; retrying (with the same idempotency key) is safe.

    Attributes:
        retry_after: seconds to wait before retrying, when the master said (the rate
            limit does; a full queue does not).
    """

    retry_after: float | None

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code, url)
        self.retry_after = retry_after


class Unavailable(CloudaiError):
    """No master could serve the call: none answered, the store did not answer in time,
    or a standby refused and no leader is known (``UNAVAILABLE``)."""


class DeadlineExceeded(CloudaiError, TimeoutError):
    """The call took longer than its timeout (``DEADLINE_EXCEEDED``)."""


class WaitTimeout(CloudaiError, TimeoutError):
    """:meth:`cloudai.Client.wait` gave up: the task had not ended within its timeout
    (no gRPC code: every call succeeded).

    Attributes:
        task: the task as last seen.
    """

    task: Task

    def __init__(self, message: str, task: Task, url: str | None = None) -> None:
        super().__init__(message, None, url)
        self.task = task


_BY_CODE: dict[grpc.StatusCode, type[CloudaiError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def metadata_value(metadata: Iterable[Any] | None, key: str) -> str | None:
    """The first value of ``key`` in gRPC metadata (grpc's ``(key, value)`` items), as
    text."""
    for item in metadata or ():
        k, v = item
        if k == key:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None


def retry_after(message: str, metadata: Iterable[Any] | None) -> float | None:
    """Seconds to wait before retrying, from ``grpc-retry-pushback-ms`` or else the
    message's "retry in N ms" (what ``master/src/limits.rs`` sends)."""
    raw = metadata_value(metadata, RETRY_PUSHBACK_KEY)
    if raw is not None:
        try:
            return max(int(raw), 0) / 1000
        except ValueError:
            pass
    m = _RETRY_IN.search(message)
    return float(m.group(1)) / 1000 if m else None


def from_rpc_error(e: grpc.RpcError, url: str | None) -> CloudaiError:
    """The exception for a failed call (the ``grpc.RpcError`` a stub raised)."""
    code = e.code()
    message = e.details() or str(e)
    cls = _BY_CODE.get(code, CloudaiError)
    if cls is ResourceExhausted:
        return ResourceExhausted(message, code, url, retry_after(message, e.trailing_metadata()))
    return cls(message, code, url)


class UnplaceableWarning(UserWarning):
    """Issued by :meth:`cloudai.Client.enqueue` and ``enqueue_array`` when no registered
    worker could ever take the task (its constraints, or a size over every worker's): it
    is queued all the same, and waits with reason ``NoWorkerFits``. The message names
    the closest worker and what it lacks. Pass ``strict=True`` to be refused instead."""
