"""A thin client of the gateway: deadlines on every call, retries on idempotent reads only.

Each method builds the request from plain arguments and returns the response message of the
``shortlist.v1`` contract unchanged; nothing is hidden that a caller might need. Failures
raise ``ShortlistError`` (a ``grpc.RpcError``), whose text names the call, the address tried
and what to check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import grpc

from shortlist.client.channel import channel_credentials, open_channel, retry_service_config
from shortlist.v1 import (
    admin_pb2,
    common_pb2,
    experiment_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    retrieval_pb2,
)

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "SHORTLIST_TARGET"
TOKEN_ENV = "SHORTLIST_TOKEN"

GATEWAY = "shortlist.v1.Gateway"
# Reads only: RecordInteraction and UpsertItem may have been applied by a call that then timed
# out, and SetVersion has side effects, so those are never retried behind the caller's back.
IDEMPOTENT = ("Recommend", "SimilarItems", "SearchItems", "ListVersions", "GetExperiment",
              "Explain")

# What to check next, by status; the server's own words (the details) come before it.
_HINTS = {
    grpc.StatusCode.UNAVAILABLE: "is a Shortlist gateway running at that address? (choose "
                                 "another with the target argument, --target or ${env})",
    grpc.StatusCode.DEADLINE_EXCEEDED: "no answer within {timeout:g}s (raise the timeout, or "
                                       "check the server's load)",
    grpc.StatusCode.UNAUTHENTICATED: "this call needs the gateway's write token (--token or "
                                     "${token_env})",
    grpc.StatusCode.INVALID_ARGUMENT: "nothing was applied; fix the argument the message "
                                      "names",
    grpc.StatusCode.NOT_FOUND: "the served version does not know that id",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the server is shedding load; retry in a moment",
    grpc.StatusCode.UNIMPLEMENTED: "the server there does not offer this call: is the address "
                                   "a gateway's, not retrieval's or ranking's?",
    grpc.StatusCode.FAILED_PRECONDITION: "the server cannot do this in its current state",
    grpc.StatusCode.PERMISSION_DENIED: "the server refused this caller",
    grpc.StatusCode.CANCELLED: "the call was cancelled before an answer",
}
_SERVER_FAULT = "a fault inside the server: its log has the details"
# More precise than the status alone, for the calls where the cause is known.
_METHOD_HINTS = {
    ("SimilarItems", grpc.StatusCode.NOT_FOUND): "no item with that id in the served version "
                                                 "(find ids with SearchItems: `shortlist "
                                                 "search TEXT`)",
    ("SetVersion", grpc.StatusCode.NOT_FOUND): "no such version (list them with ListVersions: "
                                               "`shortlist versions`)",
    ("SetVersion", grpc.StatusCode.FAILED_PRECONDITION): "that version could not be loaded "
                                                         "(list them with ListVersions: "
                                                         "`shortlist versions`)",
}
# Words gRPC puts in the details of a failed TLS handshake.
_TLS_WORDS = ("ssl", "tls", "handshake", "certificate")


def _hint(method: str, code: grpc.StatusCode, details: str, timeout: float) -> str:
    """What the caller should check, from the call, the status and the server's words.

    UNAVAILABLE has three different causes that need three different fixes: nothing (or a
    plaintext server) at the address, a TLS mismatch, or a gateway that answered but whose
    upstream is down (the gateway says "retrieval unavailable ..." then).
    """
    if code == grpc.StatusCode.UNAVAILABLE:
        who = details.split(" ", 1)[0]
        if who in ("retrieval", "ranking") and details.startswith(f"{who} unavailable"):
            return (f"the gateway answered, but its {who} server did not: is {who} running "
                    "and reachable from the gateway?")
        if any(word in details.lower() for word in _TLS_WORDS):
            return ("the TLS handshake failed: check the CA, the client certificate and key, "
                    "the server name, and whether the server speaks TLS at all")
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS):
        return _SERVER_FAULT
    hint = _METHOD_HINTS.get((method, code)) or _HINTS.get(code, "")
    return hint.replace("${env}", "$" + TARGET_ENV).replace(
        "${token_env}", "$" + TOKEN_ENV).format(timeout=timeout)


Response = TypeVar("Response")


class ShortlistError(grpc.RpcError):
    """A failed call, with the status of the server's answer and what was tried."""

    def __init__(self, method: str, target: str, code: grpc.StatusCode, details: str,
                 timeout: float) -> None:
        super().__init__(f"{method} to {target}: {code.name}")
        self.method, self.target, self.timeout = method, target, timeout
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    @property
    def hint(self) -> str:
        """What to check next; separate from ``str()`` for callers that word the rest."""
        details = " ".join((self._details or "").split())
        return _hint(self.method, self._code, details, self.timeout)

    def __str__(self) -> str:
        """One line: the call, the address, the status, the server's words and a hint."""
        text = f"{self.method} to {self.target} failed: {self._code.name}"
        details = " ".join((self._details or "").split())
        if details:
            text += f": {details}"
        if self.hint:
            text += "; " + self.hint
        return text


class Client:
    """A gateway client. Target: the argument, else ``$SHORTLIST_TARGET``, else localhost.

    ``timeout`` is every call's default deadline in seconds. TLS is on when any of ``tls``,
    ``tls_ca``, ``tls_cert`` is given (``tls=True`` alone verifies with the system's roots);
    ``token`` (default ``$SHORTLIST_TOKEN``) is sent as a bearer token on every call.
    """

    def __init__(self, target: str | None = None, *, timeout: float = 5.0,
                 token: str | None = None, tls: bool = False, tls_ca: str = "",
                 tls_cert: str = "", tls_key: str = "", tls_server_name: str = "",
                 options: Sequence[tuple[str, object]] = ()) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive: every call needs a deadline")
        self.target = target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
        self.timeout = timeout
        credentials = channel_credentials(tls_ca, tls_cert, tls_key, prefix="tls_")
        if credentials is None and (tls or tls_server_name):
            credentials = grpc.ssl_channel_credentials()
        token = os.environ.get(TOKEN_ENV, "") if token is None else token
        opts = [("grpc.service_config",
                 retry_service_config((GATEWAY, m) for m in IDEMPOTENT)),
                ("grpc.enable_retries", 1), *options]
        self.channel = open_channel(self.target, credentials, opts, tls_server_name, token)
        self.stub = gateway_pb2_grpc.GatewayStub(self.channel)

    def _call(self, method: str, fn: Callable[..., Response], request: object,
              timeout: float | None) -> Response:
        timeout = self.timeout if timeout is None else timeout
        try:
            return fn(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
            raise ShortlistError(method, self.target, code or grpc.StatusCode.UNKNOWN,
                                 details or "", timeout) from None

    def recommend(self, user_id: str, k: int = 10, *, recent_item_ids: Sequence[str] = (),
                  exclude_item_ids: Sequence[str] = (), include_categories: Sequence[str] = (),
                  exclude_categories: Sequence[str] = (), debug: bool = False,
                  after_event_id: str = "", user_attributes: Mapping[str, str] | None = None,
                  rules: Sequence[common_pb2.Rule] = (), explain: bool = False,
                  variant: str = "",
                  timeout: float | None = None) -> gateway_pb2.RecommendResponse:
        """Up to ``k`` items for ``user_id`` (an unknown user gets cold-start items).

        ``recent_item_ids``: what the user just engaged with, oldest first (a session).
        ``after_event_id``: the ``event_id`` of the user's latest write, which the answer must
        reflect on replicated servers (the gateway remembers the writes it forwarded itself).
        ``user_attributes``: what is known of the user (``{"age": "25"}``), for new users.
        ``rules``: business rules for this answer (boost, bury, pin, exclude), e.g.
        ``common_pb2.Rule(action=common_pb2.Rule.PIN, item_id="296", position=1)``; the
        server checks them (a malformed one is INVALID_ARGUMENT) and, with ``debug``, names
        the rules that touched each item in its ``rules``.
        ``debug``: stage timings and each item's sources. ``explain``: also why each ranked
        item is there (``contributions``, ``because_of_item_id``), at the cost of a second pass
        over the ranker's trees. ``variant``: serve this experiment variant rather than the
        user's assigned one (to check a variant by hand). The response's ``variant`` names the
        one that served and its ``request_id`` the list (pass it on as ``follows_request_id``).
        """
        request = gateway_pb2.RecommendRequest(
            user_id=user_id, k=k, recent_item_ids=list(recent_item_ids), debug=debug,
            after_event_id=after_event_id, user_attributes=dict(user_attributes or {}),
            filters=common_pb2.Filters(exclude_item_ids=list(exclude_item_ids),
                                       include_categories=list(include_categories),
                                       exclude_categories=list(exclude_categories)),
            rules=list(rules), explain=explain, variant=variant)
        return self._call("Recommend", self.stub.Recommend, request, timeout)

    def explain(self, user_id: str, item_id: str = "", k: int = 10, *,
                recent_item_ids: Sequence[str] = (), exclude_item_ids: Sequence[str] = (),
                include_categories: Sequence[str] = (), exclude_categories: Sequence[str] = (),
                rules: Sequence[common_pb2.Rule] = (), variant: str = "",
                user_attributes: Mapping[str, str] | None = None,
                timeout: float | None = None) -> gateway_pb2.ExplainResponse:
        """Why ``user_id`` gets their top ``k`` (each item's generators, ranker features,
        closest recent item, rules and what diversity moved), or, with ``item_id``, where that
        item stands: recommended, ranked below k, not retrieved, seen, filtered or unknown.
        The other arguments are Recommend's, so the same request is explained."""
        request = gateway_pb2.ExplainRequest(
            user_id=user_id, item_id=item_id, k=k, recent_item_ids=list(recent_item_ids),
            filters=common_pb2.Filters(exclude_item_ids=list(exclude_item_ids),
                                       include_categories=list(include_categories),
                                       exclude_categories=list(exclude_categories)),
            rules=list(rules), variant=variant, user_attributes=dict(user_attributes or {}))
        return self._call("Explain", self.stub.Explain, request, timeout)

    def similar_items(self, item_id: str, k: int = 10, *,
                      timeout: float | None = None) -> retrieval_pb2.SimilarItemsResponse:
        request = retrieval_pb2.SimilarItemsRequest(item_id=item_id, k=k)
        return self._call("SimilarItems", self.stub.SimilarItems, request, timeout)

    def search_items(self, query: str, k: int = 10, *,
                     timeout: float | None = None) -> retrieval_pb2.SearchItemsResponse:
        request = retrieval_pb2.SearchItemsRequest(query=query, k=k)
        return self._call("SearchItems", self.stub.SearchItems, request, timeout)

    def record_interaction(self, user_id: str, item_id: str, weight: float = 1.0,
                           timestamp: int = 0, *, client_event_id: str = "", event: str = "",
                           follows_request_id: str = "", timeout: float | None = None
                           ) -> retrieval_pb2.RecordInteractionResponse:
        """Durable before it returns; not retried (a timed-out call may have been applied).

        With ``client_event_id`` (unique per event, e.g. a UUID) calling again after a failure
        is safe: a write already recorded is answered (``duplicate``), not recorded twice.
        ``event`` is the interaction's type ("view", "purchase", "dislike", ...; "" untyped):
        the server's model weighs it, so it is passed as given and a type the model does not
        know comes back as INVALID_ARGUMENT naming the ones it does. ``follows_request_id``:
        the ``request_id`` of the Recommend response the user acted on, so the experiment
        report credits this interaction to that list.
        """
        request = retrieval_pb2.RecordInteractionRequest(user_id=user_id, item_id=item_id,
                                                         weight=weight, timestamp=timestamp,
                                                         client_event_id=client_event_id,
                                                         event=event,
                                                         follows_request_id=follows_request_id)
        return self._call("RecordInteraction", self.stub.RecordInteraction, request, timeout)

    def upsert_item(self, item_id: str, title: str, categories: Sequence[str] = (),
                    text: str = "", *, timeout: float | None = None
                    ) -> retrieval_pb2.UpsertItemResponse:
        request = retrieval_pb2.UpsertItemRequest(item_id=item_id, title=title,
                                                  categories=list(categories), text=text)
        return self._call("UpsertItem", self.stub.UpsertItem, request, timeout)

    def list_versions(self, *, timeout: float | None = None) -> admin_pb2.ListVersionsResponse:
        return self._call("ListVersions", self.stub.ListVersions,
                          admin_pb2.ListVersionsRequest(), timeout)

    def set_version(self, version: str = "", *,
                    timeout: float | None = None) -> admin_pb2.SetVersionResponse:
        """Pin ``version`` on every server; empty: follow the newest again.

        Loading a version can take a while, so the deadline is at least 60 s.
        """
        timeout = max(60.0, self.timeout if timeout is None else timeout)
        return self._call("SetVersion", self.stub.SetVersion,
                          admin_pb2.SetVersionRequest(version=version), timeout)

    def set_experiment(self, experiment: experiment_pb2.Experiment, *,
                       timeout: float | None = None) -> experiment_pb2.ExperimentState:
        """Run ``experiment`` from now on (an empty one ends it); needs the write token. The
        gateway checks it (INVALID_ARGUMENT names the field) and that each variant's servers
        serve its version (FAILED_PRECONDITION otherwise)."""
        return self._call("SetExperiment", self.stub.SetExperiment,
                          experiment_pb2.SetExperimentRequest(experiment=experiment), timeout)

    def get_experiment(self, *, timeout: float | None = None) -> experiment_pb2.ExperimentState:
        return self._call("GetExperiment", self.stub.GetExperiment,
                          experiment_pb2.GetExperimentRequest(), timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
