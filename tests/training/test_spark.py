"""The Spark engine (`fit --engine spark`) with a real Spark: ``local[2]`` in this process, and
a standalone cluster (one master, two workers) started on this machine.

pyspark and Java are installed by the project (`make install`, `make servers`); without them
these tests skip locally and fail under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shortlist.common.artifacts import MANIFEST, read_manifest, resolve, verify
from shortlist.common.stack import free_ports
from shortlist.training.datasets import load
from shortlist.training.split import encode, holdout
from tests.conftest import small_grid, small_params, write_synthetic

WAIT_S = 120


def _need_spark() -> None:
    from shortlist.training.spark.session import java_home

    missing = []
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing.append("pyspark (make install)")
    if java_home() is None:
        missing.append("Java 17 (make servers)")
    if missing:
        message = f"the Spark engine needs {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def spark_local_dir(tmp_path_factory):
    """One local[2] session for the module's tests, stopped at the end (a fit in between stops
    it, as it stops its own; the next test then starts another)."""
    _need_spark()
    yield tmp_path_factory.mktemp("spark-local")
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()


@pytest.fixture()
def spark(spark_local_dir):
    from shortlist.training.spark.session import spark_session

    return spark_session("local[2]", local_dir=spark_local_dir)  # the live one, or a new one


def python_engine(spec: str, seed: int = 42):
    """What the single-process engine feeds train_pipeline: ids, events and both masks."""
    from shortlist.common.catalog import ItemCatalog

    ds = load(spec)
    catalog = ItemCatalog(ds.items.item_ids, ds.items.titles, ds.items.categories,
                          ds.items.texts)
    users, ev = encode(ds, catalog.vocab)
    p = small_params()
    valid = holdout(ev, 1, p.min_user_items, ds.has_timestamps, seed)
    f_ev = ev.take(~valid)
    labels = holdout(f_ev, p.label_fraction, p.min_user_items - 1, ds.has_timestamps, seed + 1)
    return ds, users, ev, valid, labels


def by_pair(ev, mask=None):
    """Rows as (user, item) -> (timestamp, weight, flag), order-free."""
    flags = mask if mask is not None else np.zeros(len(ev), bool)
    return {(u, i): (t, round(float(w), 4), bool(f)) for u, i, t, w, f in zip(
        ev.users.tolist(), ev.items.tolist(), ev.timestamps.tolist(), ev.weights.tolist(),
        flags.tolist(), strict=True)}


@pytest.mark.parametrize("timestamps, unit, coarse",
                         [(True, 1, 1), (False, 1, 1), (True, 1000, 1), (True, 1, 20_000)],
                         ids=["timed", "untimed", "milliseconds", "ties"])
def test_the_data_stage_carves_what_the_python_engine_carves(spark, tmp_path, timestamps,
                                                             unit, coarse):
    """Same users, items, deduplicated events, validation items and ranker labels (and the
    same seconds from millisecond timestamps; the same tie-break where times are coarse)."""
    from shortlist.training.spark.prepare import prepare

    data = write_synthetic(tmp_path / "data", n_users=60, n_items=90, per_user=12, seed=3,
                           timestamps=timestamps)
    with open(data / "interactions.csv", "a") as fh:  # duplicates: latest wins / weights add
        fh.write("u1,i2,3,1700000000\n" if timestamps else "u1,i2\n")
        fh.write("u1,i2,2,1700000000\n" if timestamps else "u1,i2\n")
    if unit > 1 or coarse > 1:  # in milliseconds, 0.5 s into each second; or coarse times
        lines = (data / "interactions.csv").read_text().splitlines()
        head = lines[0].split(",")
        at = head.index("timestamp")
        rows = [line.split(",") for line in lines[1:]]
        for r in rows:
            seconds = int(float(r[at])) // coarse * coarse
            r[at] = str(seconds * unit + unit // 2)
        (data / "interactions.csv").write_text(
            "\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    ds, users, ev, valid, labels = python_engine(str(data))
    assert unit == 1 or ev.timestamps.max() < 2_000_000_000  # seconds again
    if coarse > 1:  # many validation items tie with an event they were chosen over
        rest = ev.take(~valid)
        last = {u: t for u, t in zip(ev.users[valid].tolist(), ev.timestamps[valid].tolist(),
                                     strict=True)}
        tied = {u for u, t in zip(rest.users.tolist(), rest.timestamps.tolist(), strict=True)
                if last.get(u) == t}
        assert len(tied) > 10
    p = small_params()
    got = prepare(spark, str(data), tmp_path / "work", 42, p.min_user_items, p.label_fraction)
    assert got.has_timestamps == ds.has_timestamps == timestamps
    assert got.fingerprint == ds.fingerprint and got.name == ds.name
    assert list(got.users.all_ids) == list(users.all_ids)
    assert got.catalog.item_ids == ds.items.item_ids
    assert by_pair(got.events, got.valid) == by_pair(ev, valid)
    rest, got_rest = ev.take(~valid), got.events.take(~got.valid)
    assert by_pair(got_rest, got.labels) == by_pair(rest, labels)
    assert 0 < got.valid.sum() < len(got.events) and got.labels.any()


@pytest.fixture(scope="module")
def spark_fitted(spark_local_dir, synthetic_dir, tmp_path_factory):
    """The session's synthetic data fitted by the Spark engine with the session artifact's
    own parameters and grid."""
    from shortlist.training.fit import fit

    return fit(str(synthetic_dir), tmp_path_factory.mktemp("spark-artifacts"), small_params(),
               progress=False, grid=small_grid(), engine="spark",
               workdir=tmp_path_factory.mktemp("spark-work"))


def test_a_spark_fitted_artifact_is_the_same_format_and_as_good(spark_fitted, trained):
    from shortlist.ranking.bundle import RankingModels
    from shortlist.retrieval.bundle import RetrievalModels
    from shortlist.retrieval.retriever import RetrieveQuery, Retriever

    verify(spark_fitted)
    manifest = read_manifest(spark_fitted).data
    reference = read_manifest(resolve(trained)).data
    assert manifest["training"] == {"engine": "spark", "spark_master": "local[2]"}
    assert sorted(p.name for p in spark_fitted.rglob("*") if p.is_file()) == sorted(
        p.name for p in resolve(trained).rglob("*") if p.is_file())
    assert not list(spark_fitted.rglob("*.pkl")) and not list(spark_fitted.rglob("*.pickle"))
    models = RetrievalModels.load(spark_fitted)
    RankingModels.load(spark_fitted)
    got = Retriever(models, manifest["version"], 2000).retrieve(RetrieveQuery(user_id="u3", k=10))
    assert len(got.candidates) > 0
    # The same data, splits and parameters: ALS fitted by MLlib validates within 5% of the
    # implicit-fitted one, and so does the published pipeline.
    for row in ("als", "pipeline"):
        ours, theirs = (m["metrics"]["models"][row]["ndcg@10"] for m in (manifest, reference))
        assert abs(ours - theirs) <= 0.05 * theirs, (row, ours, theirs)
    # generators that do not use ALS saw identical data: identical validation
    for row in ("content", "ease", "itemknn", "sequence", "demographic", "trending"):
        assert manifest["metrics"]["models"][row] == reference["metrics"]["models"][row], row


def _spark_class(*args: str, log: Path) -> subprocess.Popen:
    from pyspark.find_spark_home import _find_spark_home

    from shortlist.training.spark.session import java_home

    home = _find_spark_home()
    env = {**os.environ, "SPARK_HOME": home, "JAVA_HOME": java_home(),
           "PYSPARK_PYTHON": sys.executable, "SPARK_NO_DAEMONIZE": "1"}
    return subprocess.Popen([str(Path(home) / "bin" / "spark-class"), *args], env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


@pytest.fixture()
def spark_cluster(tmp_path):
    """A Spark standalone cluster on 127.0.0.1: one master and two one-core workers."""
    _need_spark()
    port, ui, *worker_ui = free_ports(4)
    procs = [_spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                          "--port", str(port), "--webui-port", str(ui), log=tmp_path / "m.log")]
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "m.log").read_text()[-2000:]
                time.sleep(0.2)
        for n in range(2):
            procs.append(_spark_class(
                "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                "--memory", "1G", "--webui-port", str(worker_ui[n]),
                "--work-dir", str(tmp_path / f"work-{n}"), f"spark://127.0.0.1:{port}",
                log=tmp_path / f"w{n}.log"))
        while True:
            try:  # the master's status page, up shortly after its RPC port
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
                    if json.load(r).get("aliveworkers", 0) >= 2:
                        break
            except (OSError, ValueError):  # ValueError: an HTML page while the UI starts
                pass
            assert time.monotonic() < deadline, "the workers did not register"
            time.sleep(0.5)
        yield f"spark://127.0.0.1:{port}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_fit_on_a_standalone_cluster_publishes_what_the_servers_serve(spark_cluster, tmp_path,
                                                                      synthetic_dir):
    from shortlist.common.stack import Stack
    from shortlist.v1 import gateway_pb2, gateway_pb2_grpc

    out = tmp_path / "artifacts"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "shortlist-train"), "fit", "--dataset",
         str(synthetic_dir), "--out", str(out), "--no-tune", "--quiet", "--engine", "spark",
         "--spark-master", spark_cluster], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    version = resolve(out)
    assert json.loads((version / MANIFEST).read_text())["training"]["spark_master"] == \
        spark_cluster
    import grpc

    with Stack.on_free_ports(out, log_dir=tmp_path / "logs", state_dir=tmp_path / "state") as s:
        with grpc.insecure_channel(s.address("gateway")) as channel:
            got = gateway_pb2_grpc.GatewayStub(channel).Recommend(
                gateway_pb2.RecommendRequest(user_id="u5", k=10), timeout=10)
    assert len(got.items) == 10 and got.version == version.name and not got.degraded
    shutil.rmtree(out)

    # The same program through spark-submit (docs/scale-out.md): spark-submit runs a Python
    # application from a .py file with PYSPARK_PYTHON, and the session joins the one it starts.
    import shortlist.training.__main__ as entry
    from shortlist.training.spark.session import java_home

    submitted = tmp_path / "submitted"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "JAVA_HOME": java_home() or ""}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", spark_cluster,
         entry.__file__, "fit", "--dataset", str(synthetic_dir), "--out", str(submitted),
         "--no-tune", "--quiet", "--engine", "spark", "--spark-master", spark_cluster],
        capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = verify(resolve(submitted)).data
    assert manifest["training"]["spark_master"] == spark_cluster
    assert (resolve(submitted) / "ranking").is_dir()


def test_the_data_stage_takes_data_extended_with_the_event_log(spark, tmp_path):
    """`fit --engine spark --events LOG`: the log is folded in on the driver and the extended
    data carved exactly as the python engine carves it."""
    from shortlist.common.catalog import ItemCatalog
    from shortlist.retrieval.eventlog import EventLog
    from shortlist.training.eventlog_data import extend_dataset
    from shortlist.training.spark.prepare import prepare

    data = write_synthetic(tmp_path / "data", n_users=40, n_items=60, per_user=10, seed=5)
    with EventLog(tmp_path / "events.db") as log:
        log.append_item("fresh", "Fresh", ["Drama"], "text")
        for k in range(6):
            log.append_interaction("logged-user", f"i{k}", 1.0, 1_700_000_000 + k)
        log.append_interaction("logged-user", "fresh", 1.0, 1_700_000_010)
    extended = extend_dataset(load(str(data)), tmp_path / "events.db")
    catalog = ItemCatalog(extended.items.item_ids, extended.items.titles,
                          extended.items.categories, extended.items.texts)
    users, ev = encode(extended, catalog.vocab)
    p = small_params()
    valid = holdout(ev, 1, p.min_user_items, True, 42)
    got = prepare(spark, str(data), tmp_path / "work", 42, p.min_user_items, p.label_fraction,
                  dataset=extended)
    assert "logged-user" in got.users and "fresh" in got.catalog.item_ids
    assert got.fingerprint == extended.fingerprint
    assert by_pair(got.events, got.valid) == by_pair(ev, valid)


def test_typed_data_is_refused_before_any_spark_work(tmp_path):
    """The Spark data stage carries no event type: typed data points at the python engine
    (checked from the header, so it needs neither Spark nor Java)."""
    from shortlist.training.datasets import DatasetError
    from shortlist.training.spark.prepare import prepare

    data = tmp_path / "typed"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,item_id,event\nu1,a,view\nu2,a,dislike\n")
    for spec in (str(data), f"{data}~untimed"):
        with pytest.raises(DatasetError, match="event types.*python engine"):
            prepare(None, spec, tmp_path / "work")
    with pytest.raises(DatasetError, match="event types.*python engine"):
        prepare(None, str(data), tmp_path / "work", dataset=load(str(data)))
    assert not (tmp_path / "work").exists()
