import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssignmentCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSIGNMENT_CODE_UNSPECIFIED: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_ACCEPTED: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_UNKNOWN_TASK: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_NOT_QUEUED: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_IN_BACKOFF: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_HELD_BY_DISPATCHER: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_UNKNOWN_WORKER: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_WORKER_UNSCHEDULABLE: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_DOES_NOT_FIT: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_PINNED_ELSEWHERE: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_CONSTRAINT_UNMET: _ClassVar[AssignmentCode]
    ASSIGNMENT_CODE_UNAVAILABLE: _ClassVar[AssignmentCode]
ASSIGNMENT_CODE_UNSPECIFIED: AssignmentCode
ASSIGNMENT_CODE_ACCEPTED: AssignmentCode
ASSIGNMENT_CODE_UNKNOWN_TASK: AssignmentCode
ASSIGNMENT_CODE_NOT_QUEUED: AssignmentCode
ASSIGNMENT_CODE_IN_BACKOFF: AssignmentCode
ASSIGNMENT_CODE_HELD_BY_DISPATCHER: AssignmentCode
ASSIGNMENT_CODE_UNKNOWN_WORKER: AssignmentCode
ASSIGNMENT_CODE_WORKER_UNSCHEDULABLE: AssignmentCode
ASSIGNMENT_CODE_DOES_NOT_FIT: AssignmentCode
ASSIGNMENT_CODE_PINNED_ELSEWHERE: AssignmentCode
ASSIGNMENT_CODE_CONSTRAINT_UNMET: AssignmentCode
ASSIGNMENT_CODE_UNAVAILABLE: AssignmentCode

class FetchClusterStateRequest(_message.Message):
    __slots__ = ("max_queued",)
    MAX_QUEUED_FIELD_NUMBER: _ClassVar[int]
    max_queued: int
    def __init__(self, max_queued: _Optional[int] = ...) -> None: ...

class QueuedTask(_message.Message):
    __slots__ = ("task_id", "request", "priority", "pinned_worker", "image", "labels", "constraints", "prefer", "submitted_by", "created_at", "attempts", "not_before", "reason")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PINNED_WORKER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PREFER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    request: _types_pb2.Resources
    priority: int
    pinned_worker: str
    image: str
    labels: _containers.ScalarMap[str, str]
    constraints: _containers.RepeatedCompositeFieldContainer[_types_pb2.Constraint]
    prefer: _containers.RepeatedCompositeFieldContainer[_types_pb2.Preference]
    submitted_by: str
    created_at: _timestamp_pb2.Timestamp
    attempts: int
    not_before: _timestamp_pb2.Timestamp
    reason: _types_pb2.WaitReason
    def __init__(self, task_id: _Optional[str] = ..., request: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., priority: _Optional[int] = ..., pinned_worker: _Optional[str] = ..., image: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., constraints: _Optional[_Iterable[_Union[_types_pb2.Constraint, _Mapping]]] = ..., prefer: _Optional[_Iterable[_Union[_types_pb2.Preference, _Mapping]]] = ..., submitted_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[_Union[_types_pb2.WaitReason, _Mapping]] = ...) -> None: ...

class ClusterState(_message.Message):
    __slots__ = ("workers", "queued", "dispatcher_running")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    DISPATCHER_RUNNING_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[_types_pb2.WorkerInfo]
    queued: _containers.RepeatedCompositeFieldContainer[QueuedTask]
    dispatcher_running: bool
    def __init__(self, workers: _Optional[_Iterable[_Union[_types_pb2.WorkerInfo, _Mapping]]] = ..., queued: _Optional[_Iterable[_Union[QueuedTask, _Mapping]]] = ..., dispatcher_running: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("task_id", "worker_id", "accepted", "reason", "code", "resource", "requested", "free")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    worker_id: str
    accepted: bool
    reason: str
    code: AssignmentCode
    resource: str
    requested: int
    free: int
    def __init__(self, task_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., code: _Optional[_Union[AssignmentCode, str]] = ..., resource: _Optional[str] = ..., requested: _Optional[int] = ..., free: _Optional[int] = ...) -> None: ...

class SubmitAssignmentsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AssignmentResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AssignmentResult, _Mapping]]] = ...) -> None: ...
