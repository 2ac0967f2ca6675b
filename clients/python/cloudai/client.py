""":class:`Client`: the calls of the master's ``ClientService`` (and ``AdminService.RetryTask``)
with Python types in and out, and Python exceptions for errors."""

from __future__ import annotations

import os
import time
import warnings
from datetime import datetime, timezone
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

import grpc

from . import units
from ._pb import admin_pb2, client_pb2, types_pb2
from ._transport import Credentials, Master, Transport, split_urls
from .constraints import Constraint, Preference
from .errors import InvalidArgument, UnplaceableWarning, WaitTimeout, from_rpc_error
from .logs import LineSplitter
from .enums import TaskStatus
from .models import ArrayEnqueued, Enqueued, LogLine, Stats, Task, TaskSpec, Worker

#: The master's address when none is given (the CLI's default too).
DEFAULT_URL = "http://127.0.0.1:50051"

#: Statuses to filter :meth:`Client.tasks` by: one, a list, or names ("running,queued").
StatusFilter = TaskStatus | str | Iterable[TaskStatus | str]
#: A spec for :meth:`Client.enqueue_many`: a :class:`TaskSpec`, or a dict of the keyword
#: arguments of :meth:`Client.enqueue`.
SpecLike = TaskSpec | Mapping[str, Any]


class _ChunkStream(Iterator[types_pb2.LogChunk], Protocol):
    """What a ``StreamLogs`` call returns: chunks, and a way to end it early."""

    def cancel(self) -> bool: ...


class Client:
    """A client of one cloudai master, or of a group of masters sharing a store.

    Args:
        url: the master's URL (``http://HOST:PORT``; ``https://`` for TLS), or several
            (a list, or comma-separated as ``CLOUDAI_MASTER``). With several, a call
            goes to the one that last answered and fails over to the next on
            ``UNAVAILABLE``, following a standby's pointer to the leader.
        token: the API token (``cloudai users add`` prints it); ``None`` for a master in
            local-dev mode.
        ca: the CA that signed the masters' certificate: a PEM file's path or its bytes.
            With a CA, a bare ``HOST:PORT`` means ``https://``; an ``https://`` URL
            without one trusts the system's roots.
        timeout: the deadline of each call, in seconds or a ``timedelta`` (log streams
            have none).
        connect_timeout: how long to wait for a master to accept a connection before
            trying the next.

    Use it as a context manager, or call :meth:`close`, to close its connections. It is
    safe to share between threads.
    """

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_URL,
        token: str | None = None,
        ca: str | os.PathLike[str] | bytes | None = None,
        *,
        timeout: units.Seconds = 30.0,
        connect_timeout: units.Seconds = 5.0,
    ) -> None:
        self._creds = Credentials.of(token, ca)
        self._timeout = units.seconds(timeout, "timeout")
        self._t = Transport(
            split_urls(url), self._creds, units.seconds(connect_timeout, "connect_timeout")
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """A client configured as the CLI is: ``CLOUDAI_MASTER`` (default
        ``http://127.0.0.1:50051``), ``CLOUDAI_TOKEN``, ``CLOUDAI_CA``. Keyword arguments
        are passed on to :class:`Client` and take precedence."""
        kwargs.setdefault("url", os.environ.get("CLOUDAI_MASTER") or DEFAULT_URL)
        kwargs.setdefault("token", os.environ.get("CLOUDAI_TOKEN") or None)
        kwargs.setdefault("ca", os.environ.get("CLOUDAI_CA") or None)
        return cls(**kwargs)

    @property
    def url(self) -> str:
        """The master calls go to first: the one that last answered."""
        return self._t.current

    def close(self) -> None:
        """Closes the connections (a log stream in progress ends with an error)."""
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _md(self) -> tuple[tuple[str, str], ...]:
        return self._creds.metadata()

    # ---- tasks -------------------------------------------------------------------------

    def enqueue(
        self,
        image: str,
        command: Sequence[str] | None = None,
        entrypoint: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cpu: units.Cpu | None = None,
        memory: units.Memory | None = None,
        gpus: int = 0,
        priority: int = 0,
        retries: int | None = None,
        timeout: units.Seconds | None = None,
        worker: str | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        after: Sequence[str | tuple[str, str]] | None = None,
        not_before: datetime | None = None,
        constraints: Sequence[str | Constraint] | None = None,
        prefer: Sequence[str | Preference] | None = None,
        strict: bool = False,
    ) -> Task:
        """Submits a task and returns it as stored, read right after (``queued``, or
        already further along).

        Args:
            image: the image reference (``cloudai/sample-task:latest``).
            command: the container's command, passed to the entrypoint (as the
                arguments of ``docker run IMAGE ARGS...``); a list, not a string.
            entrypoint: replaces the image's entrypoint (``docker run --entrypoint``);
                ``""`` clears it.
            env: environment variables.
            cpu: cores to reserve (``0.5``) or millicores (``"500m"``).
            memory: bytes to reserve and limit, as an ``int`` or ``"256M"`` (K/M/G/T are
                powers of 1024, KB/MB/GB/TB of 1000).
            gpus: GPUs to reserve.
            priority: higher runs first.
            retries: extra attempts after a failure (``None``: no retry).
            timeout: wall-clock limit of one attempt, seconds or a ``timedelta``.
            worker: run only on this worker id.
            labels: labels of the task.
            idempotency_key: enqueueing again with the same key returns the first task
                instead of a new one. With a key, an enqueue that met an unavailable
                master is retried on the next one; without one it is not (it may have
                been stored).
            after: tasks this one runs after: ids (or unambiguous prefixes), each alone
                (it must succeed) or as ``(id, "ok" | "notok" | "any")``. Until then the
                task is ``waiting``; when a parent ends otherwise it is cancelled.
            not_before: not started before this time (timezone-aware).
            constraints: what the worker's labels and built-in attributes (``os``,
                ``arch``, ``hostname``, ``docker.version``, ``gpu.model``,
                ``gpu.memory``) must meet, as the CLI's ``--constraint`` takes them:
                ``"zone=a"``, ``"disk!=hdd"``, ``"gpu.model in (a100,h100)"``,
                ``"zone not in (c)"``, ``"gpu.model exists"``.
            prefer: ``"KEY=VALUE"`` preferences: matching workers go first.
            strict: refuse the task (``FailedPrecondition``, nothing stored) when no
                registered worker could ever take it; without it the task is queued and
                an :class:`~cloudai.errors.UnplaceableWarning` is issued.

        Raises:
            InvalidArgument: a bad image or field (the master's message names it), or a
                unit that does not parse.
            NotFound: ``worker`` is not a worker the master knows.
            PermissionDenied: the token's role may not enqueue (a viewer).
            ResourceExhausted: over the enqueue rate (``retry_after`` says when to come
                back) or the queue's cap.
        """
        spec = TaskSpec.of(
            image,
            command=command,
            entrypoint=entrypoint,
            env=env,
            cpu=cpu,
            memory=memory,
            gpus=gpus,
            priority=priority,
            retries=retries,
            timeout=timeout,
            worker=worker,
            labels=labels,
            idempotency_key=idempotency_key,
            after=after,
            not_before=not_before,
            constraints=constraints,
            prefer=prefer,
        )
        req = client_pb2.EnqueueRequest(spec=spec.to_pb(), strict=strict)
        r = self._t.call(
            lambda m: m.enqueue(req, metadata=self._md(), timeout=self._timeout),
            idempotent=spec.idempotency_key is not None,
        )
        _warn(r.warning)
        return self.get(r.task_id)

    def enqueue_many(self, specs: Iterable[SpecLike]) -> list[Enqueued]:
        """Submits several tasks at once, all or none (one ``EnqueueBatch``). Each spec
        is a :class:`TaskSpec` or a dict of :meth:`enqueue`'s arguments
        (``{"image": "…", "memory": "256M"}``). Returns the ids in the order given (call
        :meth:`get` for a task itself). A batch counts its size against the enqueue rate.
        """
        built = [_spec(s) for s in specs]
        if not built:
            return []
        req = client_pb2.EnqueueBatchRequest(specs=[s.to_pb() for s in built])
        r = self._t.call(
            lambda m: m.enqueue_batch(req, metadata=self._md(), timeout=self._timeout),
            idempotent=all(s.idempotency_key is not None for s in built),
        )
        return [
            Enqueued(id=x.task_id, created=x.created, warning=x.warning or None)
            for x in r.results
        ]

    def enqueue_array(self, spec: SpecLike, indices: str, strict: bool = False) -> ArrayEnqueued:
        """Submits a job array: ``spec`` once per index, in one call, all or none. Each
        element has ``CLOUDAI_ARRAY_INDEX`` (and ``CLOUDAI_ARRAY_ID``) in its env.

        Args:
            spec: a :class:`TaskSpec` or a dict of :meth:`enqueue`'s arguments.
            indices: ``N``, ``N-M`` or ``N-M:STEP``, comma-separated (at most 100,000),
                with an optional cap ``%N`` at the end: ``"0-99%8"`` runs at most 8 at
                once.
            strict: refuse the whole array (``FailedPrecondition``) when no registered
                worker could ever take an element; without it, it is queued and an
                :class:`~cloudai.errors.UnplaceableWarning` is issued.

        Raises:
            InvalidArgument: a bad expression (the message names the problem) or spec.
        """
        built = _spec(spec)
        req = client_pb2.EnqueueArrayRequest(spec=built.to_pb(), indices=indices, strict=strict)
        r = self._t.call(
            lambda m: m.enqueue_array(req, metadata=self._md(), timeout=self._timeout),
            idempotent=built.idempotency_key is not None,
        )
        return ArrayEnqueued(
            id=r.array_id,
            size=r.size,
            created=r.created,
            max_running=r.max_running,
            first_task_id=r.first_task_id,
            warning=_warn(r.warning),
        )

    def array_counts(self, id: str) -> dict[TaskStatus, int]:
        """An array's elements per status (statuses with none left out).

        Raises:
            NotFound: no task is an element of an array with this id.
        """
        req = client_pb2.GetArrayRequest(id=id)
        r = self._t.call(
            lambda m: m.get_array(req, metadata=self._md(), timeout=self._timeout),
            idempotent=True,
        )
        return {TaskStatus.from_pb(c.status): c.count for c in r.counts}

    def get(self, id: str) -> Task:
        """One task, by its id or an unambiguous prefix of it.

        Raises:
            NotFound: no task has that id or prefix.
            InvalidArgument: the prefix matches several tasks.
        """
        req = client_pb2.GetTaskRequest(id=id)
        t = self._t.call(
            lambda m: m.get_task(req, metadata=self._md(), timeout=self._timeout),
            idempotent=True,
        )
        return Task.from_pb(t)

    def tasks(
        self,
        status: StatusFilter | None = None,
        worker: str | None = None,
        submitter: str | None = None,
        *,
        image: str | None = None,
        labels: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        oldest_first: bool = False,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> Iterator[Task]:
        """Tasks, newest first (or oldest first), fetched a page at a time as the
        iterator is consumed. Every criterion given must hold.

        Args:
            status: only these statuses (``TaskStatus.FAILED``, ``"failed"``,
                ``["queued", "running"]`` or ``"queued,running"``).
            worker: only tasks whose current or last attempt is on this worker.
            submitter: only this user's tasks.
            image: only this image, or images starting with a prefix ending in ``*``
                (``"registry.example/ml/*"``).
            labels: only tasks carrying every one of these labels with these values.
            since: only tasks created at or after this time (timezone-aware).
            until: only tasks created before this time (timezone-aware).
            text: only tasks whose id, image or a command word contains this text,
                ignoring case.
            oldest_first: ascending creation order instead of newest first.
            page_size: tasks per call (the master's default when ``None``; it caps pages
                at 1000).
            limit: stop after this many tasks.

        Errors are raised while iterating, when the page that meets them is fetched.
        """
        statuses = _statuses(status)
        if page_size is not None and page_size <= 0:
            raise InvalidArgument(f"invalid page_size {page_size}: not positive")
        if limit is not None and limit < 0:
            raise InvalidArgument(f"invalid limit {limit}: negative")
        base = client_pb2.ListTasksRequest(
            statuses=statuses, labels=dict(labels or {}), oldest_first=oldest_first
        )
        if worker is not None:
            base.worker_id = worker
        if submitter is not None:
            base.submitted_by = submitter
        if image is not None:
            base.image = image
        if text is not None:
            base.text = text
        for name, t in (("since", since), ("until", until)):
            if t is None:
                continue
            if t.tzinfo is None:
                raise InvalidArgument(f"{name} must be timezone-aware, not {t!r}")
            field = base.created_after if name == "since" else base.created_before
            field.FromDatetime(t.astimezone(timezone.utc))
        return self._tasks(base, page_size or 0, limit)

    def _tasks(
        self,
        base: client_pb2.ListTasksRequest,
        page_size: int,
        limit: int | None,
    ) -> Iterator[Task]:
        token = ""
        given = 0
        while limit is None or given < limit:
            size = page_size
            if limit is not None:
                size = min(size or limit, limit - given)
            req = client_pb2.ListTasksRequest()
            req.CopyFrom(base)
            req.limit = size
            req.page_token = token
            page = self._t.call(
                lambda m: m.list_tasks(req, metadata=self._md(), timeout=self._timeout),
                idempotent=True,
            )
            for t in page.tasks:
                yield Task.from_pb(t)
                given += 1
                if limit is not None and given >= limit:
                    return
            if not page.next_page_token or not page.tasks:
                return
            token = page.next_page_token

    def wait(
        self,
        id: str,
        timeout: units.Seconds | None = None,
        *,
        poll: units.Seconds = 1.0,
    ) -> Task:
        """Waits until the task has ended and returns it. Polls :meth:`get`, first
        after 50 ms, then at growing intervals up to ``poll`` seconds.

        Args:
            timeout: give up after this long (seconds or a ``timedelta``; ``None``: never).

        Raises:
            WaitTimeout: (a ``TimeoutError``) it had not ended in time; its ``task`` is
                the task as last seen.
        """
        deadline = None if timeout is None else time.monotonic() + units.seconds(timeout)
        longest = max(units.seconds(poll, "poll"), 0.05)
        pause = 0.05
        while True:
            task = self.get(id)
            if task.ended:
                return task
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(
                        f"task {task.id} is still {task.status.value} after {timeout} s",
                        task,
                        self.url,
                    )
                time.sleep(min(pause, left))
            else:
                time.sleep(pause)
            pause = min(pause * 1.5, longest)

    def logs(
        self,
        id: str,
        follow: bool = False,
        *,
        stdout: bool = True,
        stderr: bool = True,
        attempt: int | None = None,
    ) -> Iterator[LogLine]:
        """A task's output, line by line: what is stored, then with ``follow`` the lines
        as they are written, until the task has ended and every line is given.

        Args:
            follow: keep going until the task ends (the iterator blocks meanwhile).
            stdout, stderr: which streams (cloudai's own lines always come).
            attempt: only this attempt's output (1 for the first); ``None``: every
                attempt's.

        A stream broken by a master that went away is resumed on another (from the last
        line given, nothing twice). Close the iterator (or stop iterating) to end the
        stream early.

        Raises:
            NotFound: no task has that id.
        """
        if not stdout and not stderr:
            raise InvalidArgument("logs: choose at least one of stdout and stderr")
        return self._logs(id, follow, stdout, stderr, attempt)

    def _logs(
        self, id: str, follow: bool, stdout: bool, stderr: bool, attempt: int | None
    ) -> Iterator[LogLine]:
        lines = LineSplitter()
        after: int | None = None
        failures = 0

        def open_stream(m: Master) -> tuple[Master, _ChunkStream, list[types_pb2.LogChunk]]:
            req = client_pb2.StreamLogsRequest(
                id=id, follow=follow, stdout=stdout, stderr=stderr
            )
            if after is not None:
                req.after_seq = after
            if attempt is not None:
                req.attempt = attempt
            stream: _ChunkStream = m.stream_logs(req, metadata=self._md())
            # The first chunk (or the end) tells whether this master serves the stream.
            first = next(stream, None)
            return m, stream, [] if first is None else [first]

        while True:
            m, stream, head = self._t.call(open_stream, idempotent=True)
            try:
                for chunk in _chain(head, stream):
                    yield from lines.feed(chunk)
                    after = chunk.seq
                    failures = 0
                yield from lines.flush()
                return
            except grpc.RpcError as e:
                if e.code() is not grpc.StatusCode.UNAVAILABLE or failures > len(self._t.urls):
                    raise from_rpc_error(e, m.url) from None
                self._t.demote(m)
                failures += 1
            finally:
                stream.cancel()

    def cancel(self, id: str) -> Task:
        """Asks the master to cancel a task and returns it as it is then (a running
        task is stopped by its worker shortly after: :meth:`wait` for it).

        Raises:
            FailedPrecondition: the task has already ended.
            PermissionDenied: a submitter cancelling another user's task, or a viewer.
        """
        req = client_pb2.CancelTaskRequest(id=id)
        r = self._t.call(
            lambda m: m.cancel_task(req, metadata=self._md(), timeout=self._timeout),
            idempotent=False,
        )
        return Task.from_pb(r.task)

    def retry(self, id: str) -> Task:
        """Runs an ended task again: a new task with the same spec, labelled
        ``cloudai.retry-of`` with the old id (``Task.retry_of``), submitted by the
        caller. The old task is not changed. Returns the new task.

        Raises:
            FailedPrecondition: the task has not ended.
        """
        req = admin_pb2.RetryTaskRequest(id=id)
        r = self._t.call(
            lambda m: m.retry_task(req, metadata=self._md(), timeout=self._timeout),
            idempotent=False,
        )
        return self.get(r.task_id)

    # ---- cluster -----------------------------------------------------------------------

    def workers(self) -> list[Worker]:
        """Every worker the leader knows, with its health and free capacity."""
        req = client_pb2.ListWorkersRequest()
        r = self._t.call(
            lambda m: m.list_workers(req, metadata=self._md(), timeout=self._timeout),
            idempotent=True,
        )
        return [Worker.from_pb(w) for w in r.workers]

    def stats(self) -> Stats:
        """Tasks by status, the oldest queued task's age, tasks ended in the last minute."""
        req = client_pb2.QueueStatsRequest()
        r = self._t.call(
            lambda m: m.queue_stats(req, metadata=self._md(), timeout=self._timeout),
            idempotent=True,
        )
        return Stats.from_pb(r)


def _spec(s: SpecLike) -> TaskSpec:
    if isinstance(s, TaskSpec):
        return s
    if isinstance(s, Mapping):
        try:
            return TaskSpec.of(**s)
        except TypeError as e:
            raise InvalidArgument(f"invalid task spec {dict(s)!r}: {e}") from None
    raise TypeError(f"a task spec must be a TaskSpec or a dict, not {s!r}")


def _statuses(status: StatusFilter | None) -> list[types_pb2.TaskStatus]:
    if status is None:
        return []
    items: Iterable[TaskStatus | str]
    if isinstance(status, str):  # TaskStatus is a str too
        items = [status] if isinstance(status, TaskStatus) else status.split(",")
    else:
        items = status
    # Empty names ("queued," or "") are skipped.
    return [TaskStatus.parse(s).to_pb() for s in items if isinstance(s, TaskStatus) or s.strip()]


def _chain(
    head: list[types_pb2.LogChunk], rest: Iterator[types_pb2.LogChunk]
) -> Iterator[types_pb2.LogChunk]:
    yield from head
    yield from rest


__all__ = ["DEFAULT_URL", "Client", "SpecLike", "StatusFilter"]


def _warn(warning: str) -> str | None:
    """Issues the master's enqueue warning, if any, and returns it."""
    if not warning:
        return None
    warnings.warn(warning, UnplaceableWarning, stacklevel=3)
    return warning
