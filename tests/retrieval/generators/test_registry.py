"""A generator defined outside the package flows through everything via a ``Registry``:
fit (manifest, config, ranker features), serving (retrieval's columns, ranking's use of them)
and evaluation (a leaderboard row), with nothing registered globally.

The toy, "alphabetical", proposes the unseen items with the smallest catalog index. One small
synthetic dataset, one untuned fit and one leaderboard run without ablation keep it cheap.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from shortlist.common.artifacts import read_manifest
from shortlist.common.catalog import ItemCatalog
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.server import create_server as create_ranking
from shortlist.ranking.settings import RankingSettings
from shortlist.retrieval.generators import (
    FitData,
    Generator,
    HnswParams,
    Registry,
    UserState,
    default_registry,
)
from shortlist.retrieval.server import create_server as create_retrieval
from shortlist.retrieval.settings import RetrievalSettings
from shortlist.training.fit import fit
from shortlist.training.leaderboard import run
from shortlist.v1 import ranking_pb2, ranking_pb2_grpc, retrieval_pb2, retrieval_pb2_grpc
from tests.conftest import small_grid, small_params, write_synthetic

TOY = "toy"


@dataclass
class ToyConfig:
    candidates: int = 12
    light_factor: float = 1.0
    # Scores fall by this much per catalog position (a value only to see it recorded).
    step: float = 0.01


class Alphabetical(Generator):
    name = TOY
    Config = ToyConfig
    serves_new_users = True

    def __init__(self, n_items: int, config: ToyConfig) -> None:
        self.n_items = n_items
        self.config = config

    @classmethod
    def fit(cls, data: FitData, config: ToyConfig,
            previous: Generator | None = None) -> Alphabetical:
        return cls(len(data.catalog), config)

    @classmethod
    def tuning_grid(cls, config: ToyConfig) -> list[dict[str, Any]]:
        return [{"step": 0.02}]

    @classmethod
    def refine_grid(cls, best: dict[str, Any], tried: list[dict[str, Any]], rounds: int = 1
                    ) -> list[dict[str, Any]]:
        # two rounds of halving, then the same step again (nothing new: the search stops)
        return [{**best, "step": best["step"] / 2 if rounds <= 2 else best["step"]}]

    def propose(self, user: UserState, k: int,
                banned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        items = np.flatnonzero(~banned)[:k].astype(np.int64)
        return items, self._score(items)

    def affinity(self, user: UserState, items: np.ndarray) -> np.ndarray:
        return self._score(items)

    def _score(self, items: np.ndarray) -> np.ndarray:
        return (1.0 - self.config.step * items).astype(np.float32)

    def add_item(self, idx: int, document: str) -> None:
        self.n_items = max(self.n_items, idx + 1)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "toy.json").write_text(json.dumps({"n_items": self.n_items}))

    @classmethod
    def load(cls, directory: Path, config: ToyConfig, catalog: ItemCatalog,
             hnsw: HnswParams) -> Alphabetical:
        return cls(json.loads((directory / "toy.json").read_text())["n_items"], config)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry().with_generator(Alphabetical)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("toy-data"), n_users=60, n_items=72,
                           per_user=12)


def params():
    p = small_params()
    p.tune = False  # the other generators' tuning is not what this is about
    p.set_generator(TOY, candidates=15)
    return p


@pytest.fixture(scope="module")
def version(dataset, registry, tmp_path_factory) -> Path:
    return fit(str(dataset), tmp_path_factory.mktemp("toy-artifacts"), params(),
               progress=False, registry=registry)


def test_the_toy_is_fitted_recorded_and_a_ranker_feature(version):
    manifest = read_manifest(version).data
    assert TOY in manifest["generators"]
    assert manifest["parameters"]["generators"][TOY] == dataclasses.asdict(
        ToyConfig(candidates=15))
    features = manifest["ranker"]["features"]
    assert {f"{TOY}_score", f"{TOY}_rank", f"{TOY}_affinity"} <= set(features)
    assert TOY in RankingModels.load(version).config.features.generators
    assert (version / "retrieval" / "generators" / TOY / "toy.json").is_file()


def test_a_default_server_refuses_an_artifact_naming_an_unknown_generator(version):
    from shortlist.common.artifacts import ArtifactError
    from shortlist.retrieval.bundle import RetrievalModels

    with pytest.raises(ArtifactError, match=f"no generator named '{TOY}'"):
        RetrievalModels.load(version)


@pytest.fixture(scope="module")
def servers(version, registry, tmp_path_factory) -> Iterator[tuple]:
    root = version.parent
    retrieval, rport = create_retrieval(RetrievalSettings(
        address="127.0.0.1:0", artifacts=root,
        event_log=tmp_path_factory.mktemp("toy-state") / "events.db"), registry=registry)
    ranking, kport = create_ranking(RankingSettings(address="127.0.0.1:0", artifacts=root))
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in (rport, kport)]
    yield (retrieval_pb2_grpc.RetrievalStub(channels[0]),
           ranking_pb2_grpc.RankingStub(channels[1]))
    for channel in channels:
        channel.close()
    retrieval.stop(0)
    ranking.stop(0)


def test_served_candidates_carry_the_toy_and_ranking_ranks_them(servers, dataset):
    retrieval, ranking = servers
    seen = {line.split(",")[1] for line in (dataset / "interactions.csv").read_text()
            .splitlines()[1:] if line.startswith("u5,")}
    # room for every proposal: the merge truncates none of the toy's
    got = retrieval.Retrieve(retrieval_pb2.RetrieveRequest(user_id="u5", max_candidates=500),
                             timeout=10)
    cols = got.candidates
    assert TOY in cols.generators
    g, n = list(cols.generators).index(TOY), len(cols.generators)
    ranks = np.asarray(cols.generator_ranks).reshape(-1, n)[:, g]
    proposed = [item for item, rank in sorted(zip(cols.item_ids, ranks.tolist(), strict=True),
                                              key=lambda t: t[1]) if rank > 0]
    # the unseen items with the smallest catalog index (items i0, i1, ... in catalog order)
    unseen = [f"i{i}" for i in range(72) if f"i{i}" not in seen]
    assert proposed and proposed == unseen[:len(proposed)]
    assert not np.isnan(np.asarray(cols.generator_affinities).reshape(-1, n)[:, g]).any()

    ranked = ranking.Rank(ranking_pb2.RankRequest(user=got.user, candidates=cols,
                                                  items=got.items, k=10, version=got.version),
                          timeout=10)
    assert [i.rank for i in ranked.items] == list(range(1, 11))
    assert {i.item_id for i in ranked.items} <= set(cols.item_ids)


def test_a_new_user_gets_the_toy_too(servers):
    retrieval, _ = servers
    got = retrieval.Retrieve(retrieval_pb2.RetrieveRequest(user_id="nobody", max_candidates=30),
                             timeout=10)
    g = list(got.candidates.generators).index(TOY)
    n = len(got.candidates.generators)
    assert (np.asarray(got.candidates.generator_ranks).reshape(-1, n)[:, g] > 0).any()


def test_the_leaderboard_has_a_row_for_the_toy(dataset, registry):
    grid = dataclasses.replace(small_grid(), candidate_scales=(1.0,), mmr_lambda=(1.0, 0.8),
                               generators={**small_grid().generators, TOY: []})
    report = run(str(dataset), progress=False, p=small_params(), grid=grid,
                 with_ablation=False, peer_als_grid=small_grid().generators["als"][:1],
                 registry=registry)
    assert TOY in report["generators"]
    row = next(r for r in report["rows"] if r["model"] == TOY)
    assert 0 <= row["ndcg@10"] <= row["hr@10"] <= 1
    assert report["chosen"]["generators"][TOY]["candidates"] == ToyConfig().candidates


def test_tuning_tries_the_generators_finer_round_and_chooses_over_both(dataset, registry,
                                                                         tmp_path):
    """The toy's own grid, then its ``refine_grid``'s rounds, each around the best of the
    last, until it proposes nothing untried, in one table; the config chosen is the best row
    of the whole table. A grid the caller gives is tried as given (the other generators'
    empty lists: nothing tuned, nothing refined)."""
    from shortlist.training.fit import TuningGrid

    p = small_params()
    grid = TuningGrid(generators={name: [] for name in default_registry().names},
                      candidate_scales=(1.0,), ranker_num_leaves=(15,), mmr_lambda=(1.0,),
                      mmr_top_n=(50,))
    version = fit(str(dataset), tmp_path, p, progress=False, registry=registry, grid=grid)
    manifest = read_manifest(version).data
    rows = manifest["tuning"][TOY]
    assert [row["step"] for row in rows] == [0.02, 0.01, 0.005]
    column = next(key for key in rows[0] if key != "step")
    best = max(rows, key=lambda row: row[column])
    assert manifest["parameters"]["generators"][TOY]["step"] == best["step"]
    assert not any(name in manifest["tuning"] for name in default_registry().names)

    given = dataclasses.replace(grid, generators={**grid.generators, TOY: [{"step": 0.03}]})
    version = fit(str(dataset), tmp_path / "given", p, progress=False, registry=registry,
                  grid=given)
    assert [row["step"] for row in read_manifest(version).data["tuning"][TOY]] == [0.03]
