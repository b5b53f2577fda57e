"""Run the three servers as processes: `make serve`, `make demo` and the end-to-end tests.

Only console-script entry points and the gRPC health contract are used here, so this module
knows nothing of the servers' internals.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shortlist.common.security import open_channel

DEFAULT_PORTS = {"gateway": 50051, "retrieval": 50052, "ranking": 50053}
# Prometheus /metrics endpoints of `serve --metrics` (`run` and the tests use free ports).
DEFAULT_METRICS_PORTS = {"gateway": 9101, "retrieval": 9102, "ranking": 9103}
START_ORDER = ("retrieval", "ranking", "gateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{target} not SERVING after {timeout_s:.0f}s")


@dataclass
class Stack:
    artifacts: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    log_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Retrieval's event log lives here (default: "state" beside the artifact root).
    state_dir: Path | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # For health checks of servers started with TLS settings in ``env``: None is plaintext.
    credentials: grpc.ChannelCredentials | None = None
    server_name: str = ""
    # Servers listed here serve Prometheus /metrics on that port; the others serve none.
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def on_free_ports(cls, artifacts: Path, metrics: bool = False, **kw) -> Stack:
        """A stack beside any other (tests, `run`); ``metrics``: free metrics ports too."""
        if metrics:
            kw.setdefault("metrics_ports", {name: free_port() for name in DEFAULT_PORTS})
        return cls(artifacts, {name: free_port() for name in DEFAULT_PORTS}, **kw)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def metrics_address(self, name: str) -> str:
        """HOST:PORT of a server's /metrics endpoint (what `shortlist-bench --metrics` takes)."""
        if name not in self.metrics_ports:
            raise KeyError(f"{name} has no metrics port (Stack(metrics_ports=...) or "
                           "Stack.on_free_ports(..., metrics=True))")
        return f"127.0.0.1:{self.metrics_ports[name]}"

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

    def environment(self, name: str) -> dict[str, str]:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **self.env}
        prefix = f"SHORTLIST_{name.upper()}_"
        env[prefix + "ADDRESS"] = self.address(name)
        if name in self.metrics_ports:
            env[prefix + "METRICS_PORT"] = str(self.metrics_ports[name])
        if name == "gateway":
            env[prefix + "RETRIEVAL_TARGET"] = self.address("retrieval")
            env[prefix + "RANKING_TARGET"] = self.address("ranking")
        else:
            env[prefix + "ARTIFACTS"] = str(self.artifacts)
        if name == "retrieval":
            state = self.state_dir or self.artifacts.resolve().parent / "state"
            env.setdefault(prefix + "EVENT_LOG", str(state / "events.db"))
        return env

    def start_one(self, name: str, timeout_s: float = 120.0) -> None:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
        proc = subprocess.Popen([sys.executable, "-m", name], env=self.environment(name),
                                stdout=out, stderr=out)
        self.procs[name] = proc
        wait_serving(self.address(name), timeout_s, proc, self.credentials, self.server_name)

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
            for name in START_ORDER:
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
        for name in reversed(START_ORDER):
            self.stop_one(name)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="run the three Shortlist servers: `serve` until Ctrl-C, or `run` them on "
                    "free ports around one command ({gateway} in it becomes the gateway's "
                    "address, {gateway_metrics}, {retrieval_metrics}, {ranking_metrics} the "
                    "servers' /metrics endpoints), e.g. `run -- shortlist-bench --target "
                    "{gateway} --metrics gateway={gateway_metrics}`")
    parser.add_argument("command", choices=["serve", "run"])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--metrics", action="store_true",
                        help="serve Prometheus /metrics: `serve` on ports "
                             + ", ".join(f"{n} {p}" for n, p in DEFAULT_METRICS_PORTS.items())
                             + "; `run` on free ports (implied by a {..._metrics} placeholder)")
    parser.add_argument("--memory-report", default=None, metavar="PATH",
                        help="`run`: write each server's RSS (now and peak) as JSON")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.command == "run":
        if not cmd:
            parser.error("run needs a command after --")
        metrics = args.metrics or any(f"{{{n}_metrics}}" in a for n in DEFAULT_PORTS for a in cmd)
        with Stack.on_free_ports(Path(args.artifacts), metrics=metrics,
                                 log_dir=Path(args.artifacts).resolve().parent / "logs") as s:
            code = subprocess.run(s.substitute(cmd), check=False).returncode
            memory = s.memory()
            print("server memory: " + ", ".join(
                f"{n} RSS {m['rss_bytes'] / 2**20:.0f} MiB (peak {m['peak_rss_bytes'] / 2**20:.0f})"
                for n, m in memory.items()), flush=True)
            if args.memory_report:
                Path(args.memory_report).write_text(json.dumps(memory, indent=1))
            return code
    stack = Stack(Path(args.artifacts),
                  metrics_ports=dict(DEFAULT_METRICS_PORTS) if args.metrics else {})
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        stack.start()
        print("serving: " + ", ".join(f"{n} {stack.address(n)}" for n in DEFAULT_PORTS)
              + " (Ctrl-C to stop)", flush=True)
        if stack.metrics_ports:
            print("metrics: " + ", ".join(f"{n} http://{stack.metrics_address(n)}/metrics"
                                          for n in stack.metrics_ports), flush=True)
        while not stopping and all(p.poll() is None for p in stack.procs.values()):
            time.sleep(0.5)
        dead = [n for n, p in stack.procs.items() if p.poll() is not None]
        if dead:
            print(f"server exited: {', '.join(dead)}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
