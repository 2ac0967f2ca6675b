"""Several master URLs: a dead one is skipped, a master that dies mid-session is left for
the next, a standby's pointer to the leader is followed (even to a URL not in the list),
and a call that may have been acted on is not sent twice.

The standby here is a small gRPC server in the test that refuses as a cloudai standby
does (``UNAVAILABLE`` with ``cloudai-leader-url``, ``proto/PROTOCOL.md`` "Redirects"):
a real one needs a MongoDB replica set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

import cloudai
from cloudai._pb import client_pb2, client_pb2_grpc
from conftest import Master, free_port

IMAGE = "cloudai/fake:test"


def dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


class FakeMaster(grpc.GenericRpcHandler):
    """Answers every ClientService call with UNAVAILABLE, naming ``leader`` (if any) in
    ``cloudai-leader-url`` as a standby does; records the methods called."""

    def __init__(self, leader: str | None, message: str) -> None:
        self.leader = leader
        self.message = message
        self.calls: list[str] = []

    def service(
        self, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method: str = details.method  # type: ignore[attr-defined]
        if not method.startswith("/cloudai.v1."):
            return None  # health checks: UNIMPLEMENTED, i.e. it answers

        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append(method.rsplit("/", 1)[-1])
            if self.leader:
                context.set_trailing_metadata((("cloudai-leader-url", self.leader),))
            context.abort(grpc.StatusCode.UNAVAILABLE, self.message)

        return grpc.unary_unary_rpc_method_handler(refuse)


class BreakingProxy(grpc.GenericRpcHandler):
    """Serves StreamLogs from the real master at ``upstream``, but breaks each stream
    with UNAVAILABLE after its first chunk, as a master that went away mid-stream."""

    def __init__(self, upstream: str) -> None:
        self.channel = grpc.insecure_channel(upstream.removeprefix("http://"))
        self.stub = client_pb2_grpc.ClientServiceStub(self.channel)
        self.requests: list[client_pb2.StreamLogsRequest] = []

    def service(
        self, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        if details.method != "/cloudai.v1.ClientService/StreamLogs":  # type: ignore[attr-defined]
            return None

        def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            req = client_pb2.StreamLogsRequest.FromString(request)
            self.requests.append(req)
            for chunk in self.stub.StreamLogs(req):
                yield chunk.SerializeToString()
                break
            context.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")

        return grpc.unary_stream_rpc_method_handler(stream)


@pytest.fixture
def fake_master() -> Iterator[Callable[[str | None, str], tuple[str, FakeMaster]]]:
    servers: list[grpc.Server] = []

    def start(leader: str | None, message: str) -> tuple[str, FakeMaster]:
        handler = FakeMaster(leader, message)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{port}", handler

    yield start
    for s in servers:
        s.stop(grace=None)


def test_a_dead_first_url_is_skipped(cluster: Master) -> None:
    dead = dead_url()
    with cloudai.Client([dead, cluster.url]) as c:
        # An enqueue too: it could not have reached the dead one.
        task = c.enqueue(IMAGE, env={"CLOUDAI_FAKE_RUN_MS": "1"})
        assert c.url == cluster.url
        assert c.wait(task.id, timeout=30).status is cloudai.TaskStatus.SUCCEEDED
    # A comma-separated string, as CLOUDAI_MASTER.
    with cloudai.Client(f"{dead},{cluster.url}") as c:
        assert c.stats().total >= 1 and c.url == cluster.url


def test_a_master_that_dies_is_left_for_the_next(master: Callable[..., Master]) -> None:
    m1, m2 = master(name="m1"), master(name="m2")
    with cloudai.Client([m1.url, m2.url]) as c:
        first = c.enqueue(IMAGE)
        assert c.url == m1.url
        m1.proc.kill()
        assert c.stats()["queued"] == 0  # m2's store, not m1's
        assert c.url == m2.url
        # It stays with the one that answers.
        c.enqueue(IMAGE)
        assert c.stats()["queued"] == 1 and c.url == m2.url
        with pytest.raises(cloudai.NotFound):
            c.get(first.id)


def test_no_master_answering_is_unavailable_naming_each() -> None:
    a, b = dead_url(), dead_url()
    with cloudai.Client([a, b], connect_timeout=2) as c:
        with pytest.raises(cloudai.Unavailable) as e:
            c.stats()
        assert e.value.code is grpc.StatusCode.UNAVAILABLE
        assert a in e.value.message and b in e.value.message


def test_a_standby_sends_the_call_to_the_leader(
    cluster: Master, fake_master: Callable[[str | None, str], tuple[str, FakeMaster]]
) -> None:
    standby, calls = fake_master(
        cluster.url, f"this master is a standby; the leader is m1 at {cluster.url}"
    )
    # Only the standby is listed: the leader's URL comes from its refusal.
    with cloudai.Client(standby) as c:
        workers = c.workers()
        assert "w1" in [w.id for w in workers]
        assert c.url == cluster.url
        assert calls.calls == ["ListWorkers"]
    # A refused enqueue was not acted on: it goes to the leader too.
    with cloudai.Client(standby) as c:
        task = c.enqueue(IMAGE, env={"CLOUDAI_FAKE_RUN_MS": "1"})
        assert c.get(task.id).id == task.id and c.url == cluster.url
        assert calls.calls == ["ListWorkers", "Enqueue"]


def test_a_standby_without_a_leader_sends_the_call_to_the_next_url(
    cluster: Master, fake_master: Callable[[str | None, str], tuple[str, FakeMaster]]
) -> None:
    standby, calls = fake_master(None, "this master is a standby; no leader is known yet")
    with cloudai.Client([standby, cluster.url]) as c:
        assert "w1" in [w.id for w in c.workers()]
        assert calls.calls == ["ListWorkers"] and c.url == cluster.url


def test_an_enqueue_that_may_have_landed_is_not_sent_again(
    master: Callable[..., Master],
    fake_master: Callable[[str | None, str], tuple[str, FakeMaster]],
) -> None:
    # A master whose store timed out: the enqueue may still land there.
    flaky, calls = fake_master(None, "store did not answer within 5s (--store-timeout)")
    other = master()
    with cloudai.Client([flaky, other.url]) as c:
        with pytest.raises(cloudai.Unavailable) as e:
            c.enqueue(IMAGE)
        assert "store" in e.value.message and e.value.url == flaky
        assert calls.calls == ["Enqueue"]
    with other.client() as o:
        assert o.stats()["queued"] == 0  # nothing was sent to the other
    # With an idempotency key, resending is safe, so it goes on to the next.
    with cloudai.Client([flaky, other.url]) as c:
        task = c.enqueue(IMAGE, idempotency_key="same-task")
        assert c.url == other.url and c.get(task.id).spec.idempotency_key == "same-task"
        assert calls.calls == ["Enqueue", "Enqueue"]


def test_reads_go_on_to_the_next_master_after_any_unavailable(
    cluster: Master, fake_master: Callable[[str | None, str], tuple[str, FakeMaster]]
) -> None:
    flaky, calls = fake_master(None, "store did not answer")
    with cloudai.Client([flaky, cluster.url]) as c:
        assert c.stats().total >= 0 and c.url == cluster.url
        assert calls.calls == ["QueueStats"]


def test_a_log_stream_starts_on_the_next_master(
    client: cloudai.Client,
    cluster: Master,
    fake_master: Callable[[str | None, str], tuple[str, FakeMaster]],
) -> None:
    task = client.enqueue(IMAGE, env={"CLOUDAI_FAKE_STDOUT": "hi", "CLOUDAI_FAKE_RUN_MS": "1"})
    client.wait(task.id, timeout=30)
    flaky, calls = fake_master(None, "store did not answer")
    with cloudai.Client([flaky, cluster.url]) as c:
        assert [l.text for l in c.logs(task.id, follow=True)] == ["hi"]
        assert calls.calls == ["StreamLogs"]



def test_a_broken_log_stream_resumes_on_the_next_master(
    client: cloudai.Client, cluster: Master
) -> None:
    proxy = BreakingProxy(cluster.url)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[proxy])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        task = client.enqueue(
            IMAGE, env={"CLOUDAI_FAKE_STDOUT": "a\nb\nc", "CLOUDAI_FAKE_RUN_MS": "1500"}
        )
        with cloudai.Client([f"http://127.0.0.1:{port}", cluster.url]) as c:
            got = [(l.text, l.seq) for l in c.logs(task.id, follow=True)]
        # Each line once, in order: the rest came from the real master, after the first.
        assert [t for t, _ in got] == ["a", "b", "c"]
        (req,) = proxy.requests
        assert req.follow and not req.HasField("after_seq")
        assert c.url == cluster.url
        assert client.get(task.id).ended
    finally:
        server.stop(grace=None)
        proxy.channel.close()
