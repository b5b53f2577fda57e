"""Retrieval server settings (env prefix SHORTLIST_RETRIEVAL_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shortlist.common.settings import ServerSettings


class RetrievalSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="SHORTLIST_RETRIEVAL_")

    address: str = Field("127.0.0.1:50052", description="host:port to listen on (port 0: any)")
    artifacts: Path = Field(Path("artifacts"),
                            description="artifact root (latest version served) or one version")
    version: str = Field("", description="pin this version under the root; empty: the latest")
    hnsw_ef: int = Field(0, ge=0, description="HNSW search ef; 0 keeps the artifact's value")
    max_candidates_limit: int = Field(2000, ge=1,
                                      description="largest max_candidates a caller may ask for")
    max_k: int = Field(1000, ge=1, description="largest k for SimilarItems")
    max_list_items: int = Field(1000, ge=1,
                                description="longest recent_item_ids or filter list accepted")
    max_id_length: int = Field(256, ge=1, description="longest user or item id accepted")
    max_query_length: int = Field(512, ge=1, description="longest SearchItems query accepted")
    max_text_length: int = Field(20000, ge=1,
                                 description="longest item title or text UpsertItem accepts")
    state_backend: Literal["embedded", "redis"] = Field(
        "embedded", description="where acknowledged writes live: 'embedded' (the SQLite "
                                "event_log, one server) or 'redis' (a stream on redis_url "
                                "that every replica tails: replicas share user state)")
    event_log: Path = Field(Path("state/events.db"),
                            description="SQLite file of acknowledged interactions and upserts "
                                        "(embedded backend)")
    redis_url: SecretStr = Field("redis://127.0.0.1:6379/0", validate_default=True,
                                 description="Redis holding the shared stream (redis backend); "
                                             "a password goes in the URL")
    redis_stream: str = Field("shortlist:events", min_length=1,
                              description="stream key of the shared writes (redis backend)")
    redis_timeout_s: float = Field(1.0, gt=0,
                                   description="deadline of each Redis command: how fast a "
                                               "write fails when Redis is down")
    redis_require_fsync: bool = Field(True, description="refuse to start unless Redis runs "
                                                        "with appendonly yes and appendfsync "
                                                        "always (acks only after a sync)")
    client_event_ttl_s: int = Field(7 * 86400, ge=1,
                                    description="how long a client_event_id is remembered to "
                                                "answer retries (redis backend; the embedded "
                                                "log keeps them all)")
    consistency_wait_s: float = Field(0.05, gt=0,
                                      description="how long a read waits for this replica to "
                                                  "apply the write it must reflect "
                                                  "(after_event_id) before UNAVAILABLE")
    drift_window: int = Field(10000, ge=1,
                              description="requests whose candidate source mix and user "
                                          "segments the drift gauges compare with the served "
                                          "version's reference (docs/operations.md)")
    reload_interval_s: float = Field(2.0, gt=0,
                                     description="how often the artifact root is checked for a "
                                                 "new or pinned version")
    write_token: SecretStr = Field("", validate_default=True,
                                   description="bearer token required on RecordInteraction, "
                                               "UpsertItem and Admin.SetVersion; "
                                               "empty: no check")
