"""A local ``redis-server`` process for the shared state backend: for `make serve-replicated`
and the tests, never for production (there Redis is run as its operators run it).

Started with the durability the backend requires (``appendonly yes``, ``appendfsync always``:
Redis replies only after the AOF record is synced) and its AOF in ``directory``, so a process
killed with SIGKILL and started again on the same directory replays every acknowledged write.
Debian's ``redis-server`` package provides the binary (`make servers` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """No ``redis-server`` binary, or it did not start."""


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class RedisProcess:
    """One ``redis-server`` on 127.0.0.1:``port`` with its files in ``directory``."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = Path(directory)
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisProcess:
        binary = redis_binary()
        if binary is None:
            raise RedisUnavailable("redis-server is not installed (Debian: apt-get install "
                                   "redis-server, or `make servers` as root)")
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--protected-mode", "yes",
             "--logfile", ""], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self.proc.returncode}; see "
                                       f"{self.directory / 'redis.log'}")
            if self._pong():
                return self
            time.sleep(0.02)
        self.kill()
        raise RedisUnavailable(f"redis-server on port {self.port} did not answer within "
                               f"{timeout_s} s")

    def _pong(self) -> bool:
        # Loading the AOF answers -LOADING: only +PONG means it serves.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash would: only what was synced survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
