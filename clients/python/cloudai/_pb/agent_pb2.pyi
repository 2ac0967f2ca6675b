from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FetchClusterStateRequest(_message.Message):
    __slots__ = ("max_queued",)
    MAX_QUEUED_FIELD_NUMBER: _ClassVar[int]
    max_queued: int
    def __init__(self, max_queued: _Optional[int] = ...) -> None: ...

class QueuedTask(_message.Message):
    __slots__ = ("task_id", "request", "priority", "pinned_worker", "image")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PINNED_WORKER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    request: _types_pb2.Resources
    priority: int
    pinned_worker: str
    image: str
    def __init__(self, task_id: _Optional[str] = ..., request: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., priority: _Optional[int] = ..., pinned_worker: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class ClusterState(_message.Message):
    __slots__ = ("workers", "queued")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[_types_pb2.WorkerInfo]
    queued: _containers.RepeatedCompositeFieldContainer[QueuedTask]
    def __init__(self, workers: _Optional[_Iterable[_Union[_types_pb2.WorkerInfo, _Mapping]]] = ..., queued: _Optional[_Iterable[_Union[QueuedTask, _Mapping]]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("task_id", "worker_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    worker_id: str
    def __init__(self, task_id: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class SubmitAssignmentsRequest(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ...) -> None: ...

class AssignmentResult(_message.Message):
    __slots__ = ("task_id", "worker_id", "accepted", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    worker_id: str
    accepted: bool
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class SubmitAssignmentsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AssignmentResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AssignmentResult, _Mapping]]] = ...) -> None: ...
