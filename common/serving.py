"""gRPC server plumbing shared by the three servers: health, reflection, graceful shutdown."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class StartupError(Exception):
    """An expected reason not to start (a busy port, an unusable setting).

    ``run_main`` logs it as one line naming ``setting`` (a settings field; the line shows its
    environment variable) and exits with code 2: an operator needs the fix, not a traceback.
    """

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as (host, port); ValueError when it is neither."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_problem(host: str, port: int) -> str | None:
    """Why a listener on ``host:port`` would fail now, as "port P is ...", or None if it would not.

    A plain socket probe (SO_REUSEADDR, as gRPC sets it) names the cause that gRPC's
    "Failed to bind" leaves out, and catches it before gRPC core prints its own error lines.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"port {port} is not available: cannot resolve host {host!r} ({exc.strerror})"
    codes = []
    for family, kind, proto, _name, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except OSError as exc:
            codes.append(exc.errno)
        else:
            codes.append(0)
    if errno.EADDRINUSE in codes:
        return f"port {port} is already in use"
    if errno.EACCES in codes:
        return f"port {port} is not permitted (ports below 1024 need privileges)"
    if codes and 0 not in codes:
        return f"port {port} is not available: {host!r} is not an address of this machine"
    return None


def new_server(max_workers: int, max_message_bytes: int = MAX_MESSAGE_BYTES,
               interceptors: Iterable[grpc.ServerInterceptor] = (),
               max_concurrent_rpcs: int | None = None) -> grpc.Server:
    """A thread-pool server. Past ``max_concurrent_rpcs`` calls in flight, gRPC answers
    RESOURCE_EXHAUSTED at once instead of queueing without bound (overload protection)."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=list(interceptors),
        maximum_concurrent_rpcs=max_concurrent_rpcs or None,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )


def add_health_and_reflection(
    server: grpc.Server, service_names: Iterable[str]
) -> health.HealthServicer:
    """Register grpc.health.v1 (every service NOT_SERVING until set) and server reflection."""
    names = list(service_names)
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *names]:
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    return servicer


def set_serving(servicer: health.HealthServicer, service_names: Iterable[str]) -> None:
    for name in ["", *service_names]:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


def bind(server: grpc.Server, address: str,
         credentials: grpc.ServerCredentials | None = None) -> int:
    """Bind ``host:port`` (port 0 picks a free one) and return the bound port.

    With ``credentials`` (see ``security.server_credentials``) the port serves TLS only.
    Raises StartupError (setting ``address``) when the address cannot be listened on.
    """
    try:
        problem = bind_problem(*split_address(address))
    except ValueError:
        problem = None  # not HOST:PORT (unix:PATH, say): gRPC's own grammar decides
    if problem is not None:
        raise StartupError(f"cannot listen on {address}: {problem}", "address")
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # lost a race for the port since the probe, or a bad address
        raise StartupError(f"cannot listen on {address}: gRPC could not bind it", "address") \
            from exc
    if port == 0:
        raise StartupError(f"cannot listen on {address}: gRPC could not bind it", "address")
    return port


def serve_metrics(metrics, settings) -> int | None:
    """Start the Prometheus endpoint if ``settings.metrics_port`` is set; its bound port.

    Raises StartupError (naming ``metrics_port`` or ``metrics_host``) if it cannot listen.
    """
    if settings.metrics_port is None:
        return None
    host, port = settings.metrics_host, settings.metrics_port
    try:
        return metrics.serve(host, port)
    except OSError as exc:
        problem = bind_problem(host, port) or f"port {port}: {exc.strerror or exc}"
        in_use = exc.errno in (errno.EADDRINUSE, errno.EACCES)
        raise StartupError(f"cannot serve /metrics on {join_address(host, port)}: {problem}",
                           "metrics_port" if in_use else "metrics_host") from exc


def close_on_termination(server: grpc.Server, close: Callable[[], None]) -> None:
    """Run ``close`` once ``server`` has stopped, on a non-daemon thread: the interpreter
    waits for it at exit, so what ``close`` flushes (a log's last batch) is not cut off."""
    def wait_then_close() -> None:
        server.wait_for_termination()
        try:
            close()
        except Exception:
            logger.exception("closing after the server stopped failed")

    threading.Thread(target=wait_then_close, name="close-on-stop").start()


def run_until_signal(server: grpc.Server, grace_s: float) -> None:
    """Block until SIGTERM/SIGINT, then stop accepting, drain in-flight calls and return."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        logger.info("shutdown requested", extra={"fields": {"signal": signum}})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()
    server.stop(grace_s).wait()
    logger.info("stopped")


def _env_name(settings_class: object, field: str) -> str:
    prefix = getattr(settings_class, "model_config", {}).get("env_prefix", "")
    return f"{prefix}{field}".upper()


def _settings_problem(settings_class: object, exc: Exception) -> tuple[str, str]:
    """(environment variables, what is wrong with them) for a settings class that refused."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        names, problems = [], []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else ""
            name = _env_name(settings_class, field)
            shown = "(hidden)" if "token" in field else repr(err.get("input"))
            names.append(name)
            problems.append(f"{name}={shown}: {err['msg']}")
        return ", ".join(dict.fromkeys(names)), "; ".join(problems)
    # pydantic_settings.SettingsError: 'error parsing value for field "x" from source "..."'
    field = str(exc).split('field "', 1)[-1].split('"', 1)[0] if 'field "' in str(exc) else ""
    return _env_name(settings_class, field) if field else "", str(exc)


def run_main(name: str, settings_factory, create_server) -> int:
    """The body of every server's ``main()``: settings, logging, load, serve until SIGTERM.

    Expected failures (a setting that does not parse, a busy port, no artifacts, bad TLS
    files) are one log line naming the environment variable to change, and exit code 2.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from shortlist.common.artifacts import ArtifactError
    from shortlist.common.logs import configure_logging
    from shortlist.common.security import SecurityConfigError

    configure_logging()  # before the settings, so a bad setting is reported as a log line too
    log = logging.getLogger(name)
    try:
        settings = settings_factory()
    except (ValidationError, SettingsError) as exc:
        setting, problem = _settings_problem(settings_factory, exc)
        log.error(f"invalid setting: {problem}", extra={"fields": {"setting": setting}})
        return 2
    try:
        configure_logging(settings.log_level)
    except ValueError:
        setting = _env_name(settings_factory, "log_level")
        log.error(f"invalid setting: {setting}={settings.log_level!r}: not a logging level",
                  extra={"fields": {"setting": setting}})
        return 2
    try:
        server, port = create_server(settings)
    except StartupError as exc:
        log.error(str(exc), extra={"fields": {
            "setting": _env_name(settings_factory, exc.setting)}})
        return 2
    except ArtifactError as exc:
        setting = _env_name(settings_factory, "artifacts")
        if getattr(settings, "version", ""):
            setting += " or " + _env_name(settings_factory, "version")
        log.error(f"cannot load artifacts: {exc}", extra={"fields": {
            "error": str(exc), "setting": setting}})
        return 2
    except SecurityConfigError as exc:
        log.error("invalid TLS settings", extra={"fields": {"error": str(exc)}})
        return 2
    log.info("serving", extra={"fields": {
        "address": settings.address, "port": port, "tls": bool(settings.tls_cert),
        "mtls": bool(settings.tls_cert and settings.tls_client_ca),
        "write_token": bool(settings.write_token.get_secret_value())}})
    run_until_signal(server, settings.grace_seconds)
    return 0
