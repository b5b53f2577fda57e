"""The floor: three no-op gRPC servers of Shortlist's shape, to measure Shortlist against.

    python -m shortlist.clients.floor serve --role retrieval|ranking --port 0
    python -m shortlist.clients.floor serve --role gateway --port 0 \\
        --retrieval HOST:PORT --ranking HOST:PORT
    python -m shortlist.clients.floor stack     # all three; prints the gateway's address

A gateway answers ``Recommend`` by calling retrieval, then ranking, passing retrieval's
candidates on as Shortlist's gateway does. Retrieval answers every ``Retrieve`` with one
``RetrieveResponse`` built at start: 300 candidates in columns, about 10 KB, the size of the
real one. Ranking answers every ``Rank`` with one ``RankResponse`` of k items, about 1 KB.
Nothing else happens: no checks, models, metrics, logs, health service or retries. Each server
is its own process with the real servers' default thread pool and in-flight limit.

So the floor costs what the shape costs (three Python gRPC processes, two hops, the real
payloads parsed and serialised at each) and none of what Shortlist does inside them. On a
shared 2-core machine an absolute latency says little about the code; the same load against
the floor right after (``shortlist-bench --floor``) gives ratios that do.

Imports only the contract, grpc and the standard library: it ships with the harness.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import grpc

from shortlist.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)

ROLES = ("retrieval", "ranking", "gateway")  # start order: the gateway connects to the others
HOST = "127.0.0.1"
CANDIDATES = 300  # what retrieval returns at the default candidate count
# The generators the default registry fits on `make bench` data (timestamps, no users.csv or
# social.csv): with their score, rank and affinity blocks, 300 candidates weigh what the real
# ones do (RETRIEVE_RESPONSE_BYTES).
GENERATORS = ("als", "ease", "itemknn", "content", "sequence", "trending")
K = 10
VERSION = "floor"
# The serialised sizes the payloads are built to (tests/clients/test_floor.py holds them to
# 10 %): what a real Retrieve and Rank answer weighs on `make bench` data, measured from the
# servers' messages (Retrieve, 400 users of a `make bench` artifact with the sequence
# generator: median 19.6 KB, 246 to 374 candidates, against 16.2 KB without it; Rank under
# 1 KB).
RETRIEVE_RESPONSE_BYTES = 20_700
RANK_RESPONSE_BYTES = 1_000
# The real servers' defaults (ServerSettings, GatewaySettings), restated because clients may
# not import the servers: the same worker threads and in-flight limits queue the same way.
MAX_WORKERS = {"gateway": 16, "retrieval": 8, "ranking": 8}
MAX_CONCURRENT_RPCS = {"gateway": 32, "retrieval": 64, "ranking": 64}
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]

_GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
           "Drama", "Fantasy", "Horror", "Musical", "Mystery", "Romance", "SciFi", "Thriller",
           "War", "Western")
_WORDS = ("explosion chase hero mission funny laugh joke party family tears life struggle "
          "ghost blood haunted night love kiss wedding heart space robot future alien").split()


def _title(rng: random.Random, n: int) -> str:
    return " ".join(w.title() for w in rng.sample(_WORDS, 6)) + f" ({1950 + n % 70})"


def retrieve_response(candidates: int = CANDIDATES, k: int = K,
                      generators: tuple[str, ...] = GENERATORS,
                      seed: int = 0) -> retrieval_pb2.RetrieveResponse:
    """What the floor's retrieval answers: a real-looking response, built once.

    Real columns: ids like the synthetic catalog's, merged scores, each generator proposing
    about half the candidates (NaN score and rank 0 for the others), an affinity per candidate
    and generator; a user context; details of the first ``k`` candidates.
    """
    rng = random.Random(seed)
    ids = [f"i{n}" for n in rng.sample(range(1000, 1000 + 5 * candidates), candidates)]
    scores, ranks, affinities = [], [], []
    proposed = [0] * len(generators)
    for _row in range(candidates):
        for g in range(len(generators)):
            if rng.random() < 0.5:
                proposed[g] += 1
                scores.append(rng.random())
                ranks.append(proposed[g])
            else:
                scores.append(math.nan)
                ranks.append(0)
            affinities.append(rng.uniform(-1.0, 1.0))
    columns = retrieval_pb2.CandidateColumns(
        item_ids=ids, retrieval_scores=[1.0 / (60 + r) for r in range(candidates)],
        generators=generators, generator_scores=scores, generator_ranks=ranks,
        generator_affinities=affinities)
    user = retrieval_pb2.UserContext(
        user_id="floor", history_length=40, recent_item_ids=ids[:10],
        segment=common_pb2.USER_SEGMENT_ESTABLISHED, last_timestamp=1_700_000_000)
    items = [common_pb2.Item(item_id=i, title=_title(rng, n), categories=rng.sample(_GENRES, 3))
             for n, i in enumerate(ids[:k])]
    return retrieval_pb2.RetrieveResponse(user=user, candidates=columns, items=items,
                                          version=VERSION)


def rank_response(k: int = K, seed: int = 1) -> ranking_pb2.RankResponse:
    """What the floor's ranking answers: ``k`` ranked items with their details, built once."""
    rng = random.Random(seed)
    items = [ranking_pb2.RankedItem(item_id=f"i{1000 + n}", score=rng.random(), rank=n + 1,
                                    title=_title(rng, n), categories=rng.sample(_GENRES, 4))
             for n in range(k)]
    return ranking_pb2.RankResponse(items=items, version=VERSION, configuration="ranker+mmr")


class FloorRetrieval(retrieval_pb2_grpc.RetrievalServicer):
    def __init__(self, response: retrieval_pb2.RetrieveResponse) -> None:
        self.response = response

    def Retrieve(self, request, context):
        return self.response


class FloorRanking(ranking_pb2_grpc.RankingServicer):
    def __init__(self, response: ranking_pb2.RankResponse) -> None:
        self.response = response

    def Rank(self, request, context):
        return self.response


class FloorGateway(gateway_pb2_grpc.GatewayServicer):
    """Retrieve, then Rank with retrieval's candidates, then the ranked items: the real
    gateway's calls and copies, without its checks, timings or degradation."""

    def __init__(self, retrieval: grpc.Channel, ranking: grpc.Channel) -> None:
        self.retrieval = retrieval_pb2_grpc.RetrievalStub(retrieval)
        self.ranking = ranking_pb2_grpc.RankingStub(ranking)

    def Recommend(self, request, context):
        k = request.k or K
        try:
            retrieved = self.retrieval.Retrieve(retrieval_pb2.RetrieveRequest(
                user_id=request.user_id, recent_item_ids=request.recent_item_ids,
                filters=request.filters, k=k), timeout=context.time_remaining())
            ranked = self.ranking.Rank(ranking_pb2.RankRequest(
                user=retrieved.user, candidates=retrieved.candidates, items=retrieved.items,
                k=k, version=retrieved.version), timeout=context.time_remaining())
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")
        return gateway_pb2.RecommendResponse(
            items=[gateway_pb2.RecommendedItem(item_id=r.item_id, score=r.score, title=r.title,
                                               categories=r.categories, ranking_rank=r.rank)
                   for r in ranked.items],
            version=ranked.version, segment=retrieved.user.segment,
            configuration=ranked.configuration)


@dataclass
class FloorServer:
    """One floor server in this process (``serve`` runs one per process)."""

    role: str
    server: grpc.Server
    port: int
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self, grace_s: float | None = 0) -> None:
        self.server.stop(grace_s).wait()
        for channel in self.channels:
            channel.close()


def create_server(role: str, port: int = 0, retrieval: str = "", ranking: str = "",
                  candidates: int = CANDIDATES, k: int = K,
                  ready_timeout_s: float = 10.0) -> FloorServer:
    """Start one floor server on ``HOST:port`` (0: a free one).

    The gateway connects to ``retrieval`` and ``ranking`` before it listens, so its first
    call pays no connection set-up (the harness warms Shortlist's channels the same way).
    """
    from concurrent import futures

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS[role]),
                         maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS[role],
                         options=[*_OPTIONS, ("grpc.so_reuseport", 0)])
    channels: list[grpc.Channel] = []
    if role == "retrieval":
        retrieval_pb2_grpc.add_RetrievalServicer_to_server(
            FloorRetrieval(retrieve_response(candidates, k)), server)
    elif role == "ranking":
        ranking_pb2_grpc.add_RankingServicer_to_server(FloorRanking(rank_response(k)), server)
    else:
        if not (retrieval and ranking):
            raise ValueError("the gateway needs the retrieval and ranking addresses")
        channels = [grpc.insecure_channel(t, options=_OPTIONS) for t in (retrieval, ranking)]
        try:
            for channel in channels:
                grpc.channel_ready_future(channel).result(timeout=ready_timeout_s)
        except grpc.FutureTimeoutError:
            for channel in channels:
                channel.close()
            raise RuntimeError(f"floor gateway: upstreams {retrieval}, {ranking} not "
                               f"reachable within {ready_timeout_s:.0f} s") from None
        gateway_pb2_grpc.add_GatewayServicer_to_server(FloorGateway(*channels), server)
    bound = server.add_insecure_port(f"{HOST}:{port}")
    if bound == 0:
        raise RuntimeError(f"floor {role}: cannot listen on {HOST}:{port}")
    server.start()
    return FloorServer(role, server, bound, channels)


class FloorStack:
    """The three floor servers as processes, each on a port it picked (no race for ports).

    A server reports ``{"role", "port", "pid"}`` as one JSON line on stdout once it listens;
    the stack reads it to learn where the server is, and that it is up.
    """

    def __init__(self, candidates: int = CANDIDATES, k: int = K,
                 start_timeout_s: float = 60.0) -> None:
        self.candidates = candidates
        self.k = k
        self.start_timeout_s = start_timeout_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}

    def address(self, role: str) -> str:
        return f"{HOST}:{self.ports[role]}"

    def pids(self) -> dict[str, int]:
        return {role: proc.pid for role, proc in self.procs.items()}

    def _spawn(self, role: str, *extra: str) -> None:
        cmd = [sys.executable, "-m", "shortlist.clients.floor", "serve", "--role", role,
               "--port", "0", "--candidates", str(self.candidates), "--k", str(self.k), *extra]
        self.procs[role] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def _wait_listening(self, role: str, deadline: float) -> None:
        proc = self.procs[role]
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            left = deadline - time.monotonic()
            line = proc.stdout.readline() if left > 0 and sel.select(left) else b""
        if not line:
            code = proc.poll()
            raise RuntimeError(f"floor {role} did not start" + (
                f" (exit code {code})" if code is not None
                else f" within {self.start_timeout_s:.0f} s"))
        self.ports[role] = int(json.loads(line)["port"])

    def start(self) -> FloorStack:
        deadline = time.monotonic() + self.start_timeout_s
        try:
            for role in ("retrieval", "ranking"):
                self._spawn(role)
            for role in ("retrieval", "ranking"):
                self._wait_listening(role, deadline)
            self._spawn("gateway", "--retrieval", self.address("retrieval"),
                        "--ranking", self.address("ranking"))
            self._wait_listening("gateway", deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        for role in reversed(ROLES):
            proc = self.procs.pop(role, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.ports.clear()

    def payload_bytes(self, timeout_s: float = 5.0) -> dict[str, int]:
        """The serialised size of one answer from retrieval and from ranking, asked directly."""
        out = {}
        with grpc.insecure_channel(self.address("retrieval"), options=_OPTIONS) as channel:
            response = retrieval_pb2_grpc.RetrievalStub(channel).Retrieve(
                retrieval_pb2.RetrieveRequest(user_id="size"), timeout=timeout_s)
            out["retrieve_response"] = response.ByteSize()
        with grpc.insecure_channel(self.address("ranking"), options=_OPTIONS) as channel:
            response = ranking_pb2_grpc.RankingStub(channel).Rank(
                ranking_pb2.RankRequest(k=self.k), timeout=timeout_s)
            out["rank_response"] = response.ByteSize()
        return out

    def __enter__(self) -> FloorStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(args: argparse.Namespace) -> int:
    try:
        server = create_server(args.role, args.port, args.retrieval, args.ranking,
                               args.candidates, args.k)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    print(json.dumps({"role": args.role, "port": server.port, "pid": os.getpid()}), flush=True)
    stop.wait()
    server.stop()
    return 0


def _stack(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    with FloorStack(args.candidates, args.k) as floor:
        print(f"floor gateway {floor.address('gateway')} (pids "
              + ", ".join(f"{r} {p}" for r, p in floor.pids().items()) + "); Ctrl-C to stop",
              flush=True)
        stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shortlist.clients.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "stack"])
    parser.add_argument("--role", choices=ROLES, help="serve: which server")
    parser.add_argument("--port", type=int, default=0, help="serve: port on 127.0.0.1 (0: any)")
    parser.add_argument("--retrieval", default="", metavar="HOST:PORT", help="gateway: upstream")
    parser.add_argument("--ranking", default="", metavar="HOST:PORT", help="gateway: upstream")
    parser.add_argument("--candidates", type=int, default=CANDIDATES,
                        help="candidates in retrieval's answer")
    parser.add_argument("--k", type=int, default=K, help="items in ranking's answer")
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.role is None:
            parser.error("serve needs --role")
        return _serve(args)
    return _stack(args)


if __name__ == "__main__":
    sys.exit(main())
