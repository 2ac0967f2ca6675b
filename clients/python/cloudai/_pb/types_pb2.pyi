import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConstraintOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSTRAINT_OP_UNSPECIFIED: _ClassVar[ConstraintOp]
    CONSTRAINT_OP_EQ: _ClassVar[ConstraintOp]
    CONSTRAINT_OP_NE: _ClassVar[ConstraintOp]
    CONSTRAINT_OP_IN: _ClassVar[ConstraintOp]
    CONSTRAINT_OP_NOT_IN: _ClassVar[ConstraintOp]
    CONSTRAINT_OP_EXISTS: _ClassVar[ConstraintOp]

class DependencyCondition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPENDENCY_CONDITION_OK: _ClassVar[DependencyCondition]
    DEPENDENCY_CONDITION_NOT_OK: _ClassVar[DependencyCondition]
    DEPENDENCY_CONDITION_ANY: _ClassVar[DependencyCondition]

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_ASSIGNED: _ClassVar[TaskStatus]
    TASK_STATUS_RUNNING: _ClassVar[TaskStatus]
    TASK_STATUS_SUCCEEDED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]
    TASK_STATUS_TIMED_OUT: _ClassVar[TaskStatus]
    TASK_STATUS_LOST: _ClassVar[TaskStatus]
    TASK_STATUS_WAITING: _ClassVar[TaskStatus]

class WaitReasonCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_REASON_CODE_UNSPECIFIED: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_PRIORITY: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_RESOURCES: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_NO_WORKER_FITS: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_PINNED_WORKER_UNAVAILABLE: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_QUOTA: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_BACKOFF: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_DEPENDENCY: _ClassVar[WaitReasonCode]
    WAIT_REASON_CODE_BEGIN_TIME: _ClassVar[WaitReasonCode]

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    LOG_STREAM_STDOUT: _ClassVar[LogStream]
    LOG_STREAM_STDERR: _ClassVar[LogStream]
    LOG_STREAM_SYSTEM: _ClassVar[LogStream]

class WorkerHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_HEALTH_UNSPECIFIED: _ClassVar[WorkerHealth]
    WORKER_HEALTH_HEALTHY: _ClassVar[WorkerHealth]
    WORKER_HEALTH_SUSPECT: _ClassVar[WorkerHealth]
    WORKER_HEALTH_DEAD: _ClassVar[WorkerHealth]
CONSTRAINT_OP_UNSPECIFIED: ConstraintOp
CONSTRAINT_OP_EQ: ConstraintOp
CONSTRAINT_OP_NE: ConstraintOp
CONSTRAINT_OP_IN: ConstraintOp
CONSTRAINT_OP_NOT_IN: ConstraintOp
CONSTRAINT_OP_EXISTS: ConstraintOp
DEPENDENCY_CONDITION_OK: DependencyCondition
DEPENDENCY_CONDITION_NOT_OK: DependencyCondition
DEPENDENCY_CONDITION_ANY: DependencyCondition
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_ASSIGNED: TaskStatus
TASK_STATUS_RUNNING: TaskStatus
TASK_STATUS_SUCCEEDED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus
TASK_STATUS_TIMED_OUT: TaskStatus
TASK_STATUS_LOST: TaskStatus
TASK_STATUS_WAITING: TaskStatus
WAIT_REASON_CODE_UNSPECIFIED: WaitReasonCode
WAIT_REASON_CODE_PRIORITY: WaitReasonCode
WAIT_REASON_CODE_RESOURCES: WaitReasonCode
WAIT_REASON_CODE_NO_WORKER_FITS: WaitReasonCode
WAIT_REASON_CODE_PINNED_WORKER_UNAVAILABLE: WaitReasonCode
WAIT_REASON_CODE_QUOTA: WaitReasonCode
WAIT_REASON_CODE_BACKOFF: WaitReasonCode
WAIT_REASON_CODE_DEPENDENCY: WaitReasonCode
WAIT_REASON_CODE_BEGIN_TIME: WaitReasonCode
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream
LOG_STREAM_SYSTEM: LogStream
WORKER_HEALTH_UNSPECIFIED: WorkerHealth
WORKER_HEALTH_HEALTHY: WorkerHealth
WORKER_HEALTH_SUSPECT: WorkerHealth
WORKER_HEALTH_DEAD: WorkerHealth

class Resources(_message.Message):
    __slots__ = ("cpu_millis", "memory_bytes", "gpus", "disk_bytes")
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_millis: int
    memory_bytes: int
    gpus: int
    disk_bytes: int
    def __init__(self, cpu_millis: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[int] = ..., disk_bytes: _Optional[int] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("image", "command", "env", "resources", "priority", "max_attempts", "timeout", "pinned_worker", "labels", "idempotency_key", "max_lost_retries", "entrypoint", "after", "not_before", "array", "constraints", "prefer")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PINNED_WORKER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_LOST_RETRIES_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    PREFER_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    resources: Resources
    priority: int
    max_attempts: int
    timeout: _duration_pb2.Duration
    pinned_worker: str
    labels: _containers.ScalarMap[str, str]
    idempotency_key: str
    max_lost_retries: int
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    after: _containers.RepeatedCompositeFieldContainer[Dependency]
    not_before: _timestamp_pb2.Timestamp
    array: ArrayMember
    constraints: _containers.RepeatedCompositeFieldContainer[Constraint]
    prefer: _containers.RepeatedCompositeFieldContainer[Preference]
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., priority: _Optional[int] = ..., max_attempts: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., pinned_worker: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ..., max_lost_retries: _Optional[int] = ..., entrypoint: _Optional[_Iterable[str]] = ..., after: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., array: _Optional[_Union[ArrayMember, _Mapping]] = ..., constraints: _Optional[_Iterable[_Union[Constraint, _Mapping]]] = ..., prefer: _Optional[_Iterable[_Union[Preference, _Mapping]]] = ...) -> None: ...

class Constraint(_message.Message):
    __slots__ = ("key", "op", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    op: ConstraintOp
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., op: _Optional[_Union[ConstraintOp, str]] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class Preference(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ArrayMember(_message.Message):
    __slots__ = ("id", "index", "size", "max_running")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    size: int
    max_running: int
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ..., size: _Optional[int] = ..., max_running: _Optional[int] = ...) -> None: ...

class Dependency(_message.Message):
    __slots__ = ("task_id", "condition")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    condition: DependencyCondition
    def __init__(self, task_id: _Optional[str] = ..., condition: _Optional[_Union[DependencyCondition, str]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("number", "token", "worker_id", "assigned_at", "started_at", "finished_at", "outcome", "exit_code", "error", "reported_seq", "lost_to_silence")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPORTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    LOST_TO_SILENCE_FIELD_NUMBER: _ClassVar[int]
    number: int
    token: int
    worker_id: str
    assigned_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    outcome: TaskStatus
    exit_code: int
    error: str
    reported_seq: int
    lost_to_silence: bool
    def __init__(self, number: _Optional[int] = ..., token: _Optional[int] = ..., worker_id: _Optional[str] = ..., assigned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[TaskStatus, str]] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ..., reported_seq: _Optional[int] = ..., lost_to_silence: _Optional[bool] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "spec", "status", "created_at", "updated_at", "not_before", "attempts", "worker_id", "exit_code", "error", "cancel_requested", "submitted_by", "finished_at", "wait_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    WAIT_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: TaskSpec
    status: TaskStatus
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    not_before: _timestamp_pb2.Timestamp
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    worker_id: str
    exit_code: int
    error: str
    cancel_requested: bool
    submitted_by: str
    finished_at: _timestamp_pb2.Timestamp
    wait_reason: WaitReason
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., worker_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ..., cancel_requested: _Optional[bool] = ..., submitted_by: _Optional[str] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., wait_reason: _Optional[_Union[WaitReason, _Mapping]] = ...) -> None: ...

class WaitReason(_message.Message):
    __slots__ = ("code", "detail", "until")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    code: WaitReasonCode
    detail: str
    until: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[_Union[WaitReasonCode, str]] = ..., detail: _Optional[str] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("seq", "stream", "time", "data", "attempt")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    seq: int
    stream: LogStream
    time: _timestamp_pb2.Timestamp
    data: bytes
    attempt: int
    def __init__(self, seq: _Optional[int] = ..., stream: _Optional[_Union[LogStream, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[bytes] = ..., attempt: _Optional[int] = ...) -> None: ...

class GpuInfo(_message.Message):
    __slots__ = ("count", "model", "devices")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    count: int
    model: str
    devices: _containers.RepeatedCompositeFieldContainer[GpuDevice]
    def __init__(self, count: _Optional[int] = ..., model: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[GpuDevice, _Mapping]]] = ...) -> None: ...

class GpuDevice(_message.Message):
    __slots__ = ("index", "uuid", "model", "memory_mib", "task_id")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    model: str
    memory_mib: int
    task_id: str
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., model: _Optional[str] = ..., memory_mib: _Optional[int] = ..., task_id: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("cpu_percent", "memory_used_bytes", "memory_total_bytes")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    def __init__(self, cpu_percent: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("id", "labels", "capacity", "free", "health", "last_heartbeat", "running_task_ids", "usage", "gpu", "hostname", "version", "cordoned", "drain_deadline", "attributes")
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
    ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    DRAIN_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    labels: _containers.ScalarMap[str, str]
    capacity: Resources
    free: Resources
    health: WorkerHealth
    last_heartbeat: _timestamp_pb2.Timestamp
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    usage: Usage
    gpu: GpuInfo
    hostname: str
    version: str
    cordoned: bool
    drain_deadline: _timestamp_pb2.Timestamp
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[_Union[Resources, _Mapping]] = ..., free: _Optional[_Union[Resources, _Mapping]] = ..., health: _Optional[_Union[WorkerHealth, str]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., gpu: _Optional[_Union[GpuInfo, _Mapping]] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., cordoned: _Optional[bool] = ..., drain_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...
