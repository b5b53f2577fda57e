"""perf.ann: the report's structure, its known answers, and fidelity to the served indices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shortlist.common import artifacts
from shortlist.perf import ann
from shortlist.retrieval.hnsw import CosineIndex, MipsIndex, exact_top_k

EFS = [10, 50, 2000]  # 2000 >= items: the graph search visits everything, i.e. it is exact


@pytest.fixture(scope="module")
def tiny_report():
    specs = ann.synthetic_specs(2000, dim=16, n_queries=60, seed=3, n_clusters=20, top_n=20)
    return ann.measure(specs, ms=[8], efs=EFS, ef_construction=100, threads=1, chunk=700,
                       progress=False)


def test_report_has_the_documented_structure(tiny_report):
    json.dumps(tiny_report)  # plain JSON types only
    assert {"config", "indices"} <= tiny_report.keys()
    assert [ix["name"] for ix in tiny_report["indices"]] == ["als", "content"]
    for ix in tiny_report["indices"]:
        assert ix["items"] == 2000 and ix["dim"] == 16 and ix["top_n"] == 20
        assert ix["space"] in ("mips", "cosine")
        assert set(ix["exact"]) == {"mean_ms", "p50_ms", "p99_ms"}
        assert ix["ef_below_top_n"] == [10]  # 10 < N = 20: swept as ef = 20 instead
        (curve,) = ix["curves"]
        assert curve["m"] == 8 and curve["source"] == "built" and curve["build_s"] >= 0
        assert curve["index_bytes"] > 2000 * 16 * 4  # at least the vectors themselves
        assert [p["ef"] for p in curve["points"]] == [20, 50, 2000]
        for p in curve["points"]:
            assert set(p) == {"ef", "recall", "mean_ms", "p50_ms", "p99_ms", "speedup"}
            assert 0.0 <= p["recall"] <= 1.0
            assert p["mean_ms"] > 0 and p["p50_ms"] <= p["p99_ms"] and p["speedup"] > 0


def test_searching_everything_is_exact(tiny_report):
    for ix in tiny_report["indices"]:
        top = ix["curves"][0]["points"][-1]
        assert top["ef"] >= ix["items"]
        assert top["recall"] >= 0.999, ix["name"]
        op = ix["operating_point"]
        assert op is not None and op["recall"] >= ann.TARGET_RECALL and op["m"] == 8


def test_exact_scan_matches_brute_force_and_recall_is_set_overlap():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((12, 8)).astype(np.float32)
    seconds, found = ann.exact_scan(vectors, queries, 15)
    assert seconds.shape == (12,) and np.all(seconds > 0)
    for q, got in zip(queries, found, strict=True):
        scores = vectors.astype(np.float64) @ q.astype(np.float64)
        assert list(got) == list(exact_top_k(scores, 15))
    # A made-up answer: drop some of each exact list, pad with items outside it.
    guesses = []
    expected = []
    for i, truth in enumerate(found):
        keep = truth[: 15 - (i % 6)]
        outside = [x for x in range(500) if x not in set(truth)][: 15 - len(keep)]
        guesses.append(np.concatenate([keep, outside]))
        expected.append(len(set(guesses[-1].tolist()) & set(truth.tolist())) / 15)
    assert ann.recall_at_n(guesses, found) == pytest.approx(np.mean(expected))
    assert ann.recall_at_n(list(found), found) == 1.0


def test_chunked_build_is_the_served_build():
    """One thread, any chunk size: byte for byte the index MipsIndex/CosineIndex.build makes."""
    specs = ann.synthetic_specs(900, dim=12, n_queries=5, seed=1, n_clusters=9, top_n=10)
    for spec, served in zip(specs, [
        MipsIndex.build(specs[0].vectors, m=8, ef_construction=40, seed=5),
        CosineIndex.build(specs[1].vectors, m=8, ef_construction=40, seed=5),
    ], strict=True):
        ours = ann.build_index(spec, m=8, ef_construction=40, seed=5, threads=1, chunk=128,
                               progress=False)
        assert type(ours) is type(served)
        assert _saved(ours) == _saved(served), spec.name


def _saved(index) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i.bin"
        index.save(path)
        return path.read_bytes()


def test_ef_grid_replaces_values_below_n():
    assert ann.ef_grid([50, 100, 200, 400], 200) == ([200, 400], [50, 100])
    assert ann.ef_grid([400, 200], 100) == ([200, 400], [])


def test_plot_is_written(tiny_report, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "ann.png"
    assert ann.plot(tiny_report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_on_a_published_artifact(trained, tmp_path, capsys):
    out, png = tmp_path / "ann.json", tmp_path / "ann.png"
    assert ann.main(["--artifacts", str(trained), "--m", "8", "--ef", "50,1000",
                     "--queries", "40", "--build-threads", "1", "--no-progress",
                     "--output", str(out), "--plot", str(png)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["source"] == "artifacts"
    by_name = {ix["name"]: ix for ix in report["indices"]}
    assert set(by_name) == {"als", "content"}
    # N defaults to the candidate counts tuning chose, as the manifest records them.
    chosen = artifacts.read_manifest(artifacts.resolve(trained)).parameters["generators"]
    assert by_name["als"]["top_n"] == chosen["als"]["candidates"]
    assert by_name["content"]["top_n"] == chosen["content"]["candidates"]
    assert by_name["als"]["space"] == "mips" and by_name["content"]["space"] == "cosine"
    for ix in by_name.values():
        assert ix["items"] == 240 and ix["queries"] == 40
        assert [c["source"] for c in ix["curves"]] == ["built", "published"]
        for c in ix["curves"]:
            assert c["points"][-1]["ef"] == 1000 and c["points"][-1]["recall"] >= 0.999
    assert "operating point" in capsys.readouterr().out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.is_file()
