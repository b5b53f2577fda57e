"""The launcher: addresses, the busy-port refusal, port ownership, restart backoff.

The supervision itself (a killed server restarted under `serve`) is an end-to-end test in
tests/reliability/test_faults.py.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shortlist.common.serving import bind_problem
from shortlist.common.stack import (
    Backoff,
    Stack,
    UsageError,
    describe_exit,
    free_port,
    free_ports,
    listening_socket_inodes,
    owns_listening_port,
    serve_addresses,
)

LINUX_PROC = Path("/proc/net/tcp").exists()


def listener(host: str = "127.0.0.1", family: int = socket.AF_INET) -> socket.socket:
    """A socket listening on a free port: "another process" already on a port."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen()
    return s


def stack_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shortlist.common.stack", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_backoff_doubles_from_half_a_second_to_a_cap():
    backoff = Backoff()
    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert Backoff(first_s=1, max_s=5).delay(10) == 5


def test_exits_are_described_by_code_or_signal():
    assert describe_exit(2) == "exit code 2"
    assert describe_exit(-9) == "killed by SIGKILL"


def test_addresses_follow_the_chosen_hosts_and_ports():
    stack = Stack.at(Path("art"), {"gateway": "0.0.0.0:6051", "retrieval": "127.0.0.2:6052",
                                   "ranking": "[::]:6053"})
    assert stack.bind_address("gateway") == "0.0.0.0:6051"
    assert stack.address("gateway") == "127.0.0.1:6051"  # wildcard: dialled on loopback
    assert stack.bind_address("ranking") == "[::]:6053"
    gateway = stack.environment("gateway")
    assert gateway["SHORTLIST_GATEWAY_ADDRESS"] == "0.0.0.0:6051"
    assert gateway["SHORTLIST_GATEWAY_RETRIEVAL_TARGET"] == "127.0.0.2:6052"
    assert gateway["SHORTLIST_GATEWAY_RANKING_TARGET"] == "127.0.0.1:6053"
    assert stack.environment("ranking")["SHORTLIST_RANKING_ADDRESS"] == "[::]:6053"
    default = Stack(Path("art"))
    assert [default.address(n) for n in ("gateway", "retrieval", "ranking")] == [
        "127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]


def serve_args(*argv: str) -> argparse.Namespace:
    values = dict.fromkeys([f"{n}_{kind}" for n in ("gateway", "retrieval", "ranking")
                            for kind in ("address", "metrics_port")])
    values["metrics"] = "--metrics" in argv
    pairs = [a for a in argv if a != "--metrics"]
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        values[key.lstrip("-").replace("-", "_")] = value
    return argparse.Namespace(**values)


def test_serve_addresses_come_from_options_then_environment_then_defaults():
    env = {"SHORTLIST_GATEWAY_ADDRESS": "127.0.0.1:7001", "SHORTLIST_RANKING_ADDRESS":
           "127.0.0.1:7003", "SHORTLIST_RANKING_METRICS_PORT": "7103"}
    addresses, metrics = serve_addresses(serve_args("--ranking-address", "0.0.0.0:8003"), env)
    assert addresses == {"gateway": "127.0.0.1:7001", "retrieval": "127.0.0.1:50052",
                         "ranking": "0.0.0.0:8003"}
    assert metrics == {"ranking": 7103}  # a metrics port in the environment is served anyway
    _, metrics = serve_addresses(serve_args("--metrics", "--gateway-metrics-port", "8101"), {})
    assert metrics == {"gateway": 8101, "retrieval": 9102, "ranking": 9103}
    for bad in (("--gateway-address", "nope"), ("--gateway-address", "127.0.0.1:0"),
                ("--gateway-metrics-port", "x")):
        with pytest.raises(UsageError, match="--gateway-"):
            serve_addresses(serve_args(*bad), {})


def test_bind_problem_names_a_port_in_use():
    with listener() as s:
        port = s.getsockname()[1]
        assert bind_problem("127.0.0.1", port) == f"port {port} is already in use"
        assert bind_problem("0.0.0.0", port) == f"port {port} is already in use"
    assert bind_problem("127.0.0.1", free_port()) is None


def test_free_ports_are_distinct_within_one_call():
    # the kernel may return a just-released port again; one call must never repeat one
    ports = free_ports(64)
    assert len(set(ports)) == 64


def test_serve_refuses_a_busy_gateway_port_with_one_line_before_starting_anything(tmp_path):
    with listener() as s:
        port = s.getsockname()[1]
        # no artifacts at all: the refusal comes before anything is loaded or started
        retrieval, ranking = free_ports(2)
        proc = stack_cli("serve", "--artifacts", str(tmp_path / "none"),
                         "--gateway-address", f"127.0.0.1:{port}",
                         "--retrieval-address", f"127.0.0.1:{retrieval}",
                         "--ranking-address", f"127.0.0.1:{ranking}")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: port {port} (gateway) is already in use; choose another with "
        "--gateway-address HOST:PORT (or SHORTLIST_GATEWAY_ADDRESS)"]
    assert not (tmp_path / "state").exists()


def test_serve_refuses_a_busy_metrics_port_and_check_passes_free_ones(tmp_path):
    with listener() as s:
        port = s.getsockname()[1]
        # one call for all five free ports: separate calls may return the same port twice
        *servers, gateway_metrics, retrieval_metrics = free_ports(5)
        ports = [f"127.0.0.1:{p}" for p in servers]
        addresses = [a for name, address in zip(("gateway", "retrieval", "ranking"), ports,
                                                strict=True)
                     for a in (f"--{name}-address", address)]
        proc = stack_cli("serve", "--artifacts", str(tmp_path), "--metrics", *addresses,
                         "--gateway-metrics-port", str(gateway_metrics),
                         "--retrieval-metrics-port", str(retrieval_metrics),
                         "--ranking-metrics-port", str(port))
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [
        f"error: port {port} (ranking metrics) is already in use; choose another with "
        "--ranking-metrics-port PORT (or SHORTLIST_RANKING_METRICS_PORT)"]
    ok = stack_cli("check", *addresses)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")


def test_serve_refuses_an_address_it_cannot_parse():
    proc = stack_cli("check", env={"SHORTLIST_RETRIEVAL_ADDRESS": "localhost"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: retrieval address 'localhost' is not HOST:PORT; choose another with "
        "--retrieval-address HOST:PORT (or SHORTLIST_RETRIEVAL_ADDRESS)"]


@pytest.mark.skipif(not LINUX_PROC, reason="needs Linux /proc/net/tcp")
def test_owns_listening_port_tells_our_listener_from_another_process():
    with listener() as s:
        port = s.getsockname()[1]
        assert owns_listening_port(os.getpid(), port) is True
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert owns_listening_port(other.pid, port) is False
        finally:
            other.kill()
            other.wait()
    with socket.socket() as bound:  # bound but not listening: not a server
        bound.bind(("127.0.0.1", 0))
        assert owns_listening_port(os.getpid(), bound.getsockname()[1]) is False


@pytest.mark.skipif(not socket.has_ipv6 or not LINUX_PROC, reason="needs IPv6 and /proc")
def test_owns_listening_port_sees_ipv6_listeners():
    try:
        s = listener("::1", socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    with s:
        assert owns_listening_port(os.getpid(), s.getsockname()[1]) is True


def test_listening_sockets_are_read_from_proc_tables(tmp_path):
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt" \
             "   uid  timeout inode\n"
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(
        header
        # 127.0.0.1:50051 LISTEN, inode 111; an established connection from that port, 222
        + "   0: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
          "  1000        0 111 1 0000000000000000 100 0 0 10 0\n"
        + "   1: 0100007F:C383 0100007F:D431 01 00000000:00000000 00:00000000 00000000"
          "  1000        0 222 1 0000000000000000 20 4 30 10 -1\n")
    (tmp_path / "net" / "tcp6").write_text(
        header + "   0: 00000000000000000000000000000000:C385 00000000000000000000000000000000"
                 ":0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 100\n")
    assert listening_socket_inodes(50051, tmp_path) == {111}
    assert listening_socket_inodes(50053, tmp_path) == {333}
    assert listening_socket_inodes(50052, tmp_path) == set()
    fd = tmp_path / "42" / "fd"
    fd.mkdir(parents=True)
    os.symlink("socket:[222]", fd / "3")
    os.symlink("/dev/null", fd / "4")
    assert owns_listening_port(42, 50051, tmp_path) is False  # holds a connection, not the listener
    os.symlink("socket:[111]", fd / "5")
    assert owns_listening_port(42, 50051, tmp_path) is True
    assert owns_listening_port(43, 50051, tmp_path) is None  # no such process: cannot tell
    assert owns_listening_port(42, 50051, tmp_path / "missing") is None


@pytest.mark.skipif(not LINUX_PROC, reason="needs Linux /proc/net/tcp")
def test_supervisor_refuses_a_health_answer_from_another_process(tmp_path):
    """Another process answers SERVING on retrieval's port: not taken for our server."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from shortlist.common.stack import PortTakenError, StartFailed, Supervisor

    foreign = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, foreign)
    port = foreign.add_insecure_port("127.0.0.1:0")
    foreign.start()
    try:
        stack = Stack.at(tmp_path / "artifacts", {"retrieval": f"127.0.0.1:{port}"},
                         log_dir=tmp_path / "logs", state_dir=tmp_path / "state")
        with pytest.raises(StartFailed, match=rf"retrieval \(pid \d+\) refused: port {port} is "
                                              "answered by another process"):
            Supervisor(stack).start()
        assert stack.procs == {}  # the child it started is stopped again
        with pytest.raises(PortTakenError, match="another process listens on port"):
            stack.start_one("retrieval")  # `run` and the tests: the same check
        stack.stop()
    finally:
        foreign.stop(0)
