"""Server plumbing: health reports NOT_SERVING until told otherwise, and an address or metrics
port that cannot be listened on is a StartupError naming the setting, with nothing bound."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shortlist.common import serving
from shortlist.common.metrics import Metrics
from shortlist.common.stack import free_port

SERVICE = "shortlist.v1.Retrieval"
Status = health_pb2.HealthCheckResponse


def _status(channel: grpc.Channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_is_not_serving_until_set():
    server = serving.new_server(2)
    health = serving.add_health_and_reflection(server, [SERVICE])
    port = serving.bind(server, "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert _status(channel, "") == Status.NOT_SERVING
            assert _status(channel, SERVICE) == Status.NOT_SERVING
            serving.set_serving(health, [SERVICE])
            assert _status(channel, "") == Status.SERVING
            assert _status(channel, SERVICE) == Status.SERVING
            with pytest.raises(grpc.RpcError) as err:
                _status(channel, "shortlist.v1.Nope")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop(0)


def test_bind_returns_the_port_it_got():
    server = serving.new_server(1)
    try:
        port = serving.bind(server, "127.0.0.1:0")
        assert port > 0
    finally:
        server.stop(0)


def test_binding_a_busy_port_names_the_address_setting():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = serving.new_server(1)
        try:
            with pytest.raises(serving.StartupError) as err:
                serving.bind(server, f"127.0.0.1:{port}")
        finally:
            server.stop(0)
    assert err.value.setting == "address"
    assert str(err.value) == f"cannot listen on 127.0.0.1:{port}: port {port} is already in use"


@pytest.mark.parametrize("address", ["256.1.1.1:0", "192.0.2.1:0"])  # not ours (TEST-NET-1)
def test_binding_an_address_that_is_not_ours_is_a_startup_error(address):
    server = serving.new_server(1)
    try:
        with pytest.raises(serving.StartupError) as err:
            serving.bind(server, address)
    finally:
        server.stop(0)
    assert err.value.setting == "address" and address in str(err.value)


def test_a_busy_metrics_port_names_the_metrics_port_setting():
    metrics = Metrics("test")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = SimpleNamespace(metrics_port=port, metrics_host="127.0.0.1")
        with pytest.raises(serving.StartupError) as err:
            serving.serve_metrics(metrics, settings)
    assert err.value.setting == "metrics_port"
    assert f"port {port} is already in use" in str(err.value)


def test_metrics_are_served_only_when_a_port_is_set():
    metrics = Metrics("test")
    assert serving.serve_metrics(metrics, SimpleNamespace(metrics_port=None,
                                                          metrics_host="127.0.0.1")) is None
    port = free_port()
    try:
        assert serving.serve_metrics(metrics, SimpleNamespace(
            metrics_port=port, metrics_host="127.0.0.1")) == port
    finally:
        metrics.close()


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1:50051", ("127.0.0.1", 50051)),
    ("[::1]:7", ("::1", 7)),
    (":0", ("", 0)),
])
def test_split_address(address, expected):
    assert serving.split_address(address) == expected
    host, port = expected
    if host:
        assert serving.split_address(serving.join_address(host, port)) == expected


@pytest.mark.parametrize("address", ["localhost", "host:http", "host:70000", "unix:/tmp/s"])
def test_split_address_refuses_what_is_not_host_port(address):
    with pytest.raises(ValueError, match="HOST:PORT"):
        serving.split_address(address)
