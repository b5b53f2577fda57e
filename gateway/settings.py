"""Gateway server settings (env prefix SHORTLIST_GATEWAY_)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shortlist.client.channel import channel_target
from shortlist.common.settings import ServerSettings


class GatewaySettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="SHORTLIST_GATEWAY_")

    address: str = Field("127.0.0.1:50051", description="host:port to listen on (port 0: any)")
    retrieval_target: str = Field("127.0.0.1:50052",
                                  description="retrieval server host:port; replicas as a comma-"
                                              "separated IP:port list or dns:///NAME:PORT "
                                              "(balanced round-robin over healthy ones)")
    ranking_target: str = Field("127.0.0.1:50053",
                                description="ranking server host:port; replicas as for "
                                            "retrieval_target")
    read_your_writes_users: int = Field(100_000, ge=0,
                                        description="users whose latest write the gateway "
                                                    "remembers, so their next Recommend "
                                                    "reflects it on any retrieval replica; "
                                                    "0: off")
    read_your_writes_s: float = Field(60.0, gt=0,
                                      description="how long a user's latest write is "
                                                  "remembered (replicas apply it within "
                                                  "milliseconds)")
    experiment_file: str = Field("state/experiment.json",
                                 description="JSON file holding the running experiment: "
                                             "SetExperiment writes it, a restart resumes it, "
                                             "and gateways sharing it follow its changes; "
                                             "empty: kept in memory only")
    experiment_poll_s: float = Field(2.0, gt=0,
                                     description="how often the experiment file is checked "
                                                 "for a change made by another gateway")
    impressions_log: str = Field("state/impressions.db",
                                 description="SQLite file logging every served list and the "
                                             "interactions that follow (shortlist-train "
                                             "experiment-report reads it); empty: off")
    impressions_retention_days: float = Field(30.0, gt=0,
                                              description="impressions older than this are "
                                                          "deleted, so the log stays bounded")
    impressions_queue: int = Field(10_000, ge=1,
                                   description="lists waiting for the log's writer before "
                                               "new ones are dropped (and counted) rather "
                                               "than slow a request down")
    shadow_queue: int = Field(64, ge=1,
                              description="requests waiting for the shadow variant before "
                                          "new ones are dropped (and counted): shadow work "
                                          "never queues without bound")
    shadow_duty_cycle: float = Field(0.01, gt=0, le=1,
                                     description="largest share of time a shadow request may "
                                                 "be in flight (the shadow rests after each "
                                                 "one, dropping what comes meanwhile): on "
                                                 "servers or CPUs shared with the served path "
                                                 "it bounds what a shadow adds to served "
                                                 "latency; 1: as many as the queue holds")
    max_concurrent_rpcs: int = Field(32, ge=0,
                                     description="calls in flight before new ones get "
                                                 "RESOURCE_EXHAUSTED; 0: no limit")
    max_workers: int = Field(16, ge=1, description="gRPC worker threads")
    default_k: int = Field(10, ge=1, description="k used when a request leaves it at 0")
    max_k: int = Field(100, ge=1, description="largest k a caller may ask for")
    candidates: int = Field(0, ge=0, description="candidates requested from retrieval; 0 (the "
                                                 "default): the count tuning chose, which the "
                                                 "artifact holds; set: override it")
    request_timeout_s: float = Field(1.0, gt=0,
                                     description="budget for a Recommend without a deadline")
    retrieval_timeout_s: float = Field(0.5, gt=0, description="deadline for each retrieval call")
    ranking_timeout_s: float = Field(0.3, gt=0, description="deadline for each ranking call")
    write_timeout_s: float = Field(2.0, gt=0,
                                   description="deadline for RecordInteraction and UpsertItem "
                                               "(includes the durable write)")
    admin_timeout_s: float = Field(60.0, gt=0,
                                   description="deadline for SetVersion (includes loading it)")
    max_id_length: int = Field(256, ge=1, description="longest user or item id accepted")
    max_list_items: int = Field(1000, ge=1,
                                description="longest recent_item_ids or filter list accepted")
    write_token: SecretStr = Field("", validate_default=True,
                                   description="bearer token required on RecordInteraction, "
                                               "UpsertItem and SetVersion; "
                                               "empty: no check")
    upstream_tls_ca: str = Field("", description="PEM CA to verify retrieval and ranking; set "
                                                 "(or a client cert): TLS to them, empty: "
                                                 "plaintext")
    upstream_tls_cert: str = Field("", description="PEM client certificate for retrieval and "
                                                   "ranking servers that require mTLS")
    upstream_tls_key: str = Field("", description="PEM private key of upstream_tls_cert")
    upstream_tls_server_name: str = Field("", description="name to check upstream certificates "
                                                          "against; empty: the target's host")
    upstream_token: SecretStr = Field("", validate_default=True,
                                      description="bearer token sent to retrieval and ranking "
                                                  "(their write_token)")

    @field_validator("retrieval_target", "ranking_target")
    @classmethod
    def _target(cls, value: str) -> str:
        channel_target(value)  # a list of host names fails here, at startup
        return value
