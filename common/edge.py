"""The one gRPC edge of every server: request id, status mapping, one log line, metrics.

Each server installs ``Edge`` after the bearer-token check (``serving.new_server(...,
interceptors=[*security.server_interceptors(settings), Edge(metrics)])``), so a refused call
never reaches it. For every unary call to a ``shortlist.v1`` service it

* takes the request id from the request's ``request_id`` field when the caller set one (the
  gateway sets it on every upstream call, so one id follows a request through all three
  servers), else makes one; the service reads it with ``request_id()``;
* lets the service add fields to the request's log line with ``annotate(...)``;
* turns a ``ServiceError`` into its ``status`` and message, and any other exception into
  INTERNAL with a message naming the request id: the traceback goes to the log, never to the
  caller;
* counts the call in ``Metrics.request`` and, when the response has ``timings_ms``, its own
  stages in ``Metrics.stages`` (keys with a dot, like the gateway's debug ``retrieval.merge``,
  are another server's stages, already counted there);
* writes exactly one ``request`` log line with ``rpc``, ``request_id``, ``server``, the
  annotated fields, ``code``, ``error`` (when failed) and ``ms``.

Health and reflection are not requests: calls outside ``shortlist.v1`` pass through untouched.
Services therefore hold no try/except, logging or metrics code of their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc

from shortlist.common.errors import ServiceError
from shortlist.common.logs import new_request_id
from shortlist.common.metrics import Metrics

logger = logging.getLogger(__name__)

# Full method names of the calls the edge handles ("/shortlist.v1.Gateway/Recommend", ...).
SCOPE = "/shortlist.v1."
# A caller's request id is kept up to this length: it is repeated on every log line and every
# upstream call, so a hostile one must not be able to bloat them.
MAX_REQUEST_ID = 64


@dataclass
class _Call:
    request_id: str
    fields: dict[str, Any] = field(default_factory=dict)


# The call the current thread serves. A ContextVar rather than a thread-local so that code
# copying the context (asyncio, an executor with copy_context) still sees it; the edge resets
# it after every call, since gRPC reuses its worker threads.
_current: ContextVar[_Call | None] = ContextVar("shortlist_edge_call", default=None)


def request_id() -> str:
    """The id of the request being served ("" outside a call the edge handles)."""
    call = _current.get()
    return call.request_id if call is not None else ""


def annotate(**fields: Any) -> None:
    """Add ``fields`` to the current request's log line (ignored outside a call)."""
    call = _current.get()
    if call is not None:
        call.fields.update(fields)


def status_of(exc: ServiceError) -> grpc.StatusCode:
    """The status code ``exc.status`` names; INTERNAL if it names none (a bug, not the
    caller's fault), and OK is no failure status either."""
    code = getattr(grpc.StatusCode, str(exc.status), None)
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        return grpc.StatusCode.INTERNAL
    return code


def request_id_of(request: object) -> str:
    """The caller's ``request_id`` (cut to ``MAX_REQUEST_ID``), or a new one."""
    given = getattr(request, "request_id", "")
    if isinstance(given, str) and given:
        return given[:MAX_REQUEST_ID]
    return new_request_id()


def own_stages(timings_ms: Mapping[str, float]) -> dict[str, float]:
    """This server's stages: without the dotted keys copied from an upstream's response."""
    return {stage: ms for stage, ms in timings_ms.items() if "." not in stage}


class Edge(grpc.ServerInterceptor):
    """Wraps every unary ``shortlist.v1`` handler of a server (see the module docstring)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method or ""
        if (handler is None or handler.request_streaming or handler.response_streaming
                or not method.startswith(SCOPE)):
            return handler
        rpc = method.rsplit("/", 1)[-1]
        behaviour = handler.unary_unary

        def serve(request, context):
            return self._serve(rpc, behaviour, request, context)

        return grpc.unary_unary_rpc_method_handler(
            serve, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def _serve(self, rpc: str, behaviour: Callable, request, context: grpc.ServicerContext):
        start = time.perf_counter()
        call = _Call(request_id_of(request))
        token = _current.set(call)
        code, message, error, exc_info = grpc.StatusCode.OK, "", None, None
        response, reraise, abort = None, None, False
        try:
            response = behaviour(request, context)
            code = _context_code(context) or grpc.StatusCode.OK  # a handler's own set_code
            if code is not grpc.StatusCode.OK:
                error = _context_details(context)
        except ServiceError as exc:
            code, message, abort = status_of(exc), str(exc), True
            error = message
        except Exception as exc:
            own = _context_code(context)
            if own is not None:  # the handler called context.abort itself: keep its status
                code, error, reraise = own, _context_details(context), exc
            else:
                code, abort = grpc.StatusCode.INTERNAL, True
                message = f"internal error (request id {call.request_id})"
                error = f"{type(exc).__name__}: {exc}"
                exc_info = exc
        finally:
            _current.reset(token)
        ms = round((time.perf_counter() - start) * 1e3, 3)
        self.metrics.request(rpc, code.name, ms)
        if code is grpc.StatusCode.OK and response is not None:
            timings = getattr(response, "timings_ms", None)
            if timings:
                self.metrics.stages(own_stages(timings))
        fields = {"rpc": rpc, "request_id": call.request_id, "server": self.metrics.server}
        fields.update(call.fields)
        fields["code"] = code.name
        if error is not None:
            fields["error"] = error
        fields["ms"] = ms
        if exc_info is not None:
            logger.error("request", exc_info=exc_info, extra={"fields": fields})
        else:
            logger.info("request", extra={"fields": fields})
        if reraise is not None:
            raise reraise
        if abort:
            context.abort(code, message)
        return response


def _context_code(context) -> grpc.StatusCode | None:
    """The status a handler set on its context (``abort``, ``set_code``), if any."""
    try:
        code = context.code()
    except (AttributeError, NotImplementedError):
        return None
    return code if isinstance(code, grpc.StatusCode) else None


def _context_details(context) -> str:
    try:
        details = context.details()
    except (AttributeError, NotImplementedError):
        return ""
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return details or ""
