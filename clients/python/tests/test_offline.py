"""What needs no master: units, spec conversion, lines from chunks, the retry-after
reading, the checked-in stubs against the protos, and the installed package's files."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

import pytest

import cloudai
from cloudai import LogStream, TaskSpec, TaskStatus, units
from cloudai._pb import types_pb2
from cloudai.errors import retry_after
from cloudai.logs import LineSplitter

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text,want",
    [
        ("256M", 256 << 20),
        ("256m", 256 << 20),
        ("1.5G", 3 << 29),
        ("512MiB", 512 << 20),
        ("2Ki", 2048),
        ("1GB", 10**9),
        ("1.5kb", 1500),
        ("1000000", 10**6),
        (" 64 B ", 64),
        (".5K", 512),
        (4096, 4096),
    ],
)
def test_memory(text: str | int, want: int) -> None:
    assert units.memory_bytes(text) == want


@pytest.mark.parametrize("text", ["", "M", "12Q", "1.5", "0.3B", "-1", "1e3", "99999999T"])
def test_bad_memory(text: str) -> None:
    with pytest.raises(cloudai.InvalidArgument):
        units.memory_bytes(text)


def test_unit_types() -> None:
    with pytest.raises(TypeError):
        units.memory_bytes(True)
    with pytest.raises(TypeError):
        units.memory_bytes(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        units.duration("30s")  # type: ignore[arg-type]


def test_cpu_and_durations() -> None:
    assert units.cpu_millis(0.5) == 500
    assert units.cpu_millis(2) == 2000
    assert units.cpu_millis("250m") == 250
    assert units.cpu_millis("1.5") == 1500
    for bad in ("fast", "0.0001", "-1", "m"):
        with pytest.raises(cloudai.InvalidArgument):
            units.cpu_millis(bad)
    assert units.duration(1.5) == timedelta(seconds=1.5)
    assert units.duration(timedelta(minutes=2)) == timedelta(minutes=2)
    assert units.seconds(timedelta(milliseconds=250)) == 0.25
    with pytest.raises(cloudai.InvalidArgument):
        units.duration(-0.1)
    with pytest.raises(cloudai.InvalidArgument):
        units.duration(float("nan"))


def test_spec_to_protocol_and_back() -> None:
    spec = TaskSpec.of(
        "img:1",
        command=["a", "b"],
        entrypoint="",
        env={"K": "V"},
        cpu="250m",
        memory="1.5G",
        gpus=1,
        priority=-2,
        retries=0,
        timeout=2.5,
        worker="w-1",
        labels={"l": "x"},
        idempotency_key="key",
    )
    pb = spec.to_pb()
    assert pb.resources.memory_bytes == 3 << 29 and pb.resources.cpu_millis == 250
    assert pb.max_attempts == 1 and pb.timeout.ToMilliseconds() == 2500
    assert list(pb.entrypoint) == [""] and pb.pinned_worker == "w-1"
    assert TaskSpec.from_pb(pb) == spec
    # Unset fields stay unset both ways.
    bare = TaskSpec.of("img:1")
    pb = bare.to_pb()
    assert not pb.HasField("timeout") and not pb.HasField("pinned_worker")
    assert not pb.HasField("idempotency_key") and pb.max_attempts == 0
    assert TaskSpec.from_pb(pb) == bare
    assert hash(bare) == hash(TaskSpec.of("img:1"))
    with pytest.raises(TypeError):
        TaskSpec.of("img:1", command="echo hi")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TaskSpec.of("img:1", gpus=1.5)  # type: ignore[arg-type]
    with pytest.raises(cloudai.InvalidArgument):
        TaskSpec.of("img:1", retries=-1)
    with pytest.raises(Exception):
        spec.image = "other"  # type: ignore[misc]  # frozen


def test_statuses() -> None:
    assert TaskStatus.parse("Timed_Out") is TaskStatus.TIMED_OUT
    assert TaskStatus.from_pb(types_pb2.TASK_STATUS_LOST) is TaskStatus.LOST
    assert TaskStatus.from_pb(99) is TaskStatus.UNKNOWN  # a newer master's
    assert TaskStatus.FAILED.to_pb() == types_pb2.TASK_STATUS_FAILED
    assert [s.ended for s in (TaskStatus.RUNNING, TaskStatus.LOST)] == [False, True]
    with pytest.raises(cloudai.InvalidArgument):
        TaskStatus.parse("done")


def chunk(
    seq: int, data: bytes, stream: int = types_pb2.LOG_STREAM_STDOUT, attempt: int = 1
) -> types_pb2.LogChunk:
    c = types_pb2.LogChunk(seq=seq, stream=stream, data=data, attempt=attempt)  # type: ignore
    c.time.FromDatetime(datetime(2026, 1, 1, 0, 0, seq, tzinfo=timezone.utc))
    return c


def test_lines_from_chunks() -> None:
    s = LineSplitter()
    got = list(s.feed(chunk(1, b"one\ntw")))
    got += list(s.feed(chunk(2, b"err\n", types_pb2.LOG_STREAM_STDERR)))
    got += list(s.feed(chunk(3, b"o\nthree\n\xe2\x82")))
    got += list(s.feed(chunk(4, b"\xac no newline")))
    got += list(s.flush())
    assert [(l.text, l.stream, l.seq) for l in got] == [
        ("one", LogStream.STDOUT, 1),
        ("err", LogStream.STDERR, 2),
        ("two", LogStream.STDOUT, 3),
        ("three", LogStream.STDOUT, 3),
        ("\u20ac no newline", LogStream.STDOUT, 4),
    ]
    # A line's time is that of the chunk it began in.
    assert [l.time.second for l in got if l.time] == [1, 2, 1, 3, 3]
    assert list(s.flush()) == []


def test_attempts_do_not_mix_in_a_line() -> None:
    s = LineSplitter()
    got = list(s.feed(chunk(1, b"a", attempt=1))) + list(s.feed(chunk(2, b"b\n", attempt=2)))
    got += list(s.flush())
    assert [(l.text, l.attempt) for l in got] == [("b", 2), ("a", 1)]


def test_retry_after() -> None:
    assert retry_after("x", [("grpc-retry-pushback-ms", "250")]) == 0.25
    assert retry_after("x", [("grpc-retry-pushback-ms", b"1500")]) == 1.5
    msg = "enqueue rate limit exceeded for client ip:1: ... (--enqueue-rate); retry in 120 ms"
    assert retry_after(msg, None) == 0.12
    assert retry_after("the queue is full (--max-queued)", []) is None


def test_urls_and_credentials() -> None:
    with pytest.raises(cloudai.InvalidArgument):
        cloudai.Client([])
    with pytest.raises(cloudai.InvalidArgument):
        cloudai.Client("ftp://m:1")
    with pytest.raises(cloudai.InvalidArgument):
        cloudai.Client("http://m:1", ca=b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(cloudai.InvalidArgument):
        cloudai.Client("https://m:1", ca="/no/such/ca.pem")
    c = cloudai.Client(" http://a:1 , b:2 ")
    assert c._t.urls == ["http://a:1", "b:2"] and c.url == "http://a:1"
    c.close()


def test_the_checked_in_stubs_match_the_protos() -> None:
    """cloudai/_pb/ is what regen.py makes from proto/ now (CI fails on a proto change
    without regenerated stubs)."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (.ci/run installs it)")
    spec = importlib.util.spec_from_file_location("regen", PACKAGE_ROOT / "regen.py")
    assert spec and spec.loader
    regen = importlib.util.module_from_spec(spec)
    sys.modules["regen"] = regen
    spec.loader.exec_module(regen)
    problems = regen.check()
    assert not problems, "\n".join(problems) + "\nrun: python clients/python/regen.py"


def test_the_installed_package_has_its_stubs_and_marker() -> None:
    try:
        files = {str(f) for f in metadata.files("cloudai") or []}
    except metadata.PackageNotFoundError:
        pytest.skip("the cloudai package is not installed (pip install ./clients/python)")
    for want in ("cloudai/py.typed", "cloudai/_pb/client_pb2.py", "cloudai/_pb/client_pb2.pyi",
                 "cloudai/_pb/admin_pb2_grpc.py", "cloudai/client.py"):
        assert want in files, sorted(files)
