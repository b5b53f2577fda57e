"""Fault tests with real processes: what keeps answering, and what is never lost."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest

from shortlist.common.artifacts import list_versions
from shortlist.common.stack import Stack, free_port, free_ports
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc, retrieval_pb2

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def root(trained):
    """The session artifact: these tests only read it (a corrupt copy is made elsewhere)."""
    return trained


@pytest.fixture(scope="module")
def stack(root, tmp_path_factory):
    """This module's own stack, not the session's shared one: its tests stop and kill servers
    and write to the event log."""
    s = Stack.on_free_ports(root, log_dir=tmp_path_factory.mktemp("logs"),
                            state_dir=tmp_path_factory.mktemp("state"))
    with s:
        yield s


@pytest.fixture(scope="module")
def stub(stack):
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def stream(address: str, stop: threading.Event, results: list, errors: list,
           users: int = 150) -> None:
    with grpc.insecure_channel(address) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        n = 0
        while not stop.is_set() and n < 20000:
            n += 1
            try:
                r = stub.Recommend(gateway_pb2.RecommendRequest(user_id=f"u{n % users}", k=10),
                                   timeout=2)
                results.append((time.monotonic(), r.degraded, len(r.items)))
            except grpc.RpcError as exc:
                errors.append(exc.code())


def test_killing_ranking_mid_stream_fails_no_request(stack):
    stop, results, errors = threading.Event(), [], []
    threads = [threading.Thread(target=stream, args=(stack.address("gateway"), stop, results,
                                                      errors)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stack.stop_one("ranking", sig=signal.SIGKILL)
    time.sleep(1.5)
    restarted = time.monotonic()
    stack.start_one("ranking")
    serving = time.monotonic()
    # after restart, ranked results come back within 2 seconds of the server being healthy
    deadline = serving + 2.0
    ranked_again = None
    while time.monotonic() < deadline + 1.0:
        recent = [r for r in results[-20:] if r[0] > serving]
        if recent and not recent[-1][1]:
            ranked_again = recent[-1][0]
            break
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert errors == [], errors[:5]
    assert all(n == 10 for _, _, n in results)
    assert any(d for _, d, _ in results), "ranking was down: some answers must be degraded"
    assert ranked_again is not None and ranked_again - serving <= 2.0
    print(f"\n{len(results)} answers, {sum(d for _, d, _ in results)} degraded, ranking "
          f"restart took {serving - restarted:.2f}s, ranked again after "
          f"{ranked_again - serving:.2f}s")


def test_degrades_when_ranking_is_down_and_recovers(stack, stub):
    stack.stop_one("ranking")
    resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u4", k=10), timeout=5)
    assert resp.degraded and len(resp.items) == 10
    assert all(i.ranking_rank == 0 for i in resp.items)
    stack.start_one("ranking")
    # the gateway's channel reconnects by itself: ranked answers return within 2 seconds
    deadline = time.monotonic() + 2.0
    while True:
        resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id="u4", k=10), timeout=5)
        if not resp.degraded or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not resp.degraded


def test_retrieval_down_fails_fast_with_unavailable(stack, stub):
    stack.stop_one("retrieval")
    try:
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.Recommend(gateway_pb2.RecommendRequest(user_id="u4", k=10), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - start < 2.0
    finally:
        stack.start_one("retrieval")


def test_kill_9_retrieval_while_acknowledging_loses_nothing(stack):
    acked: dict[str, int] = {}
    stop = threading.Event()

    def writer(w: int) -> None:
        user = f"writer-{w}"
        with grpc.insecure_channel(stack.address("gateway")) as ch:
            stub = gateway_pb2_grpc.GatewayStub(ch)
            i = 0
            while not stop.is_set() and i < 200:
                try:
                    stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                        user_id=user, item_id=f"i{i}"), timeout=2)
                    acked[user] = i + 1  # items i0..i{i} acknowledged, in order
                    i += 1
                except grpc.RpcError:
                    time.sleep(0.05)  # retrieval down: this one was not acknowledged; retry

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stack.stop_one("retrieval", sig=signal.SIGKILL)
    before_restart = dict(acked)
    stack.start_one("retrieval")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert sum(before_restart.values()) > 0
    with grpc.insecure_channel(stack.address("gateway")) as ch:
        stub = gateway_pb2_grpc.GatewayStub(ch)
        for user, n in acked.items():
            # one more distinct item: the history must hold every acknowledged item plus it
            resp = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                user_id=user, item_id="i239"), timeout=5)
            assert resp.history_length >= n + 1, (user, n, resp.history_length)
            recs = stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=50), timeout=5)
            assert not {f"i{i}" for i in range(n)} & {r.item_id for r in recs.items}


def test_server_refuses_a_corrupt_artifact_naming_the_file(root, tmp_path):
    bad_root = tmp_path / "bad"
    version = list_versions(root)[-1]
    shutil.copytree(version, bad_root / version.name)
    target = (bad_root / version.name / "retrieval" / "generators" / "als"
              / "item_factors.npy")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    for name, extra in (("retrieval", {"SHORTLIST_RETRIEVAL_EVENT_LOG":
                                       str(tmp_path / "events.db")}), ("ranking", {})):
        if name == "ranking":  # corrupt ranking's part too
            t = bad_root / version.name / "ranking" / "ranker.txt"
            t.write_text(t.read_text() + " ")
            target = t
        prefix = f"SHORTLIST_{name.upper()}_"
        env = {**os.environ, prefix + "ARTIFACTS": str(bad_root), prefix + "ADDRESS":
               "127.0.0.1:0", **extra}
        proc = subprocess.run([sys.executable, "-m", f"shortlist.{name}"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert str(target) in proc.stderr and "checksum mismatch" in proc.stderr


# -- expected startup failures: one log line, exit code 2, no traceback ---------------------

def run_server(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"shortlist.{name}"],
                          env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def one_error_line(proc: subprocess.CompletedProcess) -> dict:
    """The single JSON log line a server that refuses to start writes (and nothing else)."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    line = json.loads(lines[0])
    assert line["level"] == "error"
    return line


def busy_listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("name", ["gateway", "ranking"])
def test_server_on_a_busy_port_exits_2_with_one_line_naming_port_and_setting(name, root,
                                                                             tmp_path):
    prefix = f"SHORTLIST_{name.upper()}_"
    with busy_listener() as s:
        port = s.getsockname()[1]
        proc = run_server(name, {prefix + "ADDRESS": f"127.0.0.1:{port}",
                                 prefix + "ARTIFACTS": str(root)})
    line = one_error_line(proc)
    assert line["msg"] == f"cannot listen on 127.0.0.1:{port}: port {port} is already in use"
    assert line["setting"] == prefix + "ADDRESS"


def test_server_on_a_busy_metrics_port_exits_2_with_nothing_left_running(root, tmp_path):
    with busy_listener() as s:
        port = s.getsockname()[1]
        proc = run_server("retrieval", {
            "SHORTLIST_RETRIEVAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "SHORTLIST_RETRIEVAL_METRICS_PORT": str(port),
            "SHORTLIST_RETRIEVAL_ARTIFACTS": str(root),
            "SHORTLIST_RETRIEVAL_EVENT_LOG": str(tmp_path / "events.db")})
    line = one_error_line(proc)  # returned: no server, watcher or endpoint kept it alive
    assert f"port {port} is already in use" in line["msg"]
    assert line["setting"] == "SHORTLIST_RETRIEVAL_METRICS_PORT"


def test_server_with_a_bad_setting_exits_2_with_one_line_naming_it():
    proc = run_server("gateway", {"SHORTLIST_GATEWAY_MAX_WORKERS": "abc",
                                  "SHORTLIST_GATEWAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    line = one_error_line(proc)
    assert line["setting"] == "SHORTLIST_GATEWAY_MAX_WORKERS"
    assert line["msg"].startswith("invalid setting: SHORTLIST_GATEWAY_MAX_WORKERS='abc': ")


def test_server_without_artifacts_exits_2_with_one_line_naming_the_setting(tmp_path):
    missing = tmp_path / "no-artifacts"
    proc = run_server("ranking", {"SHORTLIST_RANKING_ARTIFACTS": str(missing),
                                  "SHORTLIST_RANKING_ADDRESS": f"127.0.0.1:{free_port()}"})
    line = one_error_line(proc)
    assert line["setting"] == "SHORTLIST_RANKING_ARTIFACTS"
    assert str(missing) in line["msg"] and "no published artifact version" in line["msg"]


# -- `serve` supervises: a killed server is restarted, the others keep serving ---------------

def wait_for_line(path, pattern: str, timeout_s: float, proc: subprocess.Popen) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(), re.MULTILINE)
        if found:
            return found
        assert proc.poll() is None, path.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} after {timeout_s:.0f}s:\n{path.read_text()[-3000:]}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_restarts_a_killed_ranking_server_while_the_gateway_degrades(root, tmp_path):
    ports = dict(zip(("gateway", "retrieval", "ranking"), free_ports(3), strict=True))
    out = tmp_path / "serve.out"
    with open(out, "w") as fh:
        serve = subprocess.Popen(
            [sys.executable, "-m", "shortlist.common.stack", "serve", "--artifacts", str(root),
             *[arg for name, port in ports.items()
               for arg in (f"--{name}-address", f"127.0.0.1:{port}")]],
            stdout=fh, stderr=subprocess.STDOUT,
            env={**os.environ, "SHORTLIST_RETRIEVAL_EVENT_LOG": str(tmp_path / "events.db")})
    pids: dict[str, int] = {}
    restarted: list[int] = []
    try:
        serving = wait_for_line(out, r"^serving: .*$", 120, serve).group(0)
        pids = {name: int(pid) for name, pid in re.findall(r"(\w+) \S+ \(pid (\d+)\)", serving)}
        assert set(pids) == set(ports)
        request = gateway_pb2.RecommendRequest(user_id="u1", k=10)
        with grpc.insecure_channel(f"127.0.0.1:{ports['gateway']}") as ch:
            stub = gateway_pb2_grpc.GatewayStub(ch)
            assert not stub.Recommend(request, timeout=5).degraded
            os.kill(pids["ranking"], signal.SIGKILL)
            # Hold ranking's port for a moment, so the first restart fails: it must be retried
            # with a longer backoff, not end the stack.
            holder = socket.socket()
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 5
            while True:
                try:
                    holder.bind(("127.0.0.1", ports["ranking"]))
                    break
                except OSError:  # the killed server's socket is not closed yet
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
            holder.listen()
            try:
                answer = stub.Recommend(request, timeout=5)
                assert answer.degraded and len(answer.items) == 10
                wait_for_line(out, r"ranking \(pid \d+\) died before serving: exit code 2; "
                                   r"restart attempt 2 in 1\.0 s", 60, serve)
            finally:
                holder.close()
            deadline = time.monotonic() + 120
            while stub.Recommend(request, timeout=5).degraded:
                assert time.monotonic() < deadline, out.read_text()[-3000:]
                time.sleep(0.2)
        # the supervisor's own health poll notices a moment after the gateway does
        again = wait_for_line(out, r"ranking serving again: pid (\d+) .*restart attempt 2", 30,
                              serve)
        restarted.append(int(again.group(1)))
        log = out.read_text()
        assert re.search(rf"ranking \(pid {pids['ranking']}\) died: killed by SIGKILL after "
                         r"[\d.]+ s up; restart attempt 1 in 0\.5 s", log), log[-3000:]
        assert restarted[0] != pids["ranking"] and alive(restarted[0])
        assert alive(pids["gateway"]) and alive(pids["retrieval"])  # never stopped
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(60)
    log = out.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    assert "stopped on SIGTERM" in log
    assert not any(alive(pid) for pid in [*pids.values(), *restarted])


def test_serve_replicated_restarts_a_killed_redis_and_loses_no_acknowledged_write(root,
                                                                                   tmp_path):
    """`serve --replicas 2`: two retrieval and two ranking replicas on a redis-server the
    supervisor starts, restarts when it dies (on its AOF) and stops on SIGTERM."""
    from shortlist.common.redisproc import redis_binary

    if redis_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: `make servers` (as root) installs it")
        pytest.skip("redis-server is not installed (`make servers` as root installs it)")
    artifacts = tmp_path / "artifacts"
    shutil.copytree(root, artifacts)
    *ports, redis_port = free_ports(4)
    base = dict(zip(("gateway", "retrieval", "ranking"), ports, strict=True))
    out = tmp_path / "serve.out"
    with open(out, "w") as fh:
        serve = subprocess.Popen(
            [sys.executable, "-m", "shortlist.common.stack", "serve", "--replicas", "2",
             "--redis-port", str(redis_port), "--artifacts", str(artifacts),
             *[arg for name, port in base.items()
               for arg in (f"--{name}-address", f"127.0.0.1:{port}")]],
            stdout=fh, stderr=subprocess.STDOUT)
    try:
        shared = wait_for_line(out, r"^shared state: redis-server \S+ \(pid (\d+)", 240, serve)
        serving = wait_for_line(out, r"^serving: .*$", 240, serve).group(0)
        pids = dict(re.findall(r"([\w-]+) \S+ \(pid (\d+)\)", serving))
        assert set(pids) == {"retrieval", "retrieval-2", "ranking", "ranking-2", "gateway"}
        with grpc.insecure_channel(f"127.0.0.1:{base['gateway']}") as ch:
            stub = gateway_pb2_grpc.GatewayStub(ch)
            first = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                user_id="serve-redis", item_id="i1"), timeout=5)
            os.kill(int(shared.group(1)), signal.SIGKILL)
            wait_for_line(out, r"redis-server serving again", 60, serve)
            second = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                user_id="serve-redis", item_id="i2"), timeout=5)
            assert second.history_length == 2, (first, second)  # the first survived the kill
            answer = stub.Recommend(gateway_pb2.RecommendRequest(user_id="serve-redis", k=10),
                                    timeout=5)
            assert len(answer.items) == 10 and not answer.degraded
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0, out.read_text()[-3000:]
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    with pytest.raises(OSError):  # the restarted redis-server was stopped too
        socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
