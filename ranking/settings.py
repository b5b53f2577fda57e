"""Ranking server settings (env prefix SHORTLIST_RANKING_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shortlist.common.settings import ServerSettings


class RankingSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="SHORTLIST_RANKING_")

    address: str = Field("127.0.0.1:50053", description="host:port to listen on (port 0: any)")
    artifacts: Path = Field(Path("artifacts"),
                            description="artifact root (latest version served) or one version")
    version: str = Field("", description="pin this version under the root; empty: the latest")
    mmr_lambda: float | None = Field(None, ge=0.0, le=1.0,
                                     description="relevance weight of the diversity re-ranking "
                                                 "(1.0: none); unset keeps the tuned value "
                                                 "(an override is logged)")
    max_k: int = Field(1000, ge=1, description="largest k a caller may ask for")
    max_candidates: int = Field(5000, ge=1, description="most candidates accepted per request")
    drift_window: int = Field(10000, ge=1,
                              description="responses whose scores and item popularity the "
                                          "drift gauges compare with the served version's "
                                          "reference (docs/operations.md)")
    reload_interval_s: float = Field(2.0, gt=0,
                                     description="how often the artifact root is checked for a "
                                                 "new or pinned version")
    write_token: SecretStr = Field("", validate_default=True,
                                   description="bearer token required on Admin.SetVersion; "
                                               "empty: no check")
    max_message_bytes: int = Field(16 * 1024 * 1024, description="gRPC max message size")
    compile_ranker: bool = Field(True,
                                 description="score with the ranker's trees compiled to native "
                                             "code by lleaves (same scores, about ten times less "
                                             "CPU); a model that fails to compile or to match "
                                             "LightGBM's scores is served by LightGBM, with a "
                                             "warning")
    compile_cache: str = Field("~/.cache/shortlist/compiled",
                               description="directory caching compiled rankers (created "
                                           "private; used only when owned by this user and "
                                           "writable by no one else); empty: compile in "
                                           "memory on every load")
