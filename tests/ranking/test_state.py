"""RankingState: the versions a ranking server holds, and the items it learns while serving.

Version bookkeeping runs on placeholder versions (no models needed); learning and ranking run
on the trained synthetic artifact, with candidates a real retriever produced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.common.candidates import Candidates
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.errors import InvalidRequest, NotReady, VersionNotLoaded
from shortlist.ranking.state import ItemDetails, LoadedVersion, RankingState
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.retriever import RetrieveQuery, Retriever
from shortlist.retrieval.service import to_proto
from shortlist.v1 import retrieval_pb2


def placeholder(version: str) -> LoadedVersion:
    return LoadedVersion(models=None, pipeline=None, version=version)  # type: ignore[arg-type]


def installed(*names: str) -> tuple[RankingState, dict[str, LoadedVersion]]:
    state, loaded = RankingState(), {}
    for name in names:
        loaded[name] = placeholder(name)
        state.install(loaded[name], name)
    return state, loaded


# -- versions -------------------------------------------------------------------------------

def test_nothing_installed_is_not_ready():
    state = RankingState()
    assert not state.ready and state.versions == ()
    with pytest.raises(NotReady, match="still loading"):
        _ = state.current
    with pytest.raises(NotReady):
        state.pick("")
    with pytest.raises(NotReady):
        state.pick("v1")


def test_install_keeps_the_serving_version_and_the_one_before():
    state, loaded = installed("v1", "v2", "v3")
    assert state.ready and state.versions == ("v2", "v3")
    assert state.current is loaded["v3"]
    assert state.pick("") is loaded["v3"]
    assert state.pick("v2") is loaded["v2"] and state.pick("v3") is loaded["v3"]


def test_a_dropped_or_unknown_version_is_not_loaded():
    state, _ = installed("v1", "v2", "v3")
    for name in ("v1", "nope"):
        with pytest.raises(VersionNotLoaded) as err:
            state.pick(name)
        assert str(err.value) == f"version {name} is not loaded here (serving v3)"
        assert err.value.status == "FAILED_PRECONDITION"


def test_reinstalling_a_version_makes_it_the_newest():
    state, loaded = installed("v1", "v2")
    again = placeholder("v1")
    state.install(again, "v1")  # a rollback to v1: v2 stays as the one before
    assert state.versions == ("v2", "v1")
    assert state.current is again and state.pick("v1") is again
    assert state.pick("v2") is loaded["v2"]


# -- learning and ranking -------------------------------------------------------------------

@pytest.fixture(scope="module")
def version_dir(trained) -> Path:
    return artifacts.resolve(trained)


@pytest.fixture(scope="module")
def retrieved(version_dir) -> retrieval_pb2.RetrieveResponse:
    """What retrieval sends ranking for an established user."""
    retriever = Retriever(RetrievalModels.load(version_dir), version_dir.name, 500)
    result = retriever.retrieve(RetrieveQuery(user_id="u5", max_candidates=50))
    return to_proto(result, retriever, 10)


@pytest.fixture
def loaded(version_dir) -> LoadedVersion:
    """A fresh load per test: learning items changes the catalog."""
    return LoadedVersion.of(RankingModels.load(version_dir), version_dir.name)


@pytest.fixture
def state(loaded) -> RankingState:
    state = RankingState()
    state.install(loaded, loaded.version)
    return state


def candidates(loaded: LoadedVersion, resp: retrieval_pb2.RetrieveResponse) -> Candidates:
    return Candidates.from_proto(resp.candidates, resp.user,
                                 loaded.models.catalog.vocab.indices, loaded.models.stats.now)


def renamed(resp: retrieval_pb2.RetrieveResponse, **names: str) -> retrieval_pb2.RetrieveResponse:
    """``resp`` with candidate ids renamed (``old=new``): items this version never saw."""
    out = retrieval_pb2.RetrieveResponse()
    out.CopyFrom(resp)
    ids = list(out.candidates.item_ids)
    for old, new in names.items():
        out.candidates.item_ids[ids.index(old)] = new
    return out


def test_learn_items_adds_only_new_ids_with_their_details(loaded):
    catalog, stats = loaded.models.catalog, loaded.models.stats
    n_items, n_stats = len(catalog), len(stats)
    details = {"new-1": ItemDetails("Brand New", ("Horror", "NoSuchGenre"))}
    assert loaded.learn_items(["i1", "new-1", "new-2", "new-1"], details) == 2
    assert len(catalog) == n_items + 2 and len(stats) == n_stats + 2
    first, bare = catalog.vocab.index("new-1"), catalog.vocab.index("new-2")
    assert catalog.titles[first] == "Brand New"
    assert list(catalog.categories[first]) == ["Horror", "NoSuchGenre"]
    assert catalog.titles[bare] == "new-2" and list(catalog.categories[bare]) == []
    assert loaded.learn_items(["new-1", "new-2", "i1"], {}) == 0  # already known


def test_rank_learns_unknown_candidates_and_ranks_them(state, loaded, retrieved):
    first, second = retrieved.candidates.item_ids[:2]
    resp = renamed(retrieved, **{first: "upserted-1", second: "upserted-2"})
    cands = candidates(loaded, resp)
    assert (cands.items < 0).sum() == 2
    ids = list(resp.candidates.item_ids)
    details = {"upserted-1": ItemDetails("Upserted One", ("Drama",))}
    ranked = state.rank(loaded.version, cands, ids, details, len(ids), None)
    assert ranked.learned == 2
    vocab = loaded.models.catalog.vocab
    got = set(vocab.ids(ranked.items))
    assert got == set(ids)  # k = every candidate: all of them, new ones included
    assert len(ranked.scores) == len(ids) and np.isfinite(ranked.scores).all()
    assert {"features", "model", "mmr"} <= set(ranked.timings_ms)
    again = state.rank(loaded.version, candidates(loaded, resp), ids, details, 5, None)
    assert again.learned == 0 and len(again.items) == 5


def test_rank_with_a_version_not_held_is_refused(state, loaded, retrieved):
    with pytest.raises(VersionNotLoaded):
        state.rank("other", candidates(loaded, retrieved), list(retrieved.candidates.item_ids),
                   {}, 10, None)


def test_rank_refuses_candidates_beyond_the_versions_statistics(state, loaded, retrieved):
    cands = candidates(loaded, retrieved)
    cands.items = cands.items.copy()
    cands.items[0] = len(loaded.models.stats) + 5
    with pytest.raises(InvalidRequest, match="statistics"):
        state.rank(loaded.version, cands, list(retrieved.candidates.item_ids), {}, 10, None)
