"""`shortlist-train evaluate`: protocol, report shape, split export, odd datasets."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from shortlist.common.catalog import ItemCatalog
from shortlist.training.__main__ import main
from shortlist.training.datasets import load
from shortlist.training.evaluation import UNION
from shortlist.training.leaderboard import COLUMNS, format_leaderboard, run
from shortlist.training.metrics import intra_list_distance, novelty
from shortlist.training.protocol import holdout_mask
from shortlist.training.quality_doc import render, targets
from shortlist.training.split import Events, encode
from tests.conftest import small_grid, small_params, write_synthetic


def unpinned():
    """The small parameters with the guard rails choosing the served configuration."""
    return dataclasses.replace(small_params(), order="")


@pytest.fixture(scope="module")
def report(synthetic_dir, tmp_path_factory):
    split = tmp_path_factory.mktemp("split")
    rep = run(str(synthetic_dir), export_dir=split, progress=False, p=unpinned(),
              grid=small_grid(),
              peer_als_grid=list(small_grid().generators["als"]))
    rep["_split"] = str(split)
    return rep


def test_report_has_every_row_and_column(report):
    assert report["protocol"] == "leave-last-out" and report["k"] == 10
    names = [r["model"] for r in report["rows"]]
    assert names == ["random", "popularity", *report["generators"], UNION, "peer_als",
                     "peer_ease", "ranker", "ranker_mmr", "pipeline"]
    for row in report["rows"]:
        assert set(COLUMNS) <= set(row)
        assert 0 <= row["ndcg@10"] <= row["hr@10"] <= 1
        assert 0 < row["coverage"] <= 1
    union = next(r for r in report["rows"] if r["model"] == UNION)
    assert union["recall@candidates"] >= union["recall@10"]
    assert report["users"] == 150


def test_pipeline_is_far_better_than_popularity_and_random(report):
    rows = {r["model"]: r for r in report["rows"]}
    assert rows["pipeline"]["ndcg@10"] > 3 * rows["popularity"]["ndcg@10"]
    assert rows["pipeline"]["ndcg@10"] > 3 * rows["random"]["ndcg@10"]


def test_chosen_values_come_from_the_grid(report):
    grid = small_grid()
    chosen = report["chosen"]
    gens = chosen["generators"]
    for name, variants in grid.generators.items():
        # the chosen values are one of the variants tried (a key it lacks keeps its value)
        assert any(all(gens[name][k] == v for k, v in variant.items())
                   for variant in variants), name
    base = small_params().generators
    scales = {gens[n]["candidates"] / base[n]["candidates"] for n in gens}
    assert len(scales) == 1 and scales <= set(grid.candidate_scales)  # one tier for all
    assert chosen["max_candidates"] == sum(g["candidates"] for g in gens.values())
    assert chosen["mmr_lambda"] in grid.mmr_lambda
    assert report["peers_chosen"]["ease_lambda"] > 0
    # with time, flat labels are tried against graded ones at the best point
    assert len(report["tuning"]["ranker"]) == (len(grid.candidate_scales)
                                               * len(grid.ranker_num_leaves)
                                               + report["has_timestamps"])


def test_ablation_covers_every_feature(report):
    from shortlist.ranking.features import FeatureSpec

    removed = {f for r in report["ablation"][1:] for f in r["features"]}
    spec = FeatureSpec(tuple(report["generators"]), ("als", "content"), report["has_timestamps"])
    assert removed == set(spec.names)
    assert report["ablation"][0]["removed"] == "(none)"


def test_candidate_ablation_leaves_out_each_generator_at_the_same_budget(report):
    union = next(r for r in report["rows"] if r["model"] == UNION)
    rows = report["candidate_ablation"]
    assert rows[0]["removed"] == "(none)"
    # with nothing removed it is the served candidate list: the union's recall
    assert rows[0]["recall"] == pytest.approx(union["recall@candidates"])
    assert {r["removed"] for r in rows[1:]} == set(report["generators"])
    assert all(r["candidates"] == union["candidates"] for r in rows)
    assert "without sequence" in format_leaderboard(report)
    assert "Candidate ablation" in render([report])


def test_cold_start_serves_held_out_users_from_their_attributes(report):
    cold = report["cold_start"]
    rows = {r["model"]: r for r in cold["rows"]}
    assert set(rows) == {"demographic", "trending", "popularity", "new_user_candidates"}
    assert cold["users"] == 150 and cold["attributes"] == ["club", "age"]
    # club is planted (each user's preferred genre): knowing it beats the crowd, clearly
    assert rows["demographic"]["ndcg@10"] > 1.5 * rows["trending"]["ndcg@10"]
    assert cold["demographic_vs_trending"]["z"] > 3
    assert "cold start (150 users" in format_leaderboard(report)
    assert "**Cold start**" in render([report])


def test_a_run_without_a_generator_is_compared_user_by_user_with_its_twin(report):
    per_user = np.asarray(report["per_user_ndcg"]["pipeline"])
    assert len(per_user) == report["users"] and report["generators_off"] == []
    rows = {r["model"]: r for r in report["rows"]}
    assert per_user.mean() == pytest.approx(rows["pipeline"]["ndcg@10"], abs=1e-5)
    rng = np.random.default_rng(0)
    worse = np.clip(per_user - 0.05 - rng.normal(0, 0.02, len(per_user)), 0, 1)
    twin = {**report, "generators_off": ["social"],
            "per_user_ndcg": {"pipeline": worse.tolist()}}
    same = {**report, "generators_off": ["sequence"]}
    doc = render([report, twin, same])
    assert "## Generators on and off" in doc
    line = next(x for x in doc.splitlines() if x.startswith(f"| {report['dataset']} | social"))
    assert line.endswith("| yes |")
    line = next(x for x in doc.splitlines() if x.startswith(f"| {report['dataset']} | sequence"))
    assert line.endswith("| no |") and "+0.0000" in line
    # runs without a generator get no section of their own
    assert doc.count(f"## {report['dataset']}") == 1


def test_export_split_matches_the_protocol(report, synthetic_dir):
    split = report["_split"]
    with open(f"{split}/interactions.csv") as fh:
        train = list(csv.DictReader(fh))
    with open(f"{split}/test.csv") as fh:
        test = list(csv.DictReader(fh))
    assert list(train[0]) == ["user_id", "item_id", "weight", "timestamp"]
    assert len(test) == report["users"] and len({r["user_id"] for r in test}) == len(test)
    last_train = {}
    for r in train:
        last_train[r["user_id"]] = max(last_train.get(r["user_id"], 0), int(r["timestamp"]))
    # the held-out item is each user's latest
    assert all(int(r["timestamp"]) >= last_train[r["user_id"]] for r in test)
    ds = load(str(synthetic_dir))
    assert len(train) + len(test) == len(ds)  # the fixture has no duplicate pairs


def test_leaderboard_text_and_quality_doc(report):
    text = format_leaderboard(report)
    assert "ranker_mmr" in text and "candidate recall@" in text
    doc = render([report])
    assert "| pipeline |" in doc and "Feature ablation" in doc
    names = [name for name, _, _ in targets(report)]
    assert names == ["pipeline >= 1.05 x the best of tuned ALS, EASE and ItemKNN",
                     "pipeline >= its own best generator", "pipeline >= 1.5 x popularity"]
    movielens = render([{**report, "dataset": "ml-100k"}])
    assert "MovieLens: pipeline >= 1.40 x the best peer" in movielens


def test_served_configuration_is_recorded_and_never_loses_on_validation(report):
    decision = report["tuning"]["configuration"]
    scores = decision["validation_ndcg@10"]
    assert scores[decision["served"]] >= decision["best_generator_ndcg@10"]
    assert decision["best_generator"] in report["generators"]


def test_no_timestamps_holds_out_a_seeded_random_item(tmp_path):
    d = write_synthetic(tmp_path / "nots", n_users=30, n_items=60, per_user=8,
                        timestamps=False)
    ds = load(str(d))
    assert not ds.has_timestamps
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories)
    _, ev = encode(ds, catalog.vocab)
    a = holdout_mask(ev, "leave-last-out", False, 5, seed=1)
    b = holdout_mask(ev, "leave-last-out", False, 5, seed=1)
    c = holdout_mask(ev, "leave-last-out", False, 5, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(ev.users[a]).tolist() == [1] * 30


def test_generic_dataset_without_timestamps_or_text(tmp_path, capsys):
    d = tmp_path / "bare"
    d.mkdir()
    rng = np.random.default_rng(0)
    with open(d / "interactions.csv", "w") as fh:
        fh.write("user_id,item_id\n")
        for u in range(40):
            for i in rng.choice(50, 10, replace=False):
                fh.write(f"user{u},{(u % 5) * 10 + i % 10 if rng.random() < .8 else i}\n")
    code = main(["evaluate", "--dataset", str(d), "--quiet", "--no-ablation", "--no-tune",
                 "--output",
                 str(tmp_path / "r.json")])
    assert code == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert "content" not in rep["generators"]
    assert "content" not in [r["model"] for r in rep["rows"]]
    # no content space: diversity is measured where behaviour puts items instead
    assert rep["diversity_space"] == "als"
    assert all(r["ild"] is not None for r in rep["rows"])


def test_ild_and_novelty_by_hand():
    v = np.array([[1, 0], [0, 1], [1, 0]], np.float64)
    # pairs: (0,1) 1, (0,2) 0, (1,2) 1 -> mean distance 2/3
    assert intra_list_distance(v) == pytest.approx(2 / 3)
    item_users = np.array([50, 25, 0])
    # p = 0.5, 0.25 and (clamped to one user) 0.01 of 100 users
    assert novelty(np.array([0, 1, 2]), item_users, 100) == pytest.approx(
        (1 + 2 + np.log2(100)) / 3)


def test_events_are_untouched_by_protocol():
    ev = Events(np.array([0, 0, 0, 0, 0]), np.array([1, 2, 3, 4, 5]),
                np.array([1, 2, 3, 4, 5]), np.ones(5, np.float32))
    mask = holdout_mask(ev, "leave-last-out", True, 5)
    assert mask.tolist() == [False, False, False, False, True]


def test_evaluate_equals_fit_then_recommend_on_the_same_split(report, tmp_path):
    """The leaderboard describes what is served: fitting on the exported training part and
    scoring its test users through batch recommend (the servers' code path) gives the
    leaderboard's pipeline NDCG."""
    from shortlist.training.batch import recommend_batch
    from shortlist.training.fit import fit
    from shortlist.training.metrics import ndcg_at_k

    split = report["_split"]
    version = fit(split, tmp_path / "artifacts", unpinned(), progress=False,
                  grid=small_grid())
    with open(f"{split}/test.csv") as fh:
        held_out = {r["user_id"]: r["item_id"] for r in csv.DictReader(fh)}
    served: dict[str, list[str]] = {}
    for user, _, item, _ in recommend_batch(version, list(held_out), 10):
        served.setdefault(user, []).append(item)
    index: dict[str, int] = {}
    code = lambda item: index.setdefault(item, len(index))  # noqa: E731 (ids as ints)
    ndcg = np.mean([ndcg_at_k(np.array([code(i) for i in served.get(u, [])], np.int64),
                              {code(held_out[u])}, 10) for u in held_out])
    pipeline = next(r for r in report["rows"] if r["model"] == "pipeline")
    assert ndcg == pytest.approx(pipeline["ndcg@10"], rel=0.01)
