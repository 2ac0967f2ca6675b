"""Channels to one or several masters, and the failover between them.

A call goes to the master that last answered. When that one is unreachable (it does not
connect, or the call fails with ``UNAVAILABLE``), the call goes to the next URL in the
list, then the next, each at most once per call. A standby's refusal that names the
leader (``cloudai-leader-url`` metadata) sends the call there first, even to a URL that
was not in the list.

A call that may change something (enqueue, cancel, retry) is only sent again when it
surely did not reach a master: it could not connect, or a standby refused it. Otherwise
its ``UNAVAILABLE`` is raised, since the master may have acted on it (retry an enqueue
with the same idempotency key: that is always safe).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import grpc

from ._pb import admin_pb2, admin_pb2_grpc, client_pb2, client_pb2_grpc, types_pb2
from .errors import (
    LEADER_URL_KEY,
    CloudaiError,
    InvalidArgument,
    Unavailable,
    from_rpc_error,
    metadata_value,
)

T = TypeVar("T")

#: Largest message sent or accepted: the master's default limit (16 MiB).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Most redirects to a named leader one call follows.
MAX_REDIRECTS = 3

_CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A master that comes back is found again within seconds, not minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

# grpc's words for a call that found no connection: nothing was sent.
_NOT_SENT = ("failed to connect to all addresses", "dns resolution failed", "name resolution")


def split_urls(url: str | Sequence[str]) -> list[str]:
    """The URLs of ``url``: one, a comma-separated list (as ``CLOUDAI_MASTER``), or a
    sequence."""
    items = [url] if isinstance(url, str) else list(url)
    urls = [u.strip() for item in items for u in item.split(",") if u.strip()]
    if not urls:
        raise InvalidArgument("no master URL given")
    return urls


@dataclass(frozen=True)
class Credentials:
    """What the client presents: the API token, and the CA of the masters' certificate."""

    token: str | None
    ca: bytes | None

    @classmethod
    def of(cls, token: str | None, ca: str | os.PathLike[str] | bytes | None) -> Credentials:
        if token is not None and not token.strip():
            raise InvalidArgument(
                "the API token is empty: pass the token `cloudai users add` printed, or "
                "None for a master without auth"
            )
        if ca is None or isinstance(ca, bytes):
            pem = ca
        else:
            try:
                pem = Path(ca).read_bytes()
            except OSError as e:
                raise InvalidArgument(f"cannot read the CA file {os.fspath(ca)}: {e}") from e
        return cls(token.strip() if token else None, pem)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def _target(url: str, creds: Credentials) -> tuple[str, bool]:
    """grpc's ``host:port`` for a master URL, and whether it is TLS. A bare ``HOST:PORT``
    is ``https://`` when a CA is given, else ``http://`` (as the CLI reads it)."""
    if "://" not in url:
        url = ("https://" if creds.ca is not None else "http://") + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"invalid master URL {url!r}: expected http(s)://HOST:PORT")
    tls = parts.scheme == "https"
    if creds.ca is not None and not tls:
        raise InvalidArgument(f"a CA is given, so the master URL must be https:// (got {url})")
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise InvalidArgument(f"invalid master URL {url!r}: bad port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}", tls


class Master:
    """One master: its channel and typed stubs."""

    enqueue: grpc.UnaryUnaryMultiCallable[client_pb2.EnqueueRequest, client_pb2.EnqueueResponse]
    enqueue_batch: grpc.UnaryUnaryMultiCallable[
        client_pb2.EnqueueBatchRequest, client_pb2.EnqueueBatchResponse
    ]
    enqueue_array: grpc.UnaryUnaryMultiCallable[
        client_pb2.EnqueueArrayRequest, client_pb2.EnqueueArrayResponse
    ]
    get_array: grpc.UnaryUnaryMultiCallable[client_pb2.GetArrayRequest, client_pb2.ArraySummary]
    get_task: grpc.UnaryUnaryMultiCallable[client_pb2.GetTaskRequest, types_pb2.Task]
    list_tasks: grpc.UnaryUnaryMultiCallable[
        client_pb2.ListTasksRequest, client_pb2.ListTasksResponse
    ]
    cancel_task: grpc.UnaryUnaryMultiCallable[
        client_pb2.CancelTaskRequest, client_pb2.CancelTaskResponse
    ]
    stream_logs: grpc.UnaryStreamMultiCallable[client_pb2.StreamLogsRequest, types_pb2.LogChunk]
    list_workers: grpc.UnaryUnaryMultiCallable[
        client_pb2.ListWorkersRequest, client_pb2.ListWorkersResponse
    ]
    queue_stats: grpc.UnaryUnaryMultiCallable[
        client_pb2.QueueStatsRequest, client_pb2.QueueStatsResponse
    ]
    retry_task: grpc.UnaryUnaryMultiCallable[
        admin_pb2.RetryTaskRequest, client_pb2.EnqueueResponse
    ]

    def __init__(self, url: str, creds: Credentials) -> None:
        self.url = url
        self._target, self._tls = _target(url, creds)
        self._creds = creds
        #: The last call here succeeded: the next one goes straight in.
        self.good = False
        self._open()

    def _open(self) -> None:
        if self._tls:
            cred = grpc.ssl_channel_credentials(root_certificates=self._creds.ca)
            self.channel = grpc.secure_channel(self._target, cred, options=_CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(self._target, options=_CHANNEL_OPTIONS)
        c = client_pb2_grpc.ClientServiceStub(self.channel)
        a = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.enqueue = c.Enqueue
        self.enqueue_batch = c.EnqueueBatch
        self.enqueue_array = c.EnqueueArray
        self.get_array = c.GetArray
        self.get_task = c.GetTask
        self.list_tasks = c.ListTasks
        self.cancel_task = c.CancelTask
        self.stream_logs = c.StreamLogs
        self.list_workers = c.ListWorkers
        self.queue_stats = c.QueueStats
        self.retry_task = a.RetryTask
        # grpc.health.v1.Health/Check with an empty request (the server's overall
        # health); the answer is not read.
        self._health: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=bytes,
            response_deserializer=bytes,
        )

    def unready(self, timeout: float) -> str | None:
        """Why the master does not answer within ``timeout`` seconds, or None when it
        does: a health check (public, like reflection). A refused connection says so at
        once."""
        started = time.monotonic()
        for fresh in (False, True):
            try:
                self._health(b"", timeout=max(timeout - (time.monotonic() - started), 0.001))
                return None
            except grpc.RpcError as e:
                code, details = e.code(), e.details() or code_name(e)
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return f"no answer within {timeout:g} s"
            if code is not grpc.StatusCode.UNAVAILABLE:
                return None  # it answered (an old master without health checking)
            if fresh:
                return f"cannot connect: {details}"
            # Perhaps an earlier failure, its reconnect still in backoff: a new channel
            # tries at once.
            self._reopen()
        return "cannot connect"

    def _reopen(self) -> None:
        # The old channel closes once nothing uses it (a call another thread just began
        # on it finishes there).
        self._open()

    def close(self) -> None:
        self.channel.close()


def code_name(e: grpc.RpcError) -> str:
    return e.code().name


def _not_sent(e: grpc.RpcError) -> bool:
    details = (e.details() or "").lower()
    return any(words in details for words in _NOT_SENT)


def leader_url(e: grpc.RpcError) -> str | None:
    """The leader's URL a standby's refusal names, if any."""
    if e.code() is not grpc.StatusCode.UNAVAILABLE:
        return None
    found = metadata_value(e.trailing_metadata(), LEADER_URL_KEY)
    if found is None and isinstance(e, grpc.Call):
        found = metadata_value(e.initial_metadata(), LEADER_URL_KEY)
    return found or None


class Transport:
    """The masters of one client, and the failover between them."""

    def __init__(
        self,
        urls: list[str],
        creds: Credentials,
        connect_timeout: float,
    ) -> None:
        self.urls = urls
        self.creds = creds
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._masters: dict[str, Master] = {}
        self._current = urls[0]
        for u in urls:
            _target(u, creds)  # a malformed URL fails at construction, not at first call

    @property
    def current(self) -> str:
        """The master calls go to first."""
        with self._lock:
            return self._current

    def _master(self, url: str) -> Master:
        with self._lock:
            m = self._masters.get(url)
            if m is None:
                m = self._masters[url] = Master(url, self.creds)
            return m

    def _order(self) -> list[str]:
        """The URLs to try: the current one, then the list's, in order after it."""
        with self._lock:
            cur = self._current
        if cur in self.urls:
            i = self.urls.index(cur)
            return self.urls[i:] + self.urls[:i]
        return [cur, *self.urls]

    def demote(self, m: Master) -> None:
        """``m`` failed outside a call (a stream it served broke): the next call tries
        the next URL first, and ``m`` last."""
        m.good = False
        with self._lock:
            if self._current != m.url:
                return
            if m.url in self.urls and len(self.urls) > 1:
                i = self.urls.index(m.url)
                self._current = self.urls[(i + 1) % len(self.urls)]
            elif m.url not in self.urls:
                self._current = self.urls[0]

    def _settle(self, m: Master) -> None:
        m.good = True
        with self._lock:
            self._current = m.url

    def call(self, fn: Callable[[Master], T], *, idempotent: bool) -> T:
        """``fn`` on a master that answers, failing over as the module says. ``fn``'s
        ``grpc.RpcError`` becomes a :class:`CloudaiError`."""
        todo = self._order()
        tried: list[str] = []
        failures: list[str] = []
        redirects = 0
        last: CloudaiError | None = None
        while todo:
            url = todo.pop(0)
            if url in tried:
                continue
            tried.append(url)
            m = self._master(url)
            if not m.good:
                why = m.unready(self.connect_timeout)
                if why is not None:
                    failures.append(f"{url}: {why}")
                    continue
            try:
                result = fn(m)
            except grpc.RpcError as e:
                err = from_rpc_error(e, url)
                if e.code() is not grpc.StatusCode.UNAVAILABLE:
                    self._settle(m)  # it answered: the call itself is wrong
                    raise err from None
                m.good = False
                # A standby that names the leader refused the call: nothing was done.
                leader = leader_url(e)
                if leader and leader not in tried and redirects < MAX_REDIRECTS:
                    redirects += 1
                    todo.insert(0, leader)
                elif not idempotent and leader is None and not _not_sent(e):
                    raise err from None
                failures.append(f"{url}: {err.message}")
                last = err
                continue
            self._settle(m)
            return result
        summary = "; ".join(failures)
        raise Unavailable(
            f"no master could serve the call ({summary})",
            grpc.StatusCode.UNAVAILABLE,
            last.url if last else None,
        )

    def close(self) -> None:
        with self._lock:
            masters = list(self._masters.values())
            self._masters.clear()
        for m in masters:
            m.close()
