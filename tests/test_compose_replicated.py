"""docker-compose.replicated.yml, layered over docker-compose.yml, checked without an engine:
what it sets must be real settings that validate, Redis must sync before acknowledging, and
the gateway must balance over the replicas by name."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parent.parent


class _Loader(yaml.SafeLoader):
    pass


# Compose's `!reset` (drop what the base file set); an empty value here.
_Loader.add_constructor("!reset", lambda loader, node: [] if isinstance(
    node, yaml.SequenceNode) else None)


@pytest.fixture(scope="module")
def overlay() -> dict:
    return yaml.load((REPO / "docker-compose.replicated.yml").read_text(), Loader=_Loader)


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.load((REPO / "docker-compose.yml").read_text(), Loader=_Loader)


def test_redis_acknowledges_only_synced_writes_on_a_named_volume(overlay):
    redis = overlay["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    data = command[command.index("--dir") + 1]
    assert f"redis:{data}" in redis["volumes"] and "redis" in overlay["volumes"]
    assert all(p.startswith("127.0.0.1:") for p in redis["ports"])


def test_retrieval_replicas_share_state_through_that_redis(overlay, base):
    from shortlist.retrieval.settings import RetrievalSettings

    retrieval = overlay["services"]["retrieval"]
    env = {**base["services"]["retrieval"]["environment"], **retrieval["environment"]}
    settings = RetrievalSettings(**{k.removeprefix("SHORTLIST_RETRIEVAL_").lower(): v
                                    for k, v in env.items() if "${" not in v})
    assert settings.state_backend == "redis"
    assert settings.redis_url.get_secret_value() == "redis://redis:6379/0"
    assert retrieval["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("server", ["retrieval", "ranking"])
def test_replicated_servers_run_two_and_publish_no_host_port(overlay, server):
    service = overlay["services"][server]
    assert service["deploy"]["replicas"] >= 2
    assert service["ports"] == []  # `!reset`: two replicas cannot publish one host port


def test_the_gateway_balances_over_the_replicas_by_service_name(overlay, base):
    from shortlist.client.channel import channel_target
    from shortlist.gateway.settings import GatewaySettings

    env = overlay["services"]["gateway"]["environment"]
    settings = GatewaySettings(retrieval_target=env["SHORTLIST_GATEWAY_RETRIEVAL_TARGET"],
                               ranking_target=env["SHORTLIST_GATEWAY_RANKING_TARGET"])
    for server, target in (("retrieval", settings.retrieval_target),
                           ("ranking", settings.ranking_target)):
        assert channel_target(target) == target and target.startswith(f"dns:///{server}:")
        port = base["services"][server]["environment"][
            f"SHORTLIST_{server.upper()}_ADDRESS"].rsplit(":", 1)[1]
        assert target.endswith(f":{port}")


def test_every_overlaid_service_exists_in_the_base_file(overlay, base):
    assert set(overlay["services"]) - {"redis"} <= set(base["services"])


@pytest.mark.parametrize("server", ["retrieval", "ranking"])
def test_prometheus_scrapes_every_replica(base, server):
    """A static target names one address; A-record discovery on the service name returns
    every replica's, so each replica's /metrics (and drift) is scraped."""
    assert "prometheus" in base["services"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == server]
    assert not job.get("static_configs")
    assert [(d["type"], d["names"]) for d in job["dns_sd_configs"]] == [("A", [server])]
