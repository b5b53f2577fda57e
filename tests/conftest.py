"""Shared fixtures: a small synthetic dataset with known structure, and a trained artifact."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from shortlist.common.threads import limit_math_threads

limit_math_threads()  # before numpy loads (below): OpenBLAS reads its limit once, at import

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "datasets"

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "SciFi"]
WORDS = {
    "Action": "explosion chase hero mission", "Comedy": "funny laugh joke party",
    "Drama": "family tears life struggle", "Horror": "ghost blood haunted night",
    "Romance": "love kiss wedding heart", "SciFi": "space robot future alien",
}


def write_synthetic(directory: Path, n_users: int = 150, n_items: int = 240,
                    per_user: int = 20, seed: int = 7, timestamps: bool = True,
                    users: bool = True) -> Path:
    """Users each prefer one genre and mostly pick items of it: a dataset with a known answer.

    Item ``i`` has genre ``GENRES[i % 6]``; user ``u`` prefers ``GENRES[u % 6]`` and 85% of
    their items come from it, with a popularity skew inside each genre. With ``users``, a
    ``users.csv`` says so: ``club`` is the preferred genre (a planted attribute), ``age`` is
    noise.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "categories", "text"])
        for i in range(n_items):
            g = GENRES[i % len(GENRES)]
            w.writerow([f"i{i}", f"{g} Story {i}", g, WORDS[g]])
    by_genre = {g: [i for i in range(n_items) if GENRES[i % len(GENRES)] == g] for g in GENRES}
    with open(directory / "interactions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "weight", "timestamp"] if timestamps
                   else ["user_id", "item_id"])
        t = 1_600_000_000
        for u in range(n_users):
            fav = by_genre[GENRES[u % len(GENRES)]]
            pop = 1.0 / np.arange(1, len(fav) + 1)
            picks: set[int] = set()
            while len(picks) < per_user:
                if rng.random() < 0.85:
                    picks.add(int(rng.choice(fav, p=pop / pop.sum())))
                else:
                    picks.add(int(rng.integers(n_items)))
            for i in rng.permutation(sorted(picks)):
                t += int(rng.integers(60, 3600))
                w.writerow([f"u{u}", f"i{i}", 1, t] if timestamps else [f"u{u}", f"i{i}"])
    if users:
        ages = np.random.default_rng(seed + 1).integers(16, 80, n_users)
        with open(directory / "users.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["user_id", "club", "age"])
            for u in range(n_users):
                w.writerow([f"u{u}", GENRES[u % len(GENRES)], int(ages[u])])
    return directory


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory):
    """Compiled rankers (ranking.compiled) go to one directory per test session, not the user's
    ~/.cache: each artifact compiles once per session, and no run depends on an earlier one.
    Servers started as subprocesses inherit it through the environment."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SHORTLIST_RANKING_COMPILE_CACHE", str(tmp_path_factory.getbasetemp() / "compiled"))
    yield
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def gateway_state(tmp_path_factory):
    """Gateways built in a test process (and stacks it starts) log impressions and keep their
    experiment in the session's temporary directory, not in ./state. Nothing writes this
    experiment file: a test that sets an experiment gives its gateway a file of its own."""
    state = tmp_path_factory.getbasetemp() / "gateway-state"
    mp = pytest.MonkeyPatch()
    mp.setenv("SHORTLIST_GATEWAY_IMPRESSIONS_LOG", str(state / "impressions.db"))
    mp.setenv("SHORTLIST_GATEWAY_EXPERIMENT_FILE", str(state / "experiment.json"))
    yield
    mp.undo()


@pytest.fixture()
def redis_server(tmp_path_factory):
    """A real ``redis-server`` on a free port with its AOF synced on every write, stopped after
    the test. Without the binary the test skips, except under CI (``.ci/run`` sets CI=1 and
    ``make test`` installs it), where it fails: these tests must run there."""
    import os

    from shortlist.common.redisproc import RedisProcess, redis_binary
    from shortlist.common.stack import free_port

    if redis_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: `make servers` (as root) installs it")
        pytest.skip("redis-server is not installed (`make servers` as root installs it)")
    proc = RedisProcess(tmp_path_factory.mktemp("redis"), free_port()).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synthetic_dir) -> Path:
    """An artifact root with one published version fitted on the synthetic dataset.

    Read-only: a test that pins, publishes or corrupts versions works on a copy
    (``publish_copy``, ``shutil.copytree``), so every other test sees this one version.
    """
    out = tmp_path_factory.mktemp("artifacts")
    fit_small(synthetic_dir, out)
    return out


@pytest.fixture(scope="session")
def stack(trained, tmp_path_factory):
    """The three servers as real processes on free ports (with /metrics), serving ``trained``
    with the artifact's own settings, shared by the whole session.

    For readers only: a test that records interactions, upserts items, pins a version, stops
    or kills a server, or needs other server settings starts a stack of its own and says why
    (tests/e2e/test_online.py, tests/reliability/test_faults.py, test_overload.py), so what
    this one answers never depends on which tests ran before.
    """
    from shortlist.common.stack import Stack

    with Stack.on_free_ports(trained, metrics=True,
                             log_dir=tmp_path_factory.mktemp("stack-logs"),
                             state_dir=tmp_path_factory.mktemp("stack-state")) as s:
        yield s


def small_grid():
    """A tuning grid small enough for tests, still with a choice at every step."""
    from shortlist.training.fit import TuningGrid

    return TuningGrid(
        generators={
            "als": [{"factors": 16, "regularization": 0.01, "alpha": 1.0},
                    {"factors": 16, "regularization": 0.1, "alpha": 5.0}],
            "content": [{"taste_half_life_days": 30.0}, {"taste_half_life_days": 0.0}],
            "trending": [{"half_life_days": 30.0}, {"half_life_days": 3.0}],
            "ease": [{"lam": 30.0}, {"lam": 300.0}],
            "itemknn": [{"neighbours": 20}, {"neighbours": 50, "confidence": "log1p"}],
            "sequence": [{"window": 1}, {"window": 3, "last_items": 3}],
            "demographic": [{"smoothing": 10.0}, {"smoothing": 1000.0}],
        },
        candidate_scales=(1.0, 0.5), ranker_num_leaves=(15,), mmr_lambda=(1.0, 0.9, 0.8),
    )


def small_params():
    from shortlist.training.params import FitParams

    return FitParams(generators={"als": {"factors": 16, "iterations": 10, "candidates": 60},
                                 "content": {"dim": 16, "candidates": 40},
                                 "trending": {"candidates": 20},
                                 "ease": {"candidates": 30}, "itemknn": {"candidates": 30},
                                 "sequence": {"candidates": 20},
                                 "demographic": {"candidates": 20}},
                     ranker_rounds=60, max_candidates=180, hnsw_ef=100,
                     # Pinned: the fixture exists to exercise the ranked path; the guard
                     # rail has tests of its own (tests/training/test_guard.py).
                     order="ranker")


def fit_small(dataset: Path, out: Path) -> Path:
    from shortlist.training.fit import fit

    return fit(str(dataset), out, small_params(), progress=False, grid=small_grid())


def publish_copy(version_dir: Path, root: Path, version: str | None = None) -> Path:
    """Publish ``version_dir``'s models into ``root`` as ``version`` (default: its own name),
    checksummed like a fit's: a version to serve, pin or swap to, without fitting again."""
    from shortlist.common.artifacts import MANIFEST, publish, read_manifest

    data = read_manifest(version_dir).data
    version = version or data["version"]
    body = {k: v for k, v in data.items() if k not in ("schema_version", "version", "files")}
    with publish(root, version, body) as staging:
        shutil.copytree(version_dir, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(MANIFEST))
    return root / version


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path
