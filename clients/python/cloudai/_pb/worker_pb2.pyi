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

class FinishKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_KIND_UNSPECIFIED: _ClassVar[FinishKind]
    FINISH_KIND_EXITED: _ClassVar[FinishKind]
    FINISH_KIND_TIMED_OUT: _ClassVar[FinishKind]
    FINISH_KIND_CANCELLED: _ClassVar[FinishKind]
    FINISH_KIND_ERROR: _ClassVar[FinishKind]
FINISH_KIND_UNSPECIFIED: FinishKind
FINISH_KIND_EXITED: FinishKind
FINISH_KIND_TIMED_OUT: FinishKind
FINISH_KIND_CANCELLED: FinishKind
FINISH_KIND_ERROR: FinishKind

class WorkerMessage(_message.Message):
    __slots__ = ("register", "heartbeat", "event")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    event: TaskEvent
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., event: _Optional[_Union[TaskEvent, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("worker_id", "labels", "capacity", "gpu", "hostname", "version", "running", "token", "finished", "attributes")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    labels: _containers.ScalarMap[str, str]
    capacity: _types_pb2.Resources
    gpu: _types_pb2.GpuInfo
    hostname: str
    version: str
    running: _containers.RepeatedCompositeFieldContainer[AttemptRef]
    token: str
    finished: _containers.RepeatedCompositeFieldContainer[AttemptRef]
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, worker_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., gpu: _Optional[_Union[_types_pb2.GpuInfo, _Mapping]] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., running: _Optional[_Iterable[_Union[AttemptRef, _Mapping]]] = ..., token: _Optional[str] = ..., finished: _Optional[_Iterable[_Union[AttemptRef, _Mapping]]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AttemptRef(_message.Message):
    __slots__ = ("task_id", "token", "devices")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    token: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., token: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("usage", "running", "sent_at", "seq")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    usage: _types_pb2.Usage
    running: _containers.RepeatedCompositeFieldContainer[AttemptRef]
    sent_at: _timestamp_pb2.Timestamp
    seq: int
    def __init__(self, usage: _Optional[_Union[_types_pb2.Usage, _Mapping]] = ..., running: _Optional[_Iterable[_Union[AttemptRef, _Mapping]]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seq: _Optional[int] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "token", "time", "seq", "pulling", "started", "log", "finished")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PULLING_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    token: int
    time: _timestamp_pb2.Timestamp
    seq: int
    pulling: Pulling
    started: Started
    log: LogData
    finished: Finished
    def __init__(self, task_id: _Optional[str] = ..., token: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., seq: _Optional[int] = ..., pulling: _Optional[_Union[Pulling, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., log: _Optional[_Union[LogData, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ...) -> None: ...

class Pulling(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: str
    def __init__(self, progress: _Optional[str] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("container_id",)
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    def __init__(self, container_id: _Optional[str] = ...) -> None: ...

class LogData(_message.Message):
    __slots__ = ("stream", "data")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stream: _types_pb2.LogStream
    data: bytes
    def __init__(self, stream: _Optional[_Union[_types_pb2.LogStream, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("kind", "exit_code", "error")
    KIND_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: FinishKind
    exit_code: int
    error: str
    def __init__(self, kind: _Optional[_Union[FinishKind, str]] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class MasterMessage(_message.Message):
    __slots__ = ("registered", "assign", "cancel", "ack", "revoke", "heartbeat_ack")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    assign: Assign
    cancel: Cancel
    ack: Ack
    revoke: Revoke
    heartbeat_ack: HeartbeatAck
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., revoke: _Optional[_Union[Revoke, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_ms", "lease_ms", "stop_within_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    STOP_WITHIN_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_ms: int
    lease_ms: int
    stop_within_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., lease_ms: _Optional[int] = ..., stop_within_ms: _Optional[int] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class Assign(_message.Message):
    __slots__ = ("task_id", "token", "attempt", "spec", "devices")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    token: int
    attempt: int
    spec: _types_pb2.TaskSpec
    devices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., token: _Optional[int] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[_types_pb2.TaskSpec, _Mapping]] = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("task_id", "token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    token: int
    def __init__(self, task_id: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("task_id", "token", "seq")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    token: int
    seq: int
    def __init__(self, task_id: _Optional[str] = ..., token: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class Revoke(_message.Message):
    __slots__ = ("attempts", "reason")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[AttemptRef]
    reason: str
    def __init__(self, attempts: _Optional[_Iterable[_Union[AttemptRef, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...
