"""TLS, mutual TLS and the write token, on every hop, against real in-process servers.

A CA, a server certificate (SAN: DNS localhost, IP 127.0.0.1) and client certificates are
generated at test time. Retrieval, ranking and the gateway all serve TLS and require client
certificates; the gateway reaches retrieval and ranking over mTLS with its own client
certificate and their write token (UPSTREAM_TOKEN); callers of the gateway need GATEWAY_TOKEN
for writes and SetVersion.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shortlist.clients import cli
from shortlist.common import security
from shortlist.gateway.server import create_server as create_gateway
from shortlist.gateway.settings import GatewaySettings
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)

GATEWAY_TOKEN = "gateway-write-token"
UPSTREAM_TOKEN = "backend-write-token"
SETTINGS = (GatewaySettings, RetrievalSettings, RankingSettings)


# ---- certificates ---------------------------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject: str, key, issuer: tuple | None, *, ca: bool = False,
           usage: x509.ObjectIdentifier | None = None, san: list | None = None):
    """A certificate for ``key``; ``issuer`` = (ca_cert, ca_key), None: self-signed."""
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(subject), key)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(directory: Path, stem: str, cert, key=None) -> tuple[str, str]:
    cert_path = directory / f"{stem}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return str(cert_path), ""
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@dataclass(frozen=True)
class Pki:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    rogue_ca: str  # a CA nobody trusts
    rogue_client_cert: str
    rogue_client_key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    new_key = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731
    ca_key, rogue_key = new_key(), new_key()
    ca = _issue("Shortlist test CA", ca_key, None, ca=True)
    rogue = _issue("Rogue CA", rogue_key, None, ca=True)
    server_key, client_key, rogue_client_key = new_key(), new_key(), new_key()
    server = _issue("localhost", server_key, (ca, ca_key), usage=ExtendedKeyUsageOID.SERVER_AUTH,
                    san=[x509.DNSName("localhost"),
                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = _issue("shortlist-client", client_key, (ca, ca_key),
                    usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue_client = _issue("intruder", rogue_client_key, (rogue, rogue_key),
                          usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(_write(d, "ca", ca)[0], *_write(d, "server", server, server_key),
               *_write(d, "client", client, client_key), _write(d, "rogue-ca", rogue)[0],
               *_write(d, "rogue-client", rogue_client, rogue_client_key))


# ---- servers --------------------------------------------------------------------------------

@dataclass
class Secure:
    gateway: str
    retrieval: str
    ranking: str
    root: Path
    servers: list


def _server_tls(pki: Pki) -> dict:
    return {"tls_cert": pki.server_cert, "tls_key": pki.server_key, "tls_client_ca": pki.ca}


def _gateway_settings(pki: Pki, retrieval: str, ranking: str, **overrides) -> GatewaySettings:
    return GatewaySettings(**{
        "address": "127.0.0.1:0", "retrieval_target": retrieval, "ranking_target": ranking,
        "write_token": GATEWAY_TOKEN, "upstream_token": UPSTREAM_TOKEN,
        "upstream_tls_ca": pki.ca, "upstream_tls_cert": pki.client_cert,
        "upstream_tls_key": pki.client_key, **_server_tls(pki), **overrides})


@pytest.fixture(scope="module")
def secure(trained, pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secure")
    root = tmp / "artifacts"
    shutil.copytree(trained, root)  # SetVersion pins in here
    servers = []
    try:
        retrieval, rport = create_retrieval(RetrievalSettings(
            address="127.0.0.1:0", artifacts=root, event_log=tmp / "events.db",
            write_token=UPSTREAM_TOKEN, **_server_tls(pki)))
        servers.append(retrieval)
        ranking, kport = create_ranking(RankingSettings(
            address="127.0.0.1:0", artifacts=root, write_token=UPSTREAM_TOKEN,
            **_server_tls(pki)))
        servers.append(ranking)
        rtarget, ktarget = f"127.0.0.1:{rport}", f"127.0.0.1:{kport}"
        gateway, gport = create_gateway(_gateway_settings(pki, rtarget, ktarget))
        servers.append(gateway)
        yield Secure(f"127.0.0.1:{gport}", rtarget, ktarget, root, servers)
    finally:
        for server in servers:
            server.stop(0)


def _credentials(pki: Pki, *, ca: str | None = None, client: bool = True,
                 rogue_client: bool = False) -> grpc.ChannelCredentials:
    if rogue_client:
        return security.channel_credentials(pki.ca, pki.rogue_client_cert, pki.rogue_client_key)
    if client:
        return security.channel_credentials(ca or pki.ca, pki.client_cert, pki.client_key)
    return security.channel_credentials(ca or pki.ca)


@pytest.fixture
def tls_channel(pki, secure):
    with security.open_channel(secure.gateway, _credentials(pki)) as channel:
        yield channel


def _code(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, timeout=5, **kwargs)
    return err.value


def _recommend(channel, timeout: float = 5) -> gateway_pb2.RecommendResponse:
    return gateway_pb2_grpc.GatewayStub(channel).Recommend(
        gateway_pb2.RecommendRequest(user_id="u5", k=5), timeout=timeout)


def _feedback(item: str = "i7") -> retrieval_pb2.RecordInteractionRequest:
    return retrieval_pb2.RecordInteractionRequest(user_id="u5", item_id=item, weight=1.0)


# ---- TLS and mTLS ---------------------------------------------------------------------------

def test_recommend_over_mtls_on_every_hop(tls_channel):
    resp = _recommend(tls_channel)
    assert len(resp.items) == 5
    # Not degraded and ranked: the gateway reached retrieval and ranking over mTLS.
    assert not resp.degraded
    assert [i.ranking_rank for i in resp.items] == [1, 2, 3, 4, 5]


def test_health_over_tls(tls_channel):
    resp = health_pb2_grpc.HealthStub(tls_channel).Check(health_pb2.HealthCheckRequest(),
                                                        timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("who", ["gateway", "retrieval", "ranking"])
def test_client_without_certificate_is_refused(pki, secure, who):
    with security.open_channel(getattr(secure, who), _credentials(pki, client=False)) as ch:
        err = _code(health_pb2_grpc.HealthStub(ch).Check, health_pb2.HealthCheckRequest())
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_client_certificate_from_an_untrusted_ca_is_refused(pki, secure):
    with security.open_channel(secure.gateway, _credentials(pki, rogue_client=True)) as ch:
        assert _code(_recommend, ch).code() == grpc.StatusCode.UNAVAILABLE


def test_server_not_signed_by_the_expected_ca_is_refused(pki, secure):
    with security.open_channel(secure.gateway, _credentials(pki, ca=pki.rogue_ca)) as ch:
        assert _code(_recommend, ch).code() == grpc.StatusCode.UNAVAILABLE


def test_server_name_is_checked(pki, secure):
    with security.open_channel(secure.gateway, _credentials(pki),
                               server_name="not-in-the-certificate.example") as ch:
        assert _code(_recommend, ch).code() == grpc.StatusCode.UNAVAILABLE
    with security.open_channel(f"localhost:{secure.gateway.rsplit(':', 1)[1]}",
                               _credentials(pki)) as ch:
        assert len(_recommend(ch).items) == 5  # DNS name in the SAN


@pytest.mark.parametrize("who", ["gateway", "retrieval", "ranking"])
def test_plaintext_to_a_tls_port_fails(secure, who):
    with grpc.insecure_channel(getattr(secure, who)) as ch:
        err = _code(health_pb2_grpc.HealthStub(ch).Check, health_pb2.HealthCheckRequest())
    assert err.code() == grpc.StatusCode.UNAVAILABLE


# ---- the write token ------------------------------------------------------------------------

def test_reads_need_no_token(tls_channel):
    stub = gateway_pb2_grpc.GatewayStub(tls_channel)
    assert len(_recommend(tls_channel).items) == 5
    assert stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="i0", k=3),
                             timeout=5).items
    assert stub.ListVersions(admin_pb2.ListVersionsRequest(), timeout=5).serving


def test_record_interaction_needs_the_token(pki, secure, tls_channel):
    stub = gateway_pb2_grpc.GatewayStub(tls_channel)
    err = _code(stub.RecordInteraction, _feedback())
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in err.details()
    for wrong in ("Bearer nope", f"Basic {GATEWAY_TOKEN}", "Bearer " + UPSTREAM_TOKEN):
        err = _code(stub.RecordInteraction, _feedback(), metadata=[("authorization", wrong)])
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "invalid bearer token" in err.details()
    upsert = retrieval_pb2.UpsertItemRequest(item_id="new-1", title="New", text="space robot")
    assert _code(stub.UpsertItem, upsert).code() == grpc.StatusCode.UNAUTHENTICATED
    # The right token: the gateway forwards with its upstream token, which retrieval accepts.
    with security.open_channel(secure.gateway, _credentials(pki), token=GATEWAY_TOKEN) as ch:
        authed = gateway_pb2_grpc.GatewayStub(ch)
        resp = authed.RecordInteraction(_feedback(), timeout=5)
        assert resp.sequence > 0 and resp.history_length > 0
        assert authed.UpsertItem(upsert, timeout=5).created


def test_set_version_needs_the_token(pki, secure, tls_channel):
    stub = gateway_pb2_grpc.GatewayStub(tls_channel)
    err = _code(stub.SetVersion, admin_pb2.SetVersionRequest(version=""))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    serving = stub.ListVersions(admin_pb2.ListVersionsRequest(), timeout=5).serving
    with security.open_channel(secure.gateway, _credentials(pki), token=GATEWAY_TOKEN) as ch:
        authed = gateway_pb2_grpc.GatewayStub(ch)  # both Admin hops take the upstream token
        pinned = authed.SetVersion(admin_pb2.SetVersionRequest(version=serving), timeout=30)
        assert pinned.pinned == serving
        assert authed.SetVersion(admin_pb2.SetVersionRequest(version=""), timeout=30).pinned == ""


def test_backends_check_their_own_token(pki, secure):
    with security.open_channel(secure.retrieval, _credentials(pki)) as ch:
        stub = retrieval_pb2_grpc.RetrievalStub(ch)
        assert stub.SimilarItems(retrieval_pb2.SimilarItemsRequest(item_id="i0", k=3),
                                 timeout=5).items  # reads open
        for metadata in ([], [("authorization", f"Bearer {GATEWAY_TOKEN}")]):
            err = _code(stub.RecordInteraction, _feedback(), metadata=metadata)
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        resp = stub.RecordInteraction(_feedback("i8"), timeout=5,
                                      metadata=[("authorization", f"bearer {UPSTREAM_TOKEN}")])
        assert resp.sequence > 0
    with security.open_channel(secure.ranking, _credentials(pki)) as ch:
        admin = admin_pb2_grpc.AdminStub(ch)
        assert admin.ListVersions(admin_pb2.ListVersionsRequest(), timeout=5).serving
        err = _code(admin.SetVersion, admin_pb2.SetVersionRequest(version=""))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_gateway_with_a_wrong_upstream_token_cannot_write(pki, secure):
    """Also: upstream_tls_server_name overrides the name checked on the backends' certs."""
    gateway, port = create_gateway(_gateway_settings(
        pki, secure.retrieval, secure.ranking, upstream_token="stale",
        upstream_tls_server_name="localhost"))
    try:
        with security.open_channel(f"127.0.0.1:{port}", _credentials(pki),
                                   token=GATEWAY_TOKEN) as ch:
            assert not _recommend(ch).degraded
            err = _code(gateway_pb2_grpc.GatewayStub(ch).RecordInteraction, _feedback())
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert "UNAUTHENTICATED" in err.details()
    finally:
        gateway.stop(0)


# ---- the CLI --------------------------------------------------------------------------------

def _cli(pki, secure, *args: str) -> list[str]:
    return ["--target", f"localhost:{secure.gateway.rsplit(':', 1)[1]}", "--tls-ca", pki.ca,
            "--tls-cert", pki.client_cert, "--tls-key", pki.client_key, *args]


def test_cli_over_mtls(pki, secure, capsys, monkeypatch):
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    assert cli.main(_cli(pki, secure, "--json", "recommend", "--user", "u3", "-k", "4")) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 4 and not out["degraded"]
    assert cli.main(_cli(pki, secure, "health")) == 0
    assert "SERVING" in capsys.readouterr().out

    feedback = ("feedback", "--user", "u3", "--item", "i9")
    assert cli.main(_cli(pki, secure, *feedback)) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert cli.main(_cli(pki, secure, "--token", GATEWAY_TOKEN, *feedback)) == 0
    assert "recorded u3 -> i9" in capsys.readouterr().out
    monkeypatch.setenv(cli.TOKEN_ENV, GATEWAY_TOKEN)
    assert cli.main(_cli(pki, secure, *feedback)) == 0

    # Without a client certificate the gateway refuses the connection.
    target = _cli(pki, secure)[:4]
    assert cli.main([*target, "recommend", "--user", "u3"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
    assert cli.main([*target, "--tls-cert", pki.client_cert, "health"]) == 2
    assert "--tls-key" in capsys.readouterr().err


# ---- settings and configuration errors ------------------------------------------------------

@pytest.mark.parametrize("cls", SETTINGS)
def test_defaults_listen_on_localhost_in_plaintext_without_tokens(cls):
    fields = cls.model_fields
    assert fields["address"].default.startswith("127.0.0.1:")
    for name in ("retrieval_target", "ranking_target"):
        if name in fields:
            assert fields[name].default.startswith("127.0.0.1:")
    for name, field in fields.items():
        if name.startswith(("tls_", "upstream_tls_")) or name.endswith("_token"):
            assert field.default == "", name


def test_tls_settings_are_checked_before_serving(pki, tmp_path):
    bad = [({"tls_cert": pki.server_cert}, "set together"),
           ({"tls_client_ca": pki.ca}, "needs tls_cert"),
           ({"tls_cert": pki.server_cert, "tls_key": str(tmp_path / "missing.key")},
            "cannot read"),
           ({"tls_cert": pki.server_cert, "tls_key": pki.server_key,
             "tls_client_ca": str(tmp_path)}, "tls_client_ca"),
           ({"upstream_tls_ca": pki.ca, "upstream_tls_cert": pki.client_cert},
            "upstream_tls_cert and upstream_tls_key")]
    for overrides, message in bad:
        with pytest.raises(security.SecurityConfigError, match=message):
            create_gateway(GatewaySettings(address="127.0.0.1:0", **overrides))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(security.SecurityConfigError, match="not a PEM file"):
        security.channel_credentials(str(not_pem))


def test_token_is_a_secret_setting(monkeypatch):
    monkeypatch.setenv("SHORTLIST_GATEWAY_WRITE_TOKEN", "hunter2")
    settings = GatewaySettings()
    assert settings.write_token.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    with pytest.raises(ValueError):
        security.BearerTokenInterceptor("")

