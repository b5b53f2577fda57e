"""Replicated serving as processes: two retrieval and two ranking servers on shared state in a
real ``redis-server``, the gateway balancing over them (what `make serve-replicated` runs).

Open-loop load is paced, never timed: a test counts failures, never milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import grpc
import pytest

from shortlist.common.artifacts import list_versions
from shortlist.common.eventid import StreamId
from shortlist.common.redisproc import redis_binary
from shortlist.common.stack import Stack
from shortlist.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from tests.conftest import publish_copy

pytestmark = pytest.mark.e2e
WAIT_S = 60
LIGHT = common_pb2.USER_SEGMENT_LIGHT


@pytest.fixture(scope="module")
def root(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("replica-artifacts")
    publish_copy(list_versions(trained)[-1], out)
    return out


@pytest.fixture(scope="module")
def stack(root, tmp_path_factory):
    if redis_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: `make servers` (as root) installs it")
        pytest.skip("redis-server is not installed (`make servers` as root installs it)")
    s = Stack.on_free_ports(root, replicas=2, log_dir=tmp_path_factory.mktemp("logs"),
                            state_dir=tmp_path_factory.mktemp("state"),
                            env={"SHORTLIST_RETRIEVAL_RELOAD_INTERVAL_S": "0.3",
                                 "SHORTLIST_RANKING_RELOAD_INTERVAL_S": "0.3"})
    with s:
        yield s


@pytest.fixture(scope="module")
def gateway(stack):
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def retrieval(stack, name: str) -> retrieval_pb2_grpc.RetrievalStub:
    return retrieval_pb2_grpc.RetrievalStub(grpc.insecure_channel(stack.address(name)))


def recommend(stub, user: str, **kw):
    return stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=10, **kw), timeout=5)


def record(stub, user: str, item: str, **kw):
    return stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
        user_id=user, item_id=item, **kw), timeout=5)


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_write_on_one_replica_is_read_on_the_other(stack):
    a, b = retrieval(stack, "retrieval"), retrieval(stack, "retrieval-2")
    written = record(a, "ryw-direct", "i7", client_event_id="ryw-direct-1")
    assert written.event_id and written.history_length == 1 and not written.duplicate
    got = b.Retrieve(retrieval_pb2.RetrieveRequest(user_id="ryw-direct",
                                                   after_event_id=written.event_id), timeout=5)
    assert got.user.history_length == 1
    again = record(b, "ryw-direct", "i7", client_event_id="ryw-direct-1")  # a retry elsewhere
    assert (again.event_id, again.duplicate, again.history_length) == (written.event_id, True, 1)


def test_every_click_through_the_gateway_changes_the_very_next_recommend(stack, gateway):
    """Fresh users: one click makes them LIGHT users, whichever replica serves the next call."""
    for n in range(60):
        user = f"ryw-{n}"
        assert recommend(gateway, user).segment == common_pb2.USER_SEGMENT_NEW
        written = gateway.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
            user_id=user, item_id=f"i{n}"), timeout=5)
        assert written.event_id
        assert recommend(gateway, user).segment == LIGHT, f"user {n} read a stale replica"
    for name in stack.members("retrieval"):  # both replicas answered some of them
        log = (stack.log_dir / f"{name}.log").read_text()
        assert '"rpc": "Retrieve"' in log and '"user_id": "ryw-' in log, name


def test_a_caller_token_is_honoured_and_a_bad_one_refused(stack, gateway):
    written = record(retrieval(stack, "retrieval-2"), "ryw-token", "i3")
    assert recommend(gateway, "ryw-token", after_event_id=written.event_id).segment == LIGHT
    with pytest.raises(grpc.RpcError) as err:
        recommend(gateway, "ryw-token", after_event_id="yesterday")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def paced_recommends(target: str, rate: float, stop: threading.Event, errors: list,
                     served: list) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        due = time.monotonic()
        n = 0
        while not stop.is_set():
            due += 1 / rate
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                served.append(recommend(stub, f"u{n % 150}").version)
            except grpc.RpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
            n += 1


def test_kill_9_of_a_retrieval_replica_under_load_fails_no_recommend(stack):
    stop, errors, served = threading.Event(), [], []
    load = threading.Thread(target=paced_recommends,
                            args=(stack.address("gateway"), 50, stop, errors, served))
    load.start()
    try:
        until(lambda: len(served) >= 100, "load before the kill")
        written = record(retrieval(stack, "retrieval"), "while-down", "i5")
        stack.stop_one("retrieval-2", sig=signal.SIGKILL)
        n_at_kill = len(served)
        until(lambda: len(served) >= n_at_kill + 250, "5 s of load on one replica")
        stack.start_one("retrieval-2")  # comes back and catches up from the stream
        got = retrieval(stack, "retrieval-2").Retrieve(retrieval_pb2.RetrieveRequest(
            user_id="while-down", after_event_id=written.event_id), timeout=5)
        assert got.user.history_length == 1
        n_back = len(served)
        until(lambda: len(served) >= n_back + 100, "load after the restart")
    finally:
        stop.set()
        load.join(WAIT_S)
    assert errors == [], errors[:5]
    print(f"\n{len(served)} Recommend served at 50 req/s across the kill, 0 failed")


def test_kill_9_of_redis_loses_no_acknowledged_write_on_any_replica(stack, gateway):
    acked: list[tuple[str, str]] = []  # (user, event id)
    refused: list[str] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        with grpc.insecure_channel(stack.address("gateway")) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            k = 0
            while not stop.is_set():
                user = f"aof-{w}-{k}"
                try:
                    r = stub.RecordInteraction(retrieval_pb2.RecordInteractionRequest(
                        user_id=user, item_id=f"i{k % 240}", client_event_id=user), timeout=5)
                    acked.append((user, r.event_id))
                except grpc.RpcError as exc:
                    refused.append(f"{exc.code().name}: {exc.details()}")
                k += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        until(lambda: len(acked) >= 100, "writes before the kill")
        stack.redis.kill()
        until(lambda: len(refused) >= 4, "writes to be refused while Redis is down")
        # reads keep serving from memory meanwhile
        assert recommend(gateway, acked[0][0]).segment == LIGHT
        n_down = len(acked)
        stack.redis.start()  # replays its AOF
        until(lambda: len(acked) >= n_down + 100, "writes after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT_S)
    assert all(r.startswith("UNAVAILABLE") for r in refused), refused[:3]
    assert "not acknowledged" in refused[0]
    last = str(max(StreamId.parse(e) for _, e in acked))
    for name in stack.members("retrieval"):
        stub = retrieval(stack, name)
        missing = [u for u, _ in acked if stub.Retrieve(retrieval_pb2.RetrieveRequest(
            user_id=u, after_event_id=last), timeout=10).user.history_length != 1]
        assert missing == [], f"{name} lacks {len(missing)} acknowledged writes"
    print(f"\n{len(acked)} acknowledged writes across a Redis kill -9 ({len(refused)} refused "
          "while it was down), all on both replicas")


def test_rolling_a_new_version_across_replicas_serves_no_mixed_response(stack, root):
    """A version published while load runs reaches the four servers at different moments; every
    response is ranked by the version that retrieved it (ranking refuses another) or served
    degraded from retrieval alone, and none fails."""
    old = list_versions(root)[-1].name
    stop, errors, served = threading.Event(), [], []
    load = threading.Thread(target=paced_recommends,
                            args=(stack.address("gateway"), 50, stop, errors, served))
    load.start()
    try:
        until(lambda: len(served) >= 50, "load before the roll")
        new = publish_copy(root / old, root, version=f"{old}-rolled").name
        until(lambda: served[-20:] == [new] * 20, "every server to serve the new version")
    finally:
        stop.set()
        load.join(WAIT_S)
    assert errors == [], errors[:5]
    assert set(served) == {old, new}
    # Every request ranked by some ranking replica was ranked with the version some retrieval
    # replica retrieved it with (the servers' log lines, joined by request id).
    versions: dict[str, dict[str, str]] = {"Retrieve": {}, "Rank": {}}
    for log in stack.log_dir.glob("r*.log"):
        for line in log.read_text().splitlines():
            if line.startswith("{") and '"msg": "request"' in line:
                entry = json.loads(line)
                if entry.get("rpc") in versions and entry.get("code") == "OK":
                    versions[entry["rpc"]][entry["request_id"]] = entry["version"]
    ranked = set(versions["Rank"]) & set(versions["Retrieve"])
    assert len(ranked) >= len(served) // 2
    mixed = [r for r in ranked if versions["Rank"][r] != versions["Retrieve"][r]]
    assert mixed == [], mixed[:5]
    assert new in {versions["Rank"][r] for r in ranked}


def test_the_cli_records_once_per_event_id_and_reads_its_write_anywhere(stack, capsys):
    from shortlist.clients import cli

    target = ["--target", stack.address("gateway")]
    args = [*target, "feedback", "--user", "cli-replica", "--item", "i4", "--event-id", "e-1"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert cli.main(args) == 0
    again = capsys.readouterr().out
    event_id = first.split("(event ")[1].split(",")[0]
    StreamId.parse(event_id)
    assert "already recorded" in again and event_id in again and "already" not in first
    assert cli.main([*target, "--json", "recommend", "--user", "cli-replica",
                     "--after", event_id]) == 0
    assert '"segment": "light"' in capsys.readouterr().out
