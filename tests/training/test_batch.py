"""`shortlist-train recommend`: offline batch recommendations equal to the online service's."""

from __future__ import annotations

import csv
import io
import shutil
import sys
from pathlib import Path

import grpc
import pytest

from shortlist.common.artifacts import list_versions
from shortlist.gateway.settings import GatewaySettings
from shortlist.training.__main__ import main
from shortlist.training.batch import read_user_ids, recommend_batch
from shortlist.v1 import gateway_pb2, gateway_pb2_grpc

K = 10
UNKNOWN = "nobody-ever"
# A spread of known users (every genre, both ends of the id range) and two unknown ones.
SAMPLE = ["u0", "u1", "u2", "u3", "u4", "u5", "u17", "u42", "u63", "u88", "u101", "u120",
          "u149", UNKNOWN, "zz-new-user"]


@pytest.fixture(scope="module")
def history(synthetic_dir) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    with open(synthetic_dir / "interactions.csv") as fh:
        for row in csv.DictReader(fh):
            seen.setdefault(row["user_id"], set()).add(row["item_id"])
    return seen


@pytest.fixture(scope="module")
def version_dir(trained) -> Path:
    return list_versions(trained)[-1]


@pytest.fixture(scope="module")
def batch(version_dir) -> list[tuple[str, int, str, float]]:
    return recommend_batch(version_dir, SAMPLE, K)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def by_user(rows) -> dict[str, list[tuple[int, str, float]]]:
    out: dict[str, list[tuple[int, str, float]]] = {}
    for user, rank, item, score in rows:
        out.setdefault(user, []).append((int(rank), item, float(score)))
    return out


def test_gateway_leaves_the_candidate_count_to_the_artifact():
    """The gateway and batch scoring both ask for what tuning chose unless told otherwise."""
    assert GatewaySettings.model_fields["candidates"].default == 0


def test_read_user_ids_skips_header_and_blanks():
    assert read_user_ids(["user_id\n", "u1\n", "\n", "  u2 \n", "user_id\n"]) == [
        "u1", "u2", "user_id"]
    assert read_user_ids(["\n", "u1"]) == ["u1"]


def test_cli_round_trip(trained, tmp_path, history, capsys):
    users = tmp_path / "users.txt"
    users.write_text("user_id\nu0\n\nu7\nu33\n" + UNKNOWN + "\n")
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--artifacts", str(trained), "--users", str(users),
                 "-k", str(K), "--output", str(out), "--quiet"]) == 0
    assert "4 users, 40 rows" in capsys.readouterr().err
    header, rows = read_csv(out)
    assert header == ["user_id", "rank", "item_id", "score"]
    got = by_user((r["user_id"], r["rank"], r["item_id"], r["score"]) for r in rows)
    assert list(got) == ["u0", "u7", "u33", UNKNOWN]
    for user, recs in got.items():
        assert [r for r, _, _ in recs] == list(range(1, K + 1))
        items = [i for _, i, _ in recs]
        assert len(set(items)) == K
        assert not set(items) & history.get(user, set()), user


def test_cli_stdin_to_stdout(trained, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("u5\nu6\n"))
    assert main(["recommend", "--artifacts", str(trained), "--users", "-", "-k", "3",
                 "--quiet", "--mmr-lambda", "1.0"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert rows[0] == ["user_id", "rank", "item_id", "score"]
    assert [(r[0], r[1]) for r in rows[1:]] == [(u, str(n)) for u in ("u5", "u6")
                                                 for n in (1, 2, 3)]
    # lambda 1.0 means no diversification: ranker scores in descending order
    for u in ("u5", "u6"):
        scores = [float(r[3]) for r in rows[1:] if r[0] == u]
        assert scores == sorted(scores, reverse=True)
    assert "2 users, 6 rows" in captured.err


def test_batch_shape_and_unknown_users(batch):
    got = by_user(batch)
    assert list(got) == SAMPLE
    assert all(len(recs) == K for recs in got.values())
    # unknown users take the cold-start path: all of them get the same list
    assert [i for _, i, _ in got[UNKNOWN]] == [i for _, i, _ in got["zz-new-user"]]


def _copy_version(src: Path, root: Path, name: str) -> Path:
    dst = root / name
    shutil.copytree(src, dst)
    return dst


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_version_pin_and_corrupt_file(version_dir, tmp_path, capsys):
    root = tmp_path / "root"
    old = _copy_version(version_dir, root, "20000101T000000Z-old")
    new = _copy_version(version_dir, root, "20990101T000000Z-new")
    corrupt = new / "ranking" / "ranker.txt"
    _flip_byte(corrupt)
    users = tmp_path / "users.txt"
    users.write_text("u0\n")
    out = tmp_path / "recs.csv"
    base = ["recommend", "--artifacts", str(root), "--users", str(users), "-k", "5",
            "--output", str(out), "--quiet"]

    # the latest version is served by default, and it is verified before loading
    assert main(base) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and "checksum mismatch" in err
    assert not out.exists()

    # pinning the intact older version works
    assert main([*base, "--version", old.name]) == 0
    assert old.name in capsys.readouterr().err
    _, rows = read_csv(out)
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"]

    # a version directory given directly is verified as well
    assert main([*base[:2], str(new), *base[3:]]) == 2
    assert str(corrupt) in capsys.readouterr().err

    assert main([*base, "--version", "no-such-version"]) == 2
    assert "requested version not found" in capsys.readouterr().err


@pytest.mark.e2e
def test_batch_equals_online(trained, batch, stack):
    """The important one: the same users through the three real servers (the session's
    shared, read-only stack) give the same rows."""
    online: dict[str, list[tuple[str, float]]] = {}
    with grpc.insecure_channel(stack.address("gateway")) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for user in SAMPLE:
            resp = stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, k=K), timeout=10)
            assert not resp.degraded, user
            online[user] = [(i.item_id, i.score) for i in resp.items]
    offline = by_user(batch)
    assert list(online) == list(offline)
    for user in SAMPLE:
        want = [item for item, _ in online[user]]
        got = [item for _, item, _ in offline[user]]
        assert got == want, (user, got, want)
        for (_, _, s_off), (_, s_on) in zip(offline[user], online[user], strict=True):
            assert s_off == pytest.approx(s_on, abs=1e-5), user
    # ... and the comparison is sharp enough to see a wrong candidate count or MMR lambda
    for wrong in ({"candidates": 20}, {"mmr_lambda": 0.0}):
        rows = by_user(recommend_batch(list_versions(trained)[-1], SAMPLE, K, **wrong))
        assert any([i for _, i, _ in rows[u]] != [i for i, _ in online[u]] for u in SAMPLE)


def test_answers_do_not_depend_on_earlier_queries():
    """Online, a server's request history is arbitrary: a big query must not change later ones.

    (HnswIndex.query used to raise ef to k for good, so batch order changed results.)
    """
    import numpy as np

    from shortlist.retrieval.hnsw import HnswIndex

    rng = np.random.default_rng(0)
    index = HnswIndex.build(rng.normal(size=(2000, 8)).astype(np.float32), "cosine",
                            m=4, ef_construction=20, ef=10)
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    before = [index.query(q, 10)[0].tolist() for q in queries]
    assert len(index.query(queries[0], 500)[0]) == 500
    assert [index.query(q, 10)[0].tolist() for q in queries] == before
