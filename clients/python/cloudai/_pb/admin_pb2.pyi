import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from . import types_pb2 as _types_pb2
from . import client_pb2 as _client_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("worker_id", "deadline")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    deadline: _duration_pb2.Duration
    def __init__(self, worker_id: _Optional[str] = ..., deadline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RetryTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TaskFilter(_message.Message):
    __slots__ = ("statuses", "worker_id", "submitted_by", "image")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[_types_pb2.TaskStatus]
    worker_id: str
    submitted_by: str
    image: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[_types_pb2.TaskStatus, str]]] = ..., worker_id: _Optional[str] = ..., submitted_by: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("filter", "dry_run", "limit")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    filter: TaskFilter
    dry_run: bool
    limit: int
    def __init__(self, filter: _Optional[_Union[TaskFilter, _Mapping]] = ..., dry_run: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class MatchResponse(_message.Message):
    __slots__ = ("task_ids", "new_task_ids", "truncated", "skipped")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    NEW_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    new_task_ids: _containers.RepeatedScalarFieldContainer[str]
    truncated: bool
    skipped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., new_task_ids: _Optional[_Iterable[str]] = ..., truncated: _Optional[bool] = ..., skipped: _Optional[_Iterable[str]] = ...) -> None: ...
