"""Run the three servers as processes: `make serve`, `make demo` and the end-to-end tests.

Only console-script entry points and the gRPC health contract are used here, so this module
knows nothing of the servers' internals.

``Stack`` starts the servers and stops them (`run`, the demo, the tests: a death is the
caller's business). With ``replicas`` > 1 it runs that many retrieval and ranking servers
("retrieval", "retrieval-2", ...) on shared state in a local ``redis-server`` that it starts
first and stops last, and the gateway balances over them (`make serve-replicated`).

``Supervisor`` is `serve`: it keeps them running, restarting a server that
dies while the others keep serving, because the gateway is built to answer without ranking
(degraded) and a launcher that stops everything would throw that away.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shortlist.common.redisproc import RedisProcess, RedisUnavailable
from shortlist.common.security import open_channel
from shortlist.common.serving import bind_problem, join_address, split_address

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"gateway": 50051, "retrieval": 50052, "ranking": 50053}
# Prometheus /metrics endpoints of `serve --metrics` (`run` and the tests use free ports).
DEFAULT_METRICS_PORTS = {"gateway": 9101, "retrieval": 9102, "ranking": 9103}
START_ORDER = ("retrieval", "ranking", "gateway")
DEFAULT_HOST = "127.0.0.1"
# A server bound to every interface is dialled on loopback (its own machine).
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# Replica i (2, 3, ...) of a server listens on its first port + REPLICA_STRIDE * (i - 1).
REPLICA_STRIDE = 10
REPLICATED = ("retrieval", "ranking")
DEFAULT_REDIS_PORT = 6379


def kind(name: str) -> str:
    """The server a stack member runs: "retrieval-2" runs retrieval."""
    return name.split("-", 1)[0]


def member_names(replicas: int) -> list[str]:
    """Stack members in start order: retrieval and ranking ``replicas`` times, the gateway."""
    names = []
    for server in START_ORDER:
        copies = replicas if server in REPLICATED else 1
        names += [server] + [f"{server}-{i}" for i in range(2, copies + 1)]
    return names


class PortTakenError(RuntimeError):
    """The server answering health on a stack's port is not the process the stack started."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: the sockets stay bound until all are chosen, because the
    kernel may hand a just-released port out again (two servers then collide on one port)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def free_port() -> int:
    return free_ports(1)[0]


def dial_host(host: str) -> str:
    return DEFAULT_HOST if host in WILDCARD_HOSTS else host


def wait_serving(target: str, timeout_s: float, proc: subprocess.Popen | None = None,
                 credentials: grpc.ChannelCredentials | None = None,
                 server_name: str = "") -> None:
    """Poll grpc.health.v1 until SERVING; fail early if the process exits.

    ``credentials`` (TLS, with a client certificate for mTLS servers): plaintext when None.
    """
    deadline = time.monotonic() + timeout_s
    with open_channel(target, credentials, server_name=server_name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server for {target} exited with code {proc.returncode}")
            if health_serving(stub):
                return
            time.sleep(0.1)
    raise TimeoutError(f"{target} not SERVING after {timeout_s:.0f}s")


def health_serving(stub: health_pb2_grpc.HealthStub, timeout_s: float = 1.0) -> bool:
    try:
        resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
    except grpc.RpcError:
        return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def listening_socket_inodes(port: int, proc_root: Path = Path("/proc")) -> set[int] | None:
    """Inodes of the TCP sockets in LISTEN on ``port`` (any local address, IPv4 or IPv6).

    From /proc/net/tcp and /proc/net/tcp6; None where neither exists (not Linux).
    """
    found: set[int] = set()
    readable = False
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc_root / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout
            # inode ...; addresses are HEX_IP:HEX_PORT, st 0A is TCP_LISTEN
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(cols[9]))
    return found if readable else None


def socket_inodes(pid: int, proc_root: Path = Path("/proc")) -> set[int] | None:
    """Inodes of the sockets process ``pid`` holds open; None if its fds cannot be read."""
    fd_dir = proc_root / str(pid) / "fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    out: set[int] = set()
    for fd in fds:
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            out.add(int(target[len("socket:["):-1]))
    return out


def owns_listening_port(pid: int, port: int, proc_root: Path = Path("/proc")) -> bool | None:
    """Whether process ``pid`` holds a socket listening on TCP ``port``.

    A health check only says that *something* on the port is SERVING; this says whether it is
    the process we started. None where /proc cannot tell (not Linux, fds not readable).
    """
    listening = listening_socket_inodes(port, proc_root)
    held = socket_inodes(pid, proc_root)
    if listening is None or held is None:
        return None
    return bool(listening & held)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Stack:
    artifacts: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    log_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Retrieval's event log, the gateway's impressions log and experiment file live here
    # (default: "state" beside the artifact root).
    state_dir: Path | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # For health checks of servers started with TLS settings in ``env``: None is plaintext.
    credentials: grpc.ChannelCredentials | None = None
    server_name: str = ""
    # Servers listed here serve Prometheus /metrics on that port; the others serve none.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    # Host each server binds (default 127.0.0.1); 0.0.0.0 or :: serve every interface.
    hosts: dict[str, str] = field(default_factory=dict)
    # Shared retrieval state: a redis-server started before the servers (replicated stacks).
    redis: RedisProcess | None = None

    @classmethod
    def on_free_ports(cls, artifacts: Path, metrics: bool = False, replicas: int = 1,
                      **kw) -> Stack:
        """A stack beside any other (tests, `run`); ``metrics``: free metrics ports too;
        ``replicas`` > 1: that many retrieval and ranking servers on a redis of their own
        (in ``state_dir``)."""
        names = member_names(replicas)
        # one call, so that no two of the stack's ports can be the same
        ports = iter(free_ports(3 * len(names) + 1))
        if metrics:
            kw.setdefault("metrics_ports", {name: next(ports) for name in names})
        if replicas > 1 and "redis" not in kw:
            state = kw.get("state_dir") or Path(artifacts).resolve().parent / "state"
            kw["redis"] = RedisProcess(Path(state) / "redis", next(ports))
        return cls(artifacts, {name: next(ports) for name in names}, **kw)

    @classmethod
    def only(cls, name: str, artifacts: Path, metrics: bool = False, **kw) -> Stack:
        """Server ``name`` alone on a free port, e.g. to measure it with settings in ``env``
        (``start`` starts just it; several can run side by side); ``metrics``: /metrics too."""
        port, metrics_port = free_ports(2)
        if metrics:
            kw.setdefault("metrics_ports", {name: metrics_port})
        return cls(artifacts, {name: port}, **kw)

    @property
    def servers(self) -> list[str]:
        """The servers this stack runs, in start order (replicas after their first)."""
        return sorted(self.ports, key=lambda n: (START_ORDER.index(kind(n)), len(n), n))

    def members(self, server: str) -> list[str]:
        """This stack's members running ``server``, e.g. ["retrieval", "retrieval-2"]."""
        return [name for name in self.servers if kind(name) == server]

    @classmethod
    def at(cls, artifacts: Path, addresses: Mapping[str, str], replicas: int = 1,
           **kw) -> Stack:
        """A stack on given ``HOST:PORT`` addresses (by server name; the rest: defaults);
        replica i of a server on its port + REPLICA_STRIDE * (i - 1), same host."""
        ports, hosts = dict(DEFAULT_PORTS), {}
        for name, address in addresses.items():
            hosts[name], ports[name] = split_address(address)
        for name in member_names(replicas):
            if name not in ports:
                i = int(name.rsplit("-", 1)[1])
                ports[name] = ports[kind(name)] + REPLICA_STRIDE * (i - 1)
                if kind(name) in hosts:
                    hosts[name] = hosts[kind(name)]
        return cls(artifacts, ports, hosts=hosts, **kw)

    def host(self, name: str) -> str:
        return self.hosts.get(name, DEFAULT_HOST)

    def bind_address(self, name: str) -> str:
        """Where server ``name`` listens (its ``*_ADDRESS`` setting)."""
        return join_address(self.host(name), self.ports[name])

    def address(self, name: str) -> str:
        """Where clients reach server ``name``: its bind address, a wildcard host on loopback."""
        return join_address(dial_host(self.host(name)), self.ports[name])

    def metrics_host(self, name: str) -> str:
        """The host the server's /metrics endpoint binds (its ``*_METRICS_HOST`` setting)."""
        key = f"SHORTLIST_{name.upper()}_METRICS_HOST"
        return self.env.get(key, os.environ.get(key, DEFAULT_HOST))

    def metrics_address(self, name: str) -> str:
        """HOST:PORT of a server's /metrics endpoint (what `shortlist-bench --metrics` takes)."""
        if name not in self.metrics_ports:
            raise KeyError(f"{name} has no metrics port (Stack(metrics_ports=...) or "
                           "Stack.on_free_ports(..., metrics=True))")
        return join_address(dial_host(self.metrics_host(name)), self.metrics_ports[name])

    def placeholders(self) -> dict[str, str]:
        """What `run` substitutes in its command: {gateway} and {<server>_metrics}."""
        out = {"{gateway}": self.address("gateway")}
        for name in self.metrics_ports:
            out[f"{{{name}_metrics}}"] = self.metrics_address(name)
        return out

    def substitute(self, args: list[str]) -> list[str]:
        table = self.placeholders()
        out = []
        for arg in args:
            for key, value in table.items():
                arg = arg.replace(key, value)
            out.append(arg)
        return out

    def target(self, server: str) -> str:
        """How the gateway reaches ``server``: one address, or its replicas as a list."""
        return ",".join(self.address(n) for n in self.members(server))

    def environment(self, name: str) -> dict[str, str]:
        env = {**os.environ, **self.env}
        server = kind(name)
        prefix = f"SHORTLIST_{server.upper()}_"
        env[prefix + "ADDRESS"] = self.bind_address(name)
        if name in self.metrics_ports:
            env[prefix + "METRICS_PORT"] = str(self.metrics_ports[name])
        if server == "gateway":
            env[prefix + "RETRIEVAL_TARGET"] = self.target("retrieval")
            env[prefix + "RANKING_TARGET"] = self.target("ranking")
            state = self.state_dir or self.artifacts.resolve().parent / "state"
            env.setdefault(prefix + "IMPRESSIONS_LOG", str(state / f"impressions-{name}.db"))
            env.setdefault(prefix + "EXPERIMENT_FILE", str(state / "experiment.json"))
        else:
            env[prefix + "ARTIFACTS"] = str(self.artifacts)
        if server == "retrieval":
            state = self.state_dir or self.artifacts.resolve().parent / "state"
            env.setdefault(prefix + "EVENT_LOG", str(state / "events.db"))
            if self.redis is not None:
                env[prefix + "STATE_BACKEND"] = "redis"
                env[prefix + "REDIS_URL"] = self.redis.url
        return env

    def start_redis(self) -> None:
        """Start the stack's redis-server unless there is none or it runs."""
        if self.redis is not None and not self.redis.running:
            self.redis.start()

    def spawn(self, name: str) -> subprocess.Popen:
        """Start server ``name`` without waiting for it (``start_one`` waits)."""
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (closed below)
        try:
            proc = subprocess.Popen([sys.executable, "-m", f"shortlist.{kind(name)}"],
                                    env=self.environment(name), stdout=out, stderr=out)
        finally:
            if out is not None:
                out.close()  # the child holds its own copy
        self.procs[name] = proc
        return proc

    def check_owner(self, name: str) -> None:
        """Raise PortTakenError unless ``name``'s own process listens on its port."""
        proc = self.procs[name]
        if owns_listening_port(proc.pid, self.ports[name]) is False:
            raise PortTakenError(
                f"{self.address(name)} answers health, but not from the {name} server started "
                f"here (pid {proc.pid}): another process listens on port {self.ports[name]}")

    def start_one(self, name: str, timeout_s: float = 120.0) -> None:
        proc = self.spawn(name)
        wait_serving(self.address(name), timeout_s, proc, self.credentials, self.server_name)
        self.check_owner(name)

    def memory(self) -> dict[str, dict[str, int]]:
        """Resident memory of each running server, now and at its peak (Linux /proc)."""
        out: dict[str, dict[str, int]] = {}
        for name, proc in self.procs.items():
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            out[name] = {key: int(fields[field].split()[0]) * 1024
                         for key, field in (("rss_bytes", "VmRSS"), ("peak_rss_bytes", "VmHWM"))
                         if field in fields}
        return out

    def start(self, timeout_s: float = 120.0) -> Stack:
        try:
            self.start_redis()
            for name in self.servers:
                self.start_one(name, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop_one(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for name in reversed(self.servers):
            self.stop_one(name)
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Backoff:
    """Delay before restart ``attempt`` (1, 2, ...): ``first_s`` doubling up to ``max_s``.

    A server that crashes at once again and again is not restarted in a tight loop; one that
    had stayed up ``reset_after_s`` starts over at ``first_s``, so a rare crash is repaired fast.
    """

    first_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * 2.0 ** max(attempt - 1, 0))


class StartFailed(RuntimeError):
    """A server did not come up at the first start: a configuration problem no retry fixes."""


@dataclass
class _Watch:
    state: str = "starting"  # starting: waiting for SERVING; up; down: restart at restart_at
    since: float = 0.0
    attempt: int = 0  # restarts since it last stayed up Backoff.reset_after_s
    restart_at: float = 0.0
    ever_up: bool = False
    channel: grpc.Channel | None = None


class Supervisor:
    """`serve`: start a stack's servers in order, then keep each running until ``stop()``.

    A server that dies (or does not become SERVING within ``start_timeout_s`` after a restart)
    is restarted after ``backoff`` while the others keep serving; each death and restart is one
    log line. Only a server that never came up at the first start is fatal (StartFailed): that
    is a setting or artifact problem, and its own log says which.

    Everything runs on the calling thread, polling every ``poll_s``: ``stop()`` only sets a
    flag, so it is safe from a signal handler.
    """

    def __init__(self, stack: Stack, backoff: Backoff = Backoff(), start_timeout_s: float = 120.0,
                 poll_s: float = 0.2, hint: Callable[[str], str] = lambda _name: "") -> None:
        self.stack = stack
        self.backoff = backoff
        self.start_timeout_s = start_timeout_s
        self.poll_s = poll_s
        self.hint = hint  # how to give a server another port: appended to port errors
        self.stopping = False
        self._watch: dict[str, _Watch] = {}

    def stop(self) -> None:
        self.stopping = True

    def start(self) -> bool:
        """Start every server in order, each SERVING before the next; False if stopped first.

        Raises StartFailed (everything stopped) if one does not come up.
        """
        try:
            self.stack.start_redis()
            for name in self.stack.servers:
                self._spawn(name)
                while self._step(name) == "starting":
                    if self.stopping:
                        self.close()
                        return False
                    time.sleep(self.poll_s)
        except BaseException:
            self.close()
            raise
        return True

    def supervise(self) -> None:
        """Keep every server running until ``stop()``, then stop them all."""
        try:
            while not self.stopping:
                self._keep_redis()
                for name in self.stack.servers:
                    self._step(name)
                time.sleep(self.poll_s)
        finally:
            self.close()

    def _keep_redis(self) -> None:
        """Restart the stack's redis-server if it died: it replays its AOF, so every
        acknowledged write is back, and the replicas' tailers resume by themselves."""
        redis = self.stack.redis
        if redis is None or redis.running or self.stopping:
            return
        logger.warning("redis-server died (%s); restarting it on its AOF",
                       describe_exit(redis.proc.returncode))
        try:
            redis.start()
            logger.info("redis-server serving again on port %d", redis.port)
        except RedisUnavailable as exc:
            logger.warning("redis-server did not restart: %s; retrying", exc)

    def close(self) -> None:
        for watch in self._watch.values():
            if watch.channel is not None:
                watch.channel.close()
                watch.channel = None
        self.stack.stop()

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.stack.procs.items()}

    def _spawn(self, name: str) -> None:
        watch = self._watch.setdefault(name, _Watch())
        proc = self.stack.spawn(name)
        watch.state, watch.since = "starting", time.monotonic()
        if watch.ever_up:
            logger.info("%s restart attempt %d: started pid %d", name, watch.attempt, proc.pid)
        else:
            logger.info("%s: started pid %d on %s", name, proc.pid,
                        self.stack.bind_address(name))

    def _step(self, name: str) -> str:
        """Advance ``name``'s state by what can be seen now; the new state."""
        watch = self._watch[name]
        now = time.monotonic()
        if watch.state == "down":
            if now >= watch.restart_at and not self.stopping:
                try:
                    self._spawn(name)
                except OSError as exc:  # no process at all (out of memory or descriptors)
                    self._retry_later(name, f"{name} could not be started: {exc}")
            return watch.state
        proc = self.stack.procs[name]
        code = proc.poll()
        if code is not None:
            if watch.state == "up":
                self._lost(name, proc.pid, "died",
                           f"{describe_exit(code)} after {now - watch.since:.1f} s up")
            else:
                self._lost(name, proc.pid, "died before serving", describe_exit(code))
        elif watch.state == "starting":
            if self._serving(name, watch):
                port = self.stack.ports[name]
                if owns_listening_port(proc.pid, port) is False:
                    self._lost(name, proc.pid, "refused", f"port {port} is answered by another "
                               "process, which holds it" + self.hint(name))
                else:
                    self._up(name, watch, proc, now)
            elif now - watch.since > self.start_timeout_s:
                self._lost(name, proc.pid, "stopped",
                           f"not SERVING after {self.start_timeout_s:.0f} s")
        return watch.state

    def _serving(self, name: str, watch: _Watch) -> bool:
        if watch.channel is None:  # a fresh channel per start: no reconnect backoff to wait out
            watch.channel = open_channel(self.stack.address(name), self.stack.credentials,
                                         server_name=self.stack.server_name)
        return health_serving(health_pb2_grpc.HealthStub(watch.channel), timeout_s=1.0)

    def _up(self, name: str, watch: _Watch, proc: subprocess.Popen, now: float) -> None:
        if watch.ever_up:
            logger.info("%s serving again: pid %d on %s (restart attempt %d, ready in %.1f s)",
                        name, proc.pid, self.stack.address(name), watch.attempt,
                        now - watch.since)
        watch.state, watch.since, watch.ever_up = "up", now, True
        if watch.channel is not None:
            watch.channel.close()
            watch.channel = None

    def _lost(self, name: str, pid: int, what: str, detail: str) -> None:
        """``name`` died or failed to start: schedule its restart (fatal at the first start)."""
        watch = self._watch[name]
        self.stack.stop_one(name, timeout_s=5.0)  # reaps a dead one, stops a stuck one
        if watch.channel is not None:
            watch.channel.close()
            watch.channel = None
        if not watch.ever_up:
            where = (f"{self.stack.log_dir / (name + '.log')}" if self.stack.log_dir
                     else "its log above")
            why = f"; {where} says why" if what.startswith("died") else ""
            raise StartFailed(f"{name} (pid {pid}) {what}: {detail}{why}")
        self._retry_later(name, f"{name} (pid {pid}) {what}: {detail}")

    def _retry_later(self, name: str, message: str) -> None:
        watch = self._watch[name]
        now = time.monotonic()
        if watch.state == "up" and now - watch.since >= self.backoff.reset_after_s:
            watch.attempt = 0
        watch.attempt += 1
        delay = self.backoff.delay(watch.attempt)
        watch.state, watch.since, watch.restart_at = "down", now, now + delay
        if not self.stopping:  # Ctrl-C reaches the servers too: their exit is no news
            logger.warning("%s; restart attempt %d in %.1f s", message, watch.attempt, delay)


# -- command line ----------------------------------------------------------------------------

def _env_name(name: str, setting: str) -> str:
    return f"SHORTLIST_{name.upper()}_{setting}"


def address_hint(name: str) -> str:
    return (f"; choose another with --{name}-address HOST:PORT "
            f"(or {_env_name(name, 'ADDRESS')})")


def metrics_hint(name: str) -> str:
    return (f"; choose another with --{name}-metrics-port PORT "
            f"(or {_env_name(name, 'METRICS_PORT')})")


class UsageError(ValueError):
    """A one-line command-line problem, printed as ``error: ...``."""


def serve_addresses(args: argparse.Namespace,
                    environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    """`serve`'s gRPC addresses and metrics ports: option, else environment, else default.

    A metrics port is served when ``--metrics`` is on or a port is given for that server.
    """
    addresses: dict[str, str] = {}
    metrics: dict[str, int] = {}
    for name in DEFAULT_PORTS:
        address = (getattr(args, f"{name}_address") or environ.get(_env_name(name, "ADDRESS"))
                   or f"{DEFAULT_HOST}:{DEFAULT_PORTS[name]}")
        try:
            _host, port = split_address(address)
        except ValueError:
            raise UsageError(f"{name} address {address!r} is not HOST:PORT"
                             + address_hint(name)) from None
        if port == 0:
            raise UsageError(f"{name} address {address!r} needs a fixed port, not 0"
                             + address_hint(name))
        addresses[name] = address
        raw = getattr(args, f"{name}_metrics_port")
        raw = raw if raw is not None else environ.get(_env_name(name, "METRICS_PORT"))
        if raw is None and args.metrics:
            raw = DEFAULT_METRICS_PORTS[name]
        if raw is not None:
            try:
                metrics[name] = int(raw)
            except ValueError:
                raise UsageError(f"{name} metrics port {raw!r} is not a number"
                                 + metrics_hint(name)) from None
            if not 0 < metrics[name] < 65536:
                raise UsageError(f"{name} metrics port {raw!r} is not a port from 1 to 65535"
                                 + metrics_hint(name))
    return addresses, metrics


def port_problems(stack: Stack) -> list[str]:
    """One line per port `serve` would listen on that is unusable now, with how to change it.

    Checked before anything starts: a busy port would otherwise only surface as a server that
    cannot bind, and its health port might even be answered by the process that holds it.
    """
    problems = []
    owners: dict[int, str] = {}
    wanted = [(stack.ports[n], n, stack.host(n), address_hint(kind(n))) for n in stack.servers]
    wanted += [(port, f"{n} metrics", stack.metrics_host(kind(n)), metrics_hint(kind(n)))
               for n, port in stack.metrics_ports.items()]
    if stack.redis is not None:
        wanted.append((stack.redis.port, "redis", DEFAULT_HOST,
                       "; choose another with --redis-port PORT"))
    for port, label, host, hint in wanted:
        if port in owners:
            problems.append(f"port {port} is given to both {owners[port]} and {label}{hint}")
            continue
        owners[port] = label
        problem = bind_problem(host, port)
        if problem is not None:
            problems.append(problem.replace(f"port {port}", f"port {port} ({label})", 1) + hint)
    return problems


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s stack: %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(stack: Stack) -> int:
    """Start ``stack`` and supervise it until SIGINT or SIGTERM; the exit code."""
    supervisor = Supervisor(stack, hint=address_hint)
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        supervisor.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        if not supervisor.start():
            return 0
    except (StartFailed, RedisUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    pids = supervisor.pids()
    if stack.redis is not None:
        print(f"shared state: redis-server {stack.redis.url} (pid {stack.redis.proc.pid}, AOF "
              f"in {stack.redis.directory})", flush=True)
    print("serving: " + ", ".join(f"{n} {stack.address(n)} (pid {pids[n]})"
                                  for n in stack.servers) + " (Ctrl-C to stop)", flush=True)
    if stack.metrics_ports:
        print("metrics: " + ", ".join(f"{n} http://{stack.metrics_address(n)}/metrics"
                                      for n in stack.metrics_ports), flush=True)
    supervisor.supervise()
    if received:
        logger.info("stopped on %s", signal.Signals(received[0]).name)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="run the three Shortlist servers: `serve` until Ctrl-C (a server that "
                    "dies is restarted, the others keep serving), `check` that serve's ports "
                    "are free, or `run` them on free ports around one command ({gateway} in "
                    "it becomes the gateway's address, {gateway_metrics}, {retrieval_metrics}, "
                    "{ranking_metrics} the servers' /metrics endpoints), e.g. `run -- "
                    "shortlist-bench --target {gateway} --metrics gateway={gateway_metrics}`")
    parser.add_argument("command", choices=["serve", "run", "check"])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--metrics", action="store_true",
                        help="serve Prometheus /metrics: `serve` on ports "
                             + ", ".join(f"{n} {p}" for n, p in DEFAULT_METRICS_PORTS.items())
                             + "; `run` on free ports (implied by a {..._metrics} placeholder)")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-address", metavar="HOST:PORT",
                            help=f"`serve`: where the {name} server listens (default "
                                 f"${_env_name(name, 'ADDRESS')} or {DEFAULT_HOST}:{port})")
    for name, port in DEFAULT_METRICS_PORTS.items():
        parser.add_argument(f"--{name}-metrics-port", metavar="PORT",
                            help=f"`serve`: the {name} server's /metrics port (default "
                                 f"${_env_name(name, 'METRICS_PORT')}, or {port} with "
                                 "--metrics); implies /metrics for it")
    parser.add_argument("--replicas", type=int, default=1, metavar="N",
                        help="run N retrieval and N ranking servers on shared state in a local "
                             "redis-server (replica i on its server's port + "
                             f"{REPLICA_STRIDE}*(i-1)); the gateway balances over them")
    parser.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT, metavar="PORT",
                        help=f"`serve --replicas`: the local redis-server's port (default "
                             f"{DEFAULT_REDIS_PORT}; its AOF goes to state/redis beside the "
                             "artifact root)")
    parser.add_argument("--memory-report", default=None, metavar="PATH",
                        help="`run`: write each server's RSS (now and peak) as JSON")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.command == "run":
        if not cmd:
            parser.error("run needs a command after --")
        metrics = args.metrics or any(f"{{{n}_metrics}}" in a for n in DEFAULT_PORTS for a in cmd)
        with Stack.on_free_ports(Path(args.artifacts), metrics=metrics, replicas=args.replicas,
                                 log_dir=Path(args.artifacts).resolve().parent / "logs") as s:
            code = subprocess.run(s.substitute(cmd), check=False).returncode
            memory = s.memory()
            print("server memory: " + ", ".join(
                f"{n} RSS {m['rss_bytes'] / 2**20:.0f} MiB (peak {m['peak_rss_bytes'] / 2**20:.0f})"
                for n, m in memory.items()), flush=True)
            if args.memory_report:
                Path(args.memory_report).write_text(json.dumps(memory, indent=1))
            return code
    try:
        addresses, metrics_ports = serve_addresses(args, os.environ)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.replicas < 1:
        print("error: --replicas must be at least 1", file=sys.stderr)
        return 2
    redis = None
    if args.replicas > 1:
        state = Path(args.artifacts).resolve().parent / "state" / "redis"
        redis = RedisProcess(state, args.redis_port)
        for name in member_names(args.replicas):
            if name not in metrics_ports and kind(name) in metrics_ports:
                i = int(name.rsplit("-", 1)[1])
                metrics_ports[name] = metrics_ports[kind(name)] + REPLICA_STRIDE * (i - 1)
    stack = Stack.at(Path(args.artifacts), addresses, replicas=args.replicas,
                     metrics_ports=metrics_ports, redis=redis)
    problems = port_problems(stack)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems or args.command == "check":
        return 1 if problems else 0
    _log_to_stderr()
    return serve(stack)


if __name__ == "__main__":
    sys.exit(main())
