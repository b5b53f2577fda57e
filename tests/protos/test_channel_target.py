"""Address settings become gRPC targets: one address, a list of replicas, or a URI."""

from __future__ import annotations

import json

import pytest

from shortlist.client.channel import balanced_service_config, channel_target, retry_service_config


@pytest.mark.parametrize(("value", "target"), [
    ("127.0.0.1:50052", "127.0.0.1:50052"),
    ("localhost:50052", "localhost:50052"),
    ("10.0.0.1:1, 10.0.0.2:2", "ipv4:10.0.0.1:1,10.0.0.2:2"),
    ("[::1]:1,[::1]:2", "ipv6:[::1]:1,[::1]:2"),
    ("dns:///retrieval.internal:50052", "dns:///retrieval.internal:50052"),
])
def test_targets(value, target):
    assert channel_target(value) == target


def test_a_list_of_host_names_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="dns:///"):
        channel_target("retrieval-a:50052,retrieval-b:50052")


def test_the_balanced_config_keeps_the_retries_and_checks_health():
    retries = retry_service_config([("shortlist.v1.Retrieval", "Retrieve")])
    config = json.loads(balanced_service_config(retries, "shortlist.v1.Retrieval"))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "shortlist.v1.Retrieval"}
    assert config["methodConfig"] == json.loads(retries)["methodConfig"]


def test_the_gateway_refuses_such_a_list_at_startup():
    from pydantic import ValidationError

    from shortlist.gateway.settings import GatewaySettings

    with pytest.raises(ValidationError, match="dns:///"):
        GatewaySettings(ranking_target="ranking-a:1,ranking-b:2")
