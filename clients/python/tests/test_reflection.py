"""gRPC server reflection v1alpha (beside v1), which grpcio-reflection's client and older
grpcurl builds speak: it lists the services and describes them, with no token even when
the master requires auth."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool

from conftest import Master

reflection = pytest.importorskip(
    "grpc_reflection.v1alpha.proto_reflection_descriptor_database",
    reason="grpcio-reflection is not installed (.ci/run installs it)",
)

SERVICES = {
    "cloudai.v1.ClientService",
    "cloudai.v1.WorkerService",
    "cloudai.v1.AgentService",
    "cloudai.v1.AdminService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


def check(url: str) -> None:
    with grpc.insecure_channel(url.removeprefix("http://")) as channel:
        db = reflection.ProtoReflectionDescriptorDatabase(channel)
        assert set(db.get_services()) >= SERVICES
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName("cloudai.v1.ClientService")
        assert "Enqueue" in svc.methods_by_name and "StreamLogs" in svc.methods_by_name
        spec = pool.FindMessageTypeByName("cloudai.v1.TaskSpec")
        assert "idempotency_key" in spec.fields_by_name


def test_reflection_v1alpha_lists_and_describes_the_services(cluster: Master) -> None:
    check(cluster.url)


def test_reflection_needs_no_token(master: Callable[..., Master]) -> None:
    check(master("--require-auth").url)
