"""Typed events through training: weighing, tuning, features and the artifact, on data whose
types carry a planted signal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from shortlist.common.events import EventTypes
from shortlist.retrieval.bundle import RetrievalModels
from tests.conftest import GENRES, WORDS, small_grid, small_params

N_USERS, N_ITEMS = 150, 240


def write_typed(directory: Path, seed: int = 11) -> Path:
    """User u likes genre u % 6 and hates genre (u + 3) % 6. Of their items, those of the
    liked genre are purchases a third of the time (else views), 30% are views of any genre
    (browsing), and four are dislikes of items of the hated genre."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "categories", "text"])
        for i in range(N_ITEMS):
            g = GENRES[i % len(GENRES)]
            w.writerow([f"i{i}", f"{g} Story {i}", g, WORDS[g]])
    of_genre = {g: np.arange(g, N_ITEMS, len(GENRES)) for g in range(len(GENRES))}
    t = 1_600_000_000
    with open(directory / "interactions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "timestamp", "event"])
        for u in range(N_USERS):
            liked, hated = of_genre[u % 6], of_genre[(u + 3) % 6]
            pop = 1.0 / np.arange(1, len(liked) + 1)
            rows: dict[int, str] = {}
            while len(rows) < 16:
                if rng.random() < 0.7:
                    i = int(rng.choice(liked, p=pop / pop.sum()))
                    rows.setdefault(i, "purchase" if rng.random() < 0.33 else "view")
                else:
                    rows.setdefault(int(rng.integers(N_ITEMS)), "view")
            for i in rng.choice(np.setdiff1d(hated, list(rows)), 4, replace=False):
                rows[int(i)] = "dislike"
            for i in rng.permutation(sorted(rows)):
                t += int(rng.integers(60, 3600))
                w.writerow([f"u{u}", f"i{i}", t, rows[int(i)]])
    return directory


@pytest.fixture(scope="module")
def typed_version(tmp_path_factory) -> Path:
    from shortlist.training.fit import fit

    data = write_typed(tmp_path_factory.mktemp("typed"))
    return fit(str(data), tmp_path_factory.mktemp("typed-artifacts"), small_params(),
               progress=False, grid=small_grid())


def test_the_artifact_carries_the_tuned_table_and_the_ranker_counts_each_type(typed_version):
    manifest = json.loads((typed_version / "manifest.json").read_text())
    params = manifest["parameters"]
    weights = params["event_weights"]
    assert weights["dislike"] < 0 < weights["purchase"] and weights["view"] == 1.0
    models = RetrievalModels.load(typed_version)
    assert models.event_types == EventTypes.from_json(weights)  # served as tuned
    rows = manifest["tuning"]["event_weights"]
    # the most frequent type (view) is the unit; purchase and dislike were each tried x0.25, x4
    assert [r["changed"] for r in rows] == ["", "purchase x0.25", "purchase x4",
                                            "dislike x0.25", "dislike x4"] or \
        [r["changed"] for r in rows] == ["", "dislike x0.25", "dislike x4", "purchase x0.25",
                                         "purchase x4"]
    best = max(r["recall"] for r in rows)
    assert rows[0]["recall"] <= best
    spec = json.loads((typed_version / "ranking" / "config.json").read_text())
    assert "events" in json.dumps(spec)


def test_disliked_items_are_in_the_history_negative_and_never_recommended(typed_version):
    models = RetrievalModels.load(typed_version)
    user = models.users.index("u0")
    items, _, weights = models.history.events(user)
    disliked = items[weights < 0]
    assert len(disliked) == 4
    assert all(models.catalog.categories[i] == [GENRES[3]] for i in disliked.tolist())
    state = models.user_state(user)
    from shortlist.retrieval.bundle import banned_mask

    found = models.source().generate(state, banned_mask(len(models.catalog), state.items))
    assert not np.isin(found.items, disliked).any()


def test_evaluate_blind_to_the_types_is_scored_on_the_same_test(tmp_path):
    from shortlist.training.leaderboard import run
    from shortlist.training.quality_doc import generator_on_off

    data = str(write_typed(tmp_path / "typed"))
    kw = {"progress": False, "p": small_params(), "grid": small_grid(), "with_ablation": False,
          "peer_als_grid": list(small_grid().generators["als"])}
    typed = run(data, **kw)
    blind = run(data, ignore_events=True, **kw)
    assert typed["generators_off"] == [] and blind["generators_off"] == ["events"]
    assert typed["event_weights"]["dislike"] < 0 and blind["event_weights"] == {}
    # the same test users and items: dislikes are never test items, typed or blind
    assert typed["users"] == blind["users"]
    assert len(typed["per_user_ndcg"]["pipeline"]) == len(blind["per_user_ndcg"]["pipeline"])
    assert any("| events |" in line for line in generator_on_off([typed, blind]))
