"""The published artifact of a full fit on the synthetic dataset, and the CLI around it."""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import asdict
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortlist.common.artifacts import (
    MANIFEST,
    SCHEMA_VERSION,
    list_versions,
    read_manifest,
    sha256_file,
    verify,
)
from shortlist.ranking.bundle import RankingModels
from shortlist.ranking.features import build_features
from shortlist.training.__main__ import main
from shortlist.training.datasets import load
from shortlist.training.fit import FitError, fit
from shortlist.training.params import FitParams
from tests.conftest import write_synthetic


@pytest.fixture(scope="module")
def version(trained) -> Path:
    versions = list_versions(trained)
    assert len(versions) == 1
    return versions[0]


@pytest.fixture(scope="module")
def manifest(version) -> dict:
    return json.loads((version / MANIFEST).read_text())


def test_manifest_identity(manifest, version, synthetic_dir):
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["version"] == version.name
    ds = load(str(synthetic_dir))
    fingerprint = ds.fingerprint
    assert manifest["dataset"]["fingerprint"] == fingerprint
    assert version.name.endswith(fingerprint[:8])
    assert manifest["dataset"]["users"] == len(np.unique(ds.user_ids))
    assert manifest["dataset"]["items"] == len(ds.items)
    # write_synthetic never repeats a (user, item) pair, so nothing is deduplicated
    assert manifest["dataset"]["interactions"] == len(ds)
    assert manifest["dataset"]["has_timestamps"] is True
    assert read_manifest(version).version == version.name


def test_manifest_parameters(manifest, version):
    params = manifest["parameters"]
    assert set(params) == set(asdict(FitParams()))
    # the values the conftest fixture passed, not the defaults
    assert params["generators"]["content"]["dim"] == 16
    assert params["generators"]["als"]["factors"] == 16
    assert params["ranker_rounds"] == 60
    assert params["seed"] == 42
    # every generator's whole config is recorded, not only what was passed
    assert set(params["generators"]["als"]) >= {"candidates", "regularization", "alpha"}
    assert manifest["generators"] == ["als", "ease", "itemknn", "content", "sequence",
                                      "demographic", "trending"]
    assert manifest["ranker"]["features"] == RankingModels.load(version).config.features.names
    assert manifest["ranker"]["trees"] >= 1


def test_manifest_files_match_disk(manifest, version):
    on_disk = {p.relative_to(version).as_posix() for p in version.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {MANIFEST}
    assert "ranking/ranker.txt" in manifest["files"]
    for rel, meta in manifest["files"].items():
        path = version / rel
        assert meta["sha256"] == sha256_file(path), rel
        assert meta["bytes"] == path.stat().st_size, rel
    assert verify(version).version == version.name


def test_metrics_rows(manifest, synthetic_dir):
    metrics = manifest["metrics"]
    assert metrics["k"] == 10
    models = metrics["models"]
    assert {"pipeline", "ranker", "ranker_mmr", "popularity", "candidates_union"} <= set(models)
    for name in ("pipeline", "popularity"):
        row = models[name]
        assert set(row) == {"ndcg@10", "recall@10", "hr@10", "map@10", "users", "coverage",
                            "ild", "novelty"}
        assert 0.0 <= row["ndcg@10"] <= 1.0
        # every synthetic user has >= 5 items, so every user is evaluated
        assert row["users"] == len(np.unique(load(str(synthetic_dir)).user_ids))


def test_pipeline_beats_popularity(manifest):
    models = manifest["metrics"]["models"]
    # users stick to one genre: a personalised ranker must do far better than popularity
    assert models["pipeline"]["ndcg@10"] > 2 * models["popularity"]["ndcg@10"]
    assert models["pipeline"]["recall@10"] > 2 * models["popularity"]["recall@10"]


def test_no_pickles(version):
    files = [p for p in version.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".joblib")]
    numpy_files = [p for p in files if p.suffix in (".npy", ".npz")]
    assert len(numpy_files) >= 5
    for path in numpy_files:
        loaded = np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with loaded:
                for key in loaded.files:
                    assert loaded[key].dtype != object, (path, key)
            with zipfile.ZipFile(path) as zf:
                assert all(n.endswith(".npy") for n in zf.namelist())
        else:
            assert loaded.dtype != object, path


def test_ranker_text_loads_with_lightgbm(version):
    path = version / "ranking" / "ranker.txt"
    assert path.read_text().startswith("tree")
    booster = lgb.Booster(model_file=str(path))
    names = RankingModels.load(version).config.features.names
    assert booster.feature_name() == names
    x = np.zeros((3, len(names)), np.float32)
    assert booster.predict(x).shape == (3,)


def test_published_ranking_models_load(version, manifest):
    models = RankingModels.load(version)
    n_items = manifest["dataset"]["items"]
    assert len(models.catalog) == n_items
    dim = manifest["parameters"]["generators"]["content"]["dim"]
    assert models.stats.spaces["content"].shape == (n_items, dim)
    assert models.stats.diversity_space == "content"
    models.pipeline()  # feature names of the saved ranker match the code


def test_cli_fit(synthetic_dir, tmp_path, capsys):
    """The command end to end; untuned, since tuning is covered by the session's ``trained``
    fit (tests/conftest.py) and would multiply this one's cost."""
    out = tmp_path / "artifacts"
    code = main(["fit", "--dataset", str(synthetic_dir), "--out", str(out), "--no-tune",
                 "--quiet"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "published" in stdout
    assert "pipeline" in stdout and "popularity" in stdout
    versions = list_versions(out)
    assert len(versions) == 1
    assert str(versions[0]) in stdout
    verify(versions[0])


def test_manifest_records_the_peak_memory_at_the_end_of_every_timed_phase(manifest):
    peaks = manifest["fit_phase_peak_rss_bytes"]
    assert set(peaks) == set(manifest["fit_phase_seconds"])
    assert max(peaks.values()) <= manifest["fit_peak_rss_bytes"]
    # in the order the phases ended the peak never falls (`peak_growth` reads each step as
    # what that phase added)
    names = manifest["fit_phase_order"]
    assert set(names) == set(peaks)
    assert names[:2] == ["load", "encode"] and names[-2:] == ["drift_reference", "publish"]
    assert names.index("tune_generators") < names.index("final_models")
    assert [peaks[n] for n in names] == sorted(peaks.values())


def test_peak_growth_names_the_phases_that_raised_the_peak_most():
    from shortlist.training.cmd_fit import peak_growth

    gib = 2**30
    m = {"fit_phase_peak_rss_bytes": {"load": gib, "encode": gib, "tune": 4 * gib,
                                      "ranker": 4 * gib + 2**20, "final": 5 * gib}}
    # load's step counts from nothing; the ranker's 1 MiB is below notice
    assert peak_growth(m) == " (raised most by tune +3.00, load +1.00, final +1.00)"
    assert peak_growth({}) == ""
    # phases at the same peak: the one that ended first raised it (a manifest's keys are
    # sorted, so the order comes from fit_phase_order)
    m = {"fit_phase_peak_rss_bytes": {"load": gib, "publish": 3 * gib, "final": 3 * gib,
                                      "drift": 3 * gib},
         "fit_phase_order": ["load", "final", "drift", "publish"]}
    assert peak_growth(m) == " (raised most by final +2.00, load +1.00)"


@pytest.fixture
def short_histories(tmp_path) -> Path:
    """30 users with 4 items each: nobody reaches min_user_items = 5."""
    return write_synthetic(tmp_path / "short", n_users=30, n_items=24, per_user=4)


def test_fit_without_enough_history_raises_fit_error(short_histories, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FitError, match="too little data"):
        fit(str(short_histories), out,
            FitParams(generators={"content": {"dim": 8}, "als": {"factors": 8}},
                      ranker_rounds=10), progress=False)
    assert list_versions(out) == []
    assert not list(out.glob(".staging*"))  # nothing half-written left behind


def test_cli_fit_error_exit_code(short_histories, tmp_path, capsys):
    code = main(["fit", "--dataset", str(short_histories), "--out", str(tmp_path / "o"),
                 "--quiet"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ")
    assert "too little data" in captured.err
    assert "Traceback" not in captured.err
    assert "published" not in captured.out


def test_cli_unknown_dataset_exit_code(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SHORTLIST_DATA_DIR", raising=False)
    code = main(["fit", "--dataset", "not-a-dataset", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    assert "not-a-dataset" in capsys.readouterr().err


def test_cli_fit_if_missing_skips_a_root_with_a_published_version(trained, tmp_path, capsys):
    """No fit, no dataset load: a dataset that does not exist would exit 2 if it were read."""
    before = sorted(p.relative_to(trained) for p in trained.rglob("*"))
    newest = list_versions(trained)[-1].name
    code = main(["fit", "--if-missing", "--dataset", str(tmp_path / "no-such-dataset"),
                 "--out", str(trained), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == f"artifacts present in {trained} (newest {newest}); not fitting\n"
    assert sorted(p.relative_to(trained) for p in trained.rglob("*")) == before


@pytest.mark.parametrize("layout", ["absent", "empty", "unpublished"])
def test_cli_fit_if_missing_fits_when_nothing_is_published(layout, tmp_path, capsys):
    """Without a */manifest.json the flag changes nothing: fit runs (and here hits the bad
    dataset). A staging directory or a version directory without its manifest is no version."""
    out = tmp_path / "artifacts"
    if layout != "absent":
        out.mkdir()
    if layout == "unpublished":
        (out / ".staging-20240101T000000Z-deadbeef-1").mkdir()
        (out / "20240101T000000Z-deadbeef").mkdir()
        (out / "20240101T000000Z-deadbeef" / "ranker.txt").write_text("half-written")
    code = main(["fit", "--if-missing", "--dataset", str(tmp_path / "no-such-dataset"),
                 "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert "no-such-dataset" in captured.err
    assert "not fitting" not in captured.out


def test_data_without_time_is_fitted_without_time(tmp_path):
    """No timestamps: no time features, no decays, and the artifact says so."""
    data = write_synthetic(tmp_path / "untimed", n_users=80, n_items=120, per_user=15,
                           timestamps=False)
    from tests.conftest import small_grid, small_params

    version = fit(str(data), tmp_path / "out", small_params(), progress=False,
                  grid=small_grid())
    manifest = json.loads((version / MANIFEST).read_text())
    assert manifest["dataset"]["has_timestamps"] is False
    spec = RankingModels.load(version).config.features
    assert spec.time is False
    assert not {"pop_at_user_time", "item_age_days", "content_recent_sim"} & set(spec.names)
    gens = manifest["parameters"]["generators"]
    assert gens["content"]["taste_half_life_days"] == 0.0
    assert gens["trending"]["half_life_days"] == 0.0
    assert manifest["tuning"]["configuration"]["served"]


def test_data_without_time_is_served_exactly_as_without_the_sequence_generator(tmp_path,
                                                                              caplog):
    """Untimed data has no order: the sequence generator is skipped with its reason recorded,
    and the artifact is the one a registry without it publishes (same candidates, same
    ranker, same validation numbers)."""
    from shortlist.retrieval.generators import default_registry
    from tests.conftest import small_grid, small_params

    data = write_synthetic(tmp_path / "untimed", n_users=80, n_items=120, per_user=15,
                           timestamps=False)
    with caplog.at_level(logging.INFO):
        with_it = fit(str(data), tmp_path / "a", small_params(), progress=False,
                      grid=small_grid())
    # said once per fit, however often the generator was tried
    assert caplog.text.count("sequence generator skipped: the events have no timestamps") == 1
    without = fit(str(data), tmp_path / "b", small_params(), progress=False, grid=small_grid(),
                  registry=default_registry().without("sequence"))
    a, b = (json.loads((v / MANIFEST).read_text()) for v in (with_it, without))
    assert "no timestamps" in a["skipped_generators"]["sequence"]
    assert "sequence" not in a["generators"] and a["generators"] == b["generators"]
    assert a["metrics"] == b["metrics"]
    assert ((with_it / "ranking/ranker.txt").read_text()
            == (without / "ranking/ranker.txt").read_text())


def test_tuning_runs_on_a_user_sample_of_large_data():
    from shortlist.training.fit import tuning_sample
    from shortlist.training.split import Events

    n = 40
    ev = Events(np.repeat(np.arange(n), 6), np.tile(np.arange(6), n), np.zeros(6 * n, np.int64),
                np.ones(6 * n, np.float32))
    valid = ev.take(ev.items == 5)
    train = ev.take(ev.items != 5)
    sample = tuning_sample(train, valid, 10, seed=1)
    assert sample.note == {"all": False, "users": 10, "of": n}
    assert set(np.unique(sample.train.users)) == set(np.unique(sample.valid.users))
    assert len(np.unique(sample.valid.users)) == 10 and len(sample.train) == 10 * 5
    same = tuning_sample(train, valid, 100, seed=1)
    assert same.note["all"] and same.train is train and same.valid is valid


def test_a_tuning_sample_has_its_own_dense_user_space():
    """Sampled users are re-indexed 0..n-1 with their ids, events, attributes and the ties
    among them: models fitted on it carry no row for the users left out."""
    import scipy.sparse as sp

    from shortlist.common.attributes import UserAttributes, UserData
    from shortlist.common.vocab import Vocabulary
    from shortlist.training.fit import tuning_sample
    from shortlist.training.split import Events

    n = 30
    ev = Events(np.repeat(np.arange(n), 4), np.tile(np.arange(4), n),
                np.arange(4 * n, dtype=np.int64), np.arange(4 * n, dtype=np.float32))
    valid, train = ev.take(ev.items == 3), ev.take(ev.items != 3)
    users = Vocabulary([f"u{u}" for u in range(n)])
    ring = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), (np.arange(n) + 1) % n)),
                         shape=(n, n))
    data = UserData(UserAttributes(("age",), np.array([[str(u)] for u in range(n)])), ring)
    s = tuning_sample(train, valid, 8, 3, users, data)
    assert len(s.users) == 8 and s.train.users.max() == 7 and s.valid.users.max() == 7
    for i in range(8):  # each index is the same user as before, with the same events
        u = int(s.users.id(i)[1:])
        assert s.user_data.attributes.of(i) == {"age": str(u)}
        before = train.take(train.users == u)
        after = s.train.take(s.train.users == i)
        assert np.array_equal(before.items, after.items)
        assert np.array_equal(before.weights, after.weights)
        assert np.array_equal(before.timestamps, after.timestamps)
    # a tie survives only when both ends are in the sample
    a, b = s.user_data.friends.nonzero()
    ids = [int(s.users.id(i)[1:]) for i in range(8)]
    assert all((ids[y] - ids[x]) % n == 1 for x, y in zip(a, b, strict=True))
    assert s.user_data.friends.shape == (8, 8)
    assert len(a) == sum((u + 1) % n in ids for u in ids)


def test_a_tuned_fit_on_a_user_sample_tunes_every_generator_and_publishes(tmp_path):
    """Tuning on a sample of the users (their attributes and ties among them) goes through
    every generator, social and demographic included, and the full fit follows."""
    from tests.conftest import small_grid, small_params

    data = write_synthetic(tmp_path / "data", n_users=90, n_items=90, per_user=12, seed=5)
    rng = np.random.default_rng(0)
    with open(data / "social.csv", "w") as fh:
        fh.write("user_id,friend_id\n" + "".join(
            f"u{a},u{b}\n" for a, b in rng.integers(0, 90, (300, 2)).tolist() if a != b))
    p = small_params()
    p.tune_max_users = 40
    grid = small_grid()
    grid.generators["social"] = [{"symmetric": True}, {"symmetric": False}]
    version = fit(str(data), tmp_path / "out", p, progress=False, grid=grid)
    manifest = json.loads((version / MANIFEST).read_text())
    assert manifest["tuning"]["tuning_users"] == {"all": False, "users": 40, "of": 90}
    for name in ("als", "ease", "social", "demographic"):
        assert len(manifest["tuning"][name]) == len(grid.generators[name]), name
        assert any(row[next(k for k in row if "@" in k)] > 0 for row in manifest["tuning"][name])
    assert {"social", "demographic"} <= set(manifest["generators"])
    assert manifest["dataset"]["users"] == 90


def test_the_ranker_grid_is_scored_on_fewer_users_and_the_choice_trained_on_more(tmp_path):
    """Above ``tune_ranker_users`` label users, scales and leaves are chosen on rankers of
    that many users; the chosen point is rebuilt and trained on ``max_ranker_users``."""
    from shortlist.common.catalog import ItemCatalog
    from shortlist.training.fit import train_pipeline, train_ranker
    from shortlist.training.split import encode
    from tests.conftest import small_grid, small_params

    ds = load(str(write_synthetic(tmp_path / "data", n_users=90, n_items=60, per_user=12,
                                  seed=8)))
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    grid = small_grid()
    grid.ranker_num_leaves = (7, 15, 31)
    p = small_params()
    p.tune_ranker_users, p.max_ranker_users = 30, 80
    assert p.ranker_num_leaves == 31
    trained = train_pipeline(ev, users, catalog, p, grid, progress=False)
    assert trained.tuning["ranker_users"] == {"tuned_on": 30, "trained_on": 80}
    # the diversity frontier is scored on as many users as the ranker's grid
    assert trained.tuning["diversity_users"] == 30
    # on a sample the grid is climbed: each scale at the default leaves, then the other
    # leaves at the better scale (4 rankers, not 2 x 3), then flat labels at the best point
    rows = trained.tuning["ranker"]
    assert [r["num_leaves"] for r in rows[:4]] == [31, 31, 7, 15]
    assert rows[0]["candidates"] != rows[1]["candidates"]
    better = max(rows[:2], key=lambda r: r["ndcg@10"])
    assert rows[2]["candidates"] == rows[3]["candidates"] == better["candidates"]
    graded = max(rows[:4], key=lambda r: r["ndcg@10"])
    assert [r["label_next"] for r in rows] == [3, 3, 3, 3, 0]
    assert {k: v for k, v in rows[4].items() if k not in ("ndcg@10", "trees", "label_next")} \
        == {k: v for k, v in graded.items() if k not in ("ndcg@10", "trees", "label_next")}
    chosen = max(rows, key=lambda r: r["ndcg@10"])
    assert trained.params.ranker_num_leaves == chosen["num_leaves"]
    assert trained.params.label_next == chosen["label_next"]
    assert len(trained.train_examples.users) == len(trained.valid_examples.users) == 80
    # the served ranker is the one trained on the 80 users' examples, with the chosen leaves
    again = train_ranker(trained.train_examples, trained.valid_examples, trained.params,
                         trained.params.ranker_num_leaves, trained.spec)
    assert again.booster.model_to_string() == trained.ranker.booster.model_to_string()

    p = small_params()
    p.tune_ranker_users = 500  # more than there are: no second build
    trained = train_pipeline(ev, users, catalog, p, grid, progress=False)
    assert trained.tuning["ranker_users"] == {"tuned_on": p.max_ranker_users,
                                              "trained_on": p.max_ranker_users}
    # no sample: the whole grid, 2 scales x 3, and flat labels at the best point
    assert len(trained.tuning["ranker"]) == 7
    assert len(trained.train_examples.users) == 90
    assert trained.tuning["diversity_users"] == len(trained.valid_examples.users)

    # fit's way: the same ranker, the examples freed once they are no longer read
    lean = train_pipeline(ev, users, catalog, p, grid, progress=False, keep_examples=False)
    assert lean.train_examples is None and lean.valid_examples is None
    assert lean.ranker.booster.model_to_string() == trained.ranker.booster.model_to_string()


def test_label_grades_give_the_events_right_after_the_cut_the_grade():
    from shortlist.training.fit import label_grades
    from shortlist.training.split import Events

    # user 0: items 5, 6, 7, 8 in time (rows shuffled); user 1: one label; user 2: a tie
    rows = [(0, 7, 30), (1, 2, 5), (0, 5, 10), (0, 8, 40), (0, 6, 20), (2, 3, 9), (2, 4, 9)]
    ev = Events(*(np.array([r[k] for r in rows]) for k in range(3)),
                np.ones(len(rows), np.float32))
    assert label_grades(ev, 2, 3)[0] == {5: 3, 6: 3, 7: 1, 8: 1}
    assert label_grades(ev, 2, 3)[1] == {2: 3}
    assert label_grades(ev, 1, 2)[2] in ({3: 2, 4: 1}, {3: 1, 4: 2})
    assert label_grades(ev)[0] == {5: 1, 6: 1, 7: 1, 8: 1}  # flat


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(0, 50), st.integers(1, 4), max_size=10),
       st.lists(st.integers(0, 60), max_size=30, unique=True))
def test_a_candidates_label_is_its_grade_or_zero(relevant, items):
    from shortlist.training.fit import label_of

    y = label_of(np.array(items, dtype=np.int64), relevant)
    assert y.tolist() == [float(relevant.get(i, 0)) for i in items]


@pytest.mark.parametrize("timed", [True, False])
def test_time_carved_labels_are_graded_and_drawn_ones_flat(tmp_path, timed):
    """The ranker learns the next items first only where labels are the latest events."""
    from shortlist.common.catalog import ItemCatalog
    from shortlist.training.fit import train_pipeline
    from shortlist.training.split import encode
    from tests.conftest import small_params

    ds = load(str(write_synthetic(tmp_path / "data", n_users=60, n_items=60, per_user=25,
                                  seed=4, timestamps=timed)))
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    p = small_params()
    trained = train_pipeline(ev, users, catalog, p, None, progress=False,
                             has_time=ds.has_timestamps)
    grades = [sorted(rel.values()) for rel in trained.train_examples.relevant]
    assert grades
    if timed:  # 24 training events: 4 labels, the first 3 graded
        assert p.label_next == 3
        assert all(g == [1, p.label_next_grade, p.label_next_grade, p.label_next_grade]
                   for g in grades)
    else:
        assert all(set(g) == {1} for g in grades)
    assert all(set(rel.values()) == {1} for rel in trained.valid_examples.relevant)


def test_flat_labels_are_chosen_where_they_find_validations_item_better(tmp_path,
                                                                         monkeypatch):
    """Graded or flat is a choice made on validation: when the flat ranker scores higher,
    it is the one served, ``label_next`` is 0 in the parameters, and the examples kept are
    flat (what that ranker learnt from)."""
    from shortlist.common.catalog import ItemCatalog
    from shortlist.training import fit as fit_module
    from shortlist.training.split import encode
    from tests.conftest import small_grid, small_params

    ds = load(str(write_synthetic(tmp_path / "data", n_users=60, n_items=60, per_user=25,
                                  seed=4)))
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    real = fit_module.score_examples
    flat_rankers = []

    def train(*args, flat=False, **kwargs):
        ranker = fit_module.LambdaRanker.__new__(fit_module.LambdaRanker)
        ranker.__dict__.update(real_train(*args, flat=flat, **kwargs).__dict__)
        if flat:
            flat_rankers.append(ranker)
        return ranker

    def score(ranker, *args, **kwargs):  # the flat ranker wins, whatever it scores
        ndcg, ild = real(ranker, *args, **kwargs)
        return (1.0 if any(ranker is r for r in flat_rankers) else ndcg), ild

    real_train = fit_module.train_ranker
    monkeypatch.setattr(fit_module, "train_ranker", train)
    monkeypatch.setattr(fit_module, "score_examples", score)
    trained = fit_module.train_pipeline(ev, users, catalog, small_params(), small_grid(),
                                        progress=False)
    assert len(flat_rankers) == 1 and trained.ranker is flat_rankers[0]
    assert trained.params.label_next == 0
    assert trained.tuning["ranker"][-1]["label_next"] == 0
    assert all(set(rel.values()) == {1} for rel in trained.train_examples.relevant)


def test_cli_fit_with_a_subset_of_generators(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "artifacts"
    code = main(["fit", "--dataset", str(synthetic_dir), "--out", str(out), "--quiet",
                 "--no-tune", "--generators", "trending,content"])
    assert code == 0
    manifest = json.loads((list_versions(out)[0] / MANIFEST).read_text())
    assert manifest["generators"] == ["trending", "content"]
    assert main(["fit", "--dataset", str(synthetic_dir), "--out", str(out), "--quiet",
                 "--no-tune", "--generators", "nope"]) == 2
    assert "no generator named 'nope'" in capsys.readouterr().err
    other = tmp_path / "without"
    assert main(["fit", "--dataset", str(synthetic_dir), "--out", str(other), "--quiet",
                 "--no-tune", "--generators", "trending,content,demographic",
                 "--without", "demographic"]) == 0
    manifest = json.loads((list_versions(other)[0] / MANIFEST).read_text())
    assert manifest["generators"] == ["trending", "content"]
    assert main(["evaluate", "--dataset", str(synthetic_dir), "--quiet", "--no-tune",
                 "--without", "nope"]) == 2
    assert "no generator named 'nope'" in capsys.readouterr().err


def test_examples_built_on_threads_are_the_ones_built_one_user_at_a_time(version):
    """``build_examples`` runs users on FIT_THREADS threads: each user's candidates and
    features must be exactly what the serving code gives for that user alone, in order."""
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.training.fit import build_examples
    from shortlist.training.offline import candidates_for
    from shortlist.training.split import Events

    models = RetrievalModels.load(version)
    ranking = RankingModels.load(version)
    spec = ranking.config.features
    rng = np.random.default_rng(3)
    users = rng.choice(len(models.users), 120, replace=False)
    labels = Events(users.astype(np.int64), rng.integers(0, len(models.catalog), 120),
                    np.zeros(120, np.int64), np.ones(120, np.float32))
    ex = build_examples(models, ranking.stats, labels, spec, 1000, 0, False, "examples")
    assert ex.users == sorted(users.tolist())
    source = models.source()
    for user, items, feats in zip(ex.users, ex.items, ex.feats, strict=True):
        cands = candidates_for(models, source, user)
        np.testing.assert_array_equal(items, cands.items)
        np.testing.assert_array_equal(feats, build_features(cands, ranking.stats, spec))


def _one_at_a_time(fn, items, **_):
    return map(fn, items)


def test_evaluate_on_threads_gives_the_metrics_of_one_user_at_a_time(version, monkeypatch):
    """``evaluate`` runs users on FIT_THREADS threads with per-thread candidate caches: every
    row's metrics and per-user NDCG must equal those of a plain loop over the users."""
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.training import evaluation
    from shortlist.training.split import Events

    models = RetrievalModels.load(version)
    ranking = RankingModels.load(version)
    rng = np.random.default_rng(5)
    users = rng.choice(len(models.users), 150, replace=False).astype(np.int64)
    test = Events(users, rng.integers(0, len(models.catalog), 150),
                  np.zeros(150, np.int64), np.ones(150, np.float32))

    def run() -> tuple[dict, dict]:
        per_user: dict[str, np.ndarray] = {}
        out = evaluation.evaluate(models, ranking.stats, ranking.pipeline(), test, 10, False,
                                  per_user=per_user)
        return out, per_user

    threaded, threaded_users = run()
    monkeypatch.setattr(evaluation, "map_in_order", _one_at_a_time)
    plain, plain_users = run()
    assert threaded == plain
    assert threaded_users.keys() == plain_users.keys()
    for name in plain_users:
        np.testing.assert_array_equal(threaded_users[name], plain_users[name])
    assert plain["pipeline"]["ndcg@10"] >= 0 and "random" in plain


def test_generator_metric_on_threads_is_the_one_thread_total(version, monkeypatch):
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.training import fit as fit_module
    from shortlist.training.split import Events

    models = RetrievalModels.load(version)
    rng = np.random.default_rng(9)
    monkeypatch.setattr(fit_module, "_METRIC_BLOCK", 16)  # several blocks of users
    n = min(100, len(models.users))
    users = np.sort(rng.choice(len(models.users), n, replace=False)).astype(np.int64)
    valid = Events(users, rng.integers(0, len(models.catalog), n), np.zeros(n, np.int64),
                   np.ones(n, np.float32))
    threaded = {(name, metric): fit_module.generator_metric(models, gen, valid, users, 10, metric)
                for name, gen in models.generators.items() for metric in ("ndcg", "recall")}
    monkeypatch.setattr(fit_module, "map_in_order", _one_at_a_time)
    plain = {(name, metric): fit_module.generator_metric(models, gen, valid, users, 10, metric)
             for name, gen in models.generators.items() for metric in ("ndcg", "recall")}
    assert threaded == plain
    assert any(value > 0 for value in plain.values())
