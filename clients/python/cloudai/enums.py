"""The enums of the protocol as Python users expect them: string values that compare
equal to their lowercase names, and a member for values a newer master may send."""

from __future__ import annotations

from enum import Enum

from ._pb import types_pb2
from .errors import InvalidArgument


class TaskStatus(str, Enum):
    """Where a task is in its life. Compares equal to its lowercase name
    (``TaskStatus.SUCCEEDED == "succeeded"``)."""

    #: Its parents (``after``) have not ended as it needs; not dispatched yet.
    WAITING = "waiting"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    #: A status this client does not know (sent by a newer master).
    UNKNOWN = "unknown"

    @property
    def ended(self) -> bool:
        """True once the task can change no more (succeeded, failed, cancelled, timed
        out or lost)."""
        return self in _ENDED

    def to_pb(self) -> types_pb2.TaskStatus:
        if self is TaskStatus.UNKNOWN:
            raise InvalidArgument("no task has the status 'unknown' to filter by")
        return _STATUS_TO_PB[self]

    @classmethod
    def from_pb(cls, value: int) -> TaskStatus:
        return _STATUS_FROM_PB.get(value, cls.UNKNOWN)

    @classmethod
    def parse(cls, value: TaskStatus | str) -> TaskStatus:
        """A status from itself or its name (``"timed_out"``, case-insensitive)."""
        if isinstance(value, TaskStatus):
            return value
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(s.value for s in cls if s is not cls.UNKNOWN)
            raise InvalidArgument(
                f"invalid task status {value!r}: expected one of {names}"
            ) from None


_STATUS_TO_PB: dict[TaskStatus, types_pb2.TaskStatus] = {
    TaskStatus.WAITING: types_pb2.TASK_STATUS_WAITING,
    TaskStatus.QUEUED: types_pb2.TASK_STATUS_QUEUED,
    TaskStatus.ASSIGNED: types_pb2.TASK_STATUS_ASSIGNED,
    TaskStatus.RUNNING: types_pb2.TASK_STATUS_RUNNING,
    TaskStatus.SUCCEEDED: types_pb2.TASK_STATUS_SUCCEEDED,
    TaskStatus.FAILED: types_pb2.TASK_STATUS_FAILED,
    TaskStatus.CANCELLED: types_pb2.TASK_STATUS_CANCELLED,
    TaskStatus.TIMED_OUT: types_pb2.TASK_STATUS_TIMED_OUT,
    TaskStatus.LOST: types_pb2.TASK_STATUS_LOST,
}
_STATUS_FROM_PB: dict[int, TaskStatus] = {v: k for k, v in _STATUS_TO_PB.items()}

_ENDED = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
        TaskStatus.LOST,
    }
)


class LogStream(str, Enum):
    """Which output a log line comes from."""

    STDOUT = "stdout"
    STDERR = "stderr"
    #: Written by cloudai itself, e.g. the marker for dropped old output.
    SYSTEM = "system"

    @classmethod
    def from_pb(cls, value: int) -> LogStream:
        if value == types_pb2.LOG_STREAM_STDERR:
            return cls.STDERR
        if value == types_pb2.LOG_STREAM_STDOUT:
            return cls.STDOUT
        return cls.SYSTEM


class WorkerHealth(str, Enum):
    """What the master makes of a worker's heartbeats."""

    HEALTHY = "healthy"
    #: One heartbeat interval missed.
    SUSPECT = "suspect"
    #: Silent for ``--dead-after`` intervals: its attempts were recorded lost.
    DEAD = "dead"
    UNKNOWN = "unknown"

    @classmethod
    def from_pb(cls, value: int) -> WorkerHealth:
        health: dict[int, WorkerHealth] = {
            types_pb2.WORKER_HEALTH_HEALTHY: cls.HEALTHY,
            types_pb2.WORKER_HEALTH_SUSPECT: cls.SUSPECT,
            types_pb2.WORKER_HEALTH_DEAD: cls.DEAD,
        }
        return health.get(value, cls.UNKNOWN)
