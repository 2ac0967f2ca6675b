"""Each gRPC refusal becomes its exception class, carrying the code, the master's message
and its URL; auth (tokens and roles) and the enqueue rate limit against masters started
for the purpose."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

import cloudai
from conftest import Master

IMAGE = "cloudai/fake:test"
UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"


def test_unknown_id_is_not_found(client: cloudai.Client, cluster: Master) -> None:
    for call in (client.get, client.cancel, client.retry):
        with pytest.raises(cloudai.NotFound) as e:
            call(UNKNOWN_ID)
        assert e.value.code is grpc.StatusCode.NOT_FOUND
        assert e.value.url == cluster.url and e.value.message
        assert isinstance(e.value, LookupError) and isinstance(e.value, cloudai.CloudaiError)
    with pytest.raises(cloudai.NotFound):
        list(client.logs(UNKNOWN_ID))


def test_a_bad_image_is_an_invalid_argument_naming_the_field(client: cloudai.Client) -> None:
    with pytest.raises(cloudai.InvalidArgument) as e:
        client.enqueue("Not An Image!")
    assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "image" in e.value.message
    assert isinstance(e.value, ValueError)
    assert "INVALID_ARGUMENT" in str(e.value)


def test_arguments_the_client_checks_itself(client: cloudai.Client) -> None:
    # Found before any call: InvalidArgument without a gRPC code.
    for kwargs in ({"memory": "12Q"}, {"cpu": "fast"}, {"timeout": -1}, {"gpus": -1}):
        with pytest.raises(cloudai.InvalidArgument) as e:
            client.enqueue(IMAGE, **kwargs)  # type: ignore[arg-type]
        assert e.value.code is None
    with pytest.raises(TypeError):
        client.enqueue(IMAGE, command="echo hi")  # type: ignore[arg-type]


def test_a_pinned_unknown_worker_is_not_found(client: cloudai.Client) -> None:
    with pytest.raises(cloudai.NotFound) as e:
        client.enqueue(IMAGE, worker="no-such-worker")
    assert "unknown worker" in e.value.message


def test_an_ambiguous_prefix_is_an_invalid_argument(client: cloudai.Client) -> None:
    # Every id starts with "0" for centuries to come.
    client.enqueue_many([{"image": IMAGE, "env": {"CLOUDAI_FAKE_RUN_MS": "1"}}] * 2)
    with pytest.raises(cloudai.InvalidArgument) as e:
        client.get("0")
    assert "ambiguous" in e.value.message


def test_tokens_and_roles(master: Callable[..., Master]) -> None:
    m = master("--require-auth", users={"vera": "viewer", "sam": "submitter", "sue": "submitter"})
    with m.client() as anonymous:
        with pytest.raises(cloudai.Unauthenticated) as e:
            anonymous.stats()
        assert e.value.code is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(cloudai.Unauthenticated):
            anonymous.enqueue(IMAGE)
    with m.client(token="cai_not-a-real-token") as wrong, pytest.raises(cloudai.Unauthenticated):
        wrong.tasks().__next__()
    with m.client(token=m.tokens["vera"]) as viewer:
        viewer.stats()  # reads are a viewer's
        assert list(viewer.tasks()) == []
        with pytest.raises(cloudai.PermissionDenied) as p:
            viewer.enqueue(IMAGE)
        assert p.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert "viewer" in p.value.message
    with m.client(token=m.tokens["sam"]) as submitter:
        task = submitter.enqueue(IMAGE)
        assert task.submitted_by == "sam"
        assert [t.id for t in submitter.tasks(submitter="sam")] == [task.id]
    with m.client(token=m.tokens["sue"]) as other:
        # A submitter cancels only its own tasks.
        with pytest.raises(cloudai.PermissionDenied):
            other.cancel(task.id)
        assert list(other.tasks(submitter="sue")) == []
    with pytest.raises(cloudai.InvalidArgument):
        m.client(token="  ")


def test_over_the_enqueue_rate_is_resource_exhausted_with_retry_after(
    master: Callable[..., Master],
) -> None:
    m = master("--enqueue-rate", "1", "--enqueue-burst", "2")
    with m.client() as c:
        c.enqueue_many([{"image": IMAGE}] * 2)
        with pytest.raises(cloudai.ResourceExhausted) as e:
            # The burst is spent; at 1/s the next enqueue or so is refused (a few, on a
            # machine slow enough to earn a token back in between).
            for i in range(20):
                c.enqueue(IMAGE, idempotency_key=f"k{i}")
        err = e.value
        assert err.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--enqueue-rate" in err.message
        assert err.retry_after is not None and 0 < err.retry_after <= 1.0
        # A batch over the burst can never pass: no retry_after.
        with pytest.raises(cloudai.ResourceExhausted) as big:
            c.enqueue_many([{"image": IMAGE}] * 3)
        assert big.value.retry_after is None and "split it" in big.value.message
