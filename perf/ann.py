"""HNSW recall/latency curves for the indices Shortlist serves, against an exact numpy scan.

``python -m shortlist.perf.ann`` answers two questions the design rests on: does the HNSW index
find the items an exact search would (recall@N, N = the generator's candidate count), and is it
faster than simply scanning every item? Both are measured in one run, on the same queries, one query
per call as the retrieval server issues them, single-threaded on both sides
(``OPENBLAS_NUM_THREADS=1`` for numpy, ``num_threads=1`` in hnswlib).

The indices are the project's own (``retrieval.hnsw``), as the ALS and content generators
serve them: ``MipsIndex`` (ALS item factors, norm-augmented, inserted largest norm first) and
``CosineIndex`` (content vectors). They are built in chunks only to show progress and to use
``--build-threads``; with one thread the chunked build is byte-identical to
``MipsIndex.build`` / ``CosineIndex.build`` (tests/perf checks it), with more threads insertion
interleaves a little, as in any parallel hnswlib build.

Exact scan (the fair numpy baseline): float32 C-contiguous item matrix, a preallocated score
buffer, ``np.matmul(items, q, out=scores)``, ``np.argpartition`` for the top N, then the N
winners sorted (the index returns them ordered too). For the cosine index the matrix holds
unit rows, so the inner product orders items like cosine similarity.

Output JSON (``--output``)::

    {"config": {command-line values, library versions, cpu count, load average, ...},
     "indices": [{
        "name": "als" | "content", "items": int, "dim": int, "space": "mips" | "cosine",
        "top_n": int, "queries": int, "query_source": str, "effective_dim": float,
        "ef_below_top_n": [ef values from --ef below top_n; replaced by ef = top_n],
        "exact": {"mean_ms", "p50_ms", "p99_ms"},
        "curves": [{"m", "ef_construction", "source": "built" | "published",
                    "build_s" (null when loaded), "build_threads", "index_bytes",
                    "load_average_1m" (before the sweep),
                    "points": [{"ef", "recall", "mean_ms", "p50_ms", "p99_ms", "speedup"}],
                    "operating_point": point with "m" | null}],
        "operating_point": the fastest per-curve operating point | null}]}

``index_bytes`` is the size of the index saved by hnswlib (graph links, the indexed vectors
and labels); the process holds about that much plus a lock per element. It does not count the
float32 item matrix the server keeps next to it (the exact scan needs that matrix too).
``recall`` is |HNSW top N ∩ exact top N| / N averaged over the queries; ``speedup`` is exact
mean ms / HNSW mean ms; an operating point is the smallest ef with recall >= 0.95.
``effective_dim`` is the participation ratio of the vectors' covariance spectrum,
(Σλ)² / Σλ², a hint of how hard the data is for a graph index.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
from tqdm import tqdm

from shortlist.common.artifacts import read_manifest, resolve
from shortlist.retrieval.bundle import RetrievalModels
from shortlist.retrieval.generators import AlsGenerator, ContentGenerator, default_registry
from shortlist.retrieval.hnsw import CosineIndex, HnswIndex, MipsIndex, augment_items

logger = logging.getLogger(__name__)

TARGET_RECALL = 0.95
WARMUP = 10
# Taste vectors of synthetic queries average this many items of one cluster.
TASTE_ITEMS = 5

Index = HnswIndex | MipsIndex | CosineIndex


def default_top_n(name: str) -> int:
    """A generator's default candidate count: how many items its index is asked for."""
    return int(default_registry().get(name).Config().candidates)


@dataclass
class IndexSpec:
    """One served index to measure: its vectors, its queries and how many items it returns."""

    name: str
    space: str  # "mips" or "cosine"
    vectors: np.ndarray  # float32, C-contiguous; unit rows for cosine
    queries: np.ndarray  # float32, one row per query
    top_n: int
    query_source: str
    # The index as published in an artifact, measured as loaded (artifact mode only).
    published: Index | None = None
    published_params: dict[str, int] = field(default_factory=dict)


# -- vector sources ---------------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def synthetic_specs(n_items: int, dim: int = 64, n_queries: int = 500, seed: int = 42,
                    n_clusters: int = 1000, top_n: int | None = None,
                    names: Sequence[str] = ("als", "content"),
                    chunk: int = 100_000) -> list[IndexSpec]:
    """A clustered catalog standing in for a catalog far larger than any bundled dataset.

    Items are a Gaussian cluster centre plus Gaussian noise, both with a decaying spectrum
    (scale of coordinate j is (j+1)^-0.5), because SVD and ALS vectors concentrate variance in
    a few directions; isotropic noise in 64 dimensions would be a much harder and less
    realistic case. The MIPS ("als") vectors get log-normal norms (sigma 0.5), since popular
    items have long ALS vectors and the norm spread is what MIPS must cope with; the cosine
    ("content") vectors are the same points normalised. Generated in chunks to bound memory.
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(1, min(n_clusters, n_items))
    scale = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32) * scale
    assign = rng.integers(n_clusters, size=n_items).astype(np.int32)
    want_als, want_content = "als" in names, "content" in names
    als = np.empty((n_items, dim), dtype=np.float32) if want_als else None
    content = np.empty((n_items, dim), dtype=np.float32) if want_content else None
    for lo in range(0, n_items, chunk):
        hi = min(lo + chunk, n_items)
        base = centres[assign[lo:hi]] + 0.5 * scale * rng.standard_normal(
            (hi - lo, dim), dtype=np.float32)
        norms = rng.lognormal(0.0, 0.5, size=hi - lo).astype(np.float32)
        if als is not None:
            als[lo:hi] = base * norms[:, None]
        if content is not None:
            content[lo:hi] = _unit_rows(base)
    qrng = np.random.default_rng(seed + 1)
    specs = []
    if als is not None:
        c = qrng.integers(n_clusters, size=n_queries)
        queries = centres[c] + 0.5 * scale * qrng.standard_normal((n_queries, dim),
                                                                  dtype=np.float32)
        specs.append(IndexSpec(
            "als", "mips", als, np.ascontiguousarray(queries, dtype=np.float32),
            top_n or default_top_n("als"),
            "a random cluster centre plus item-scale noise (a user near one taste)"))
    if content is not None:
        order = np.argsort(assign, kind="stable")
        starts = np.searchsorted(assign[order], np.arange(n_clusters + 1))
        queries = np.empty((n_queries, dim), dtype=np.float32)
        for i in range(n_queries):
            c = int(qrng.integers(n_clusters))
            members = order[starts[c]:starts[c + 1]]
            if len(members) == 0:
                members = qrng.integers(n_items, size=1)
            picks = qrng.choice(members, size=min(TASTE_ITEMS, len(members)), replace=False)
            queries[i] = content[picks].mean(axis=0)
        specs.append(IndexSpec(
            "content", "cosine", content, _unit_rows(queries),
            top_n or default_top_n("content"),
            f"taste vector: normalised mean of {TASTE_ITEMS} items of one cluster"))
    return specs


def artifact_specs(root: Path, version: str = "", n_queries: int = 500, seed: int = 42,
                   top_n: int | None = None,
                   names: Sequence[str] = ("als", "content")) -> list[IndexSpec]:
    """The indices of a published version, queried with the vectors the server would use.

    ALS queries are stored user factors (what retrieval uses for a known user); content
    queries are users' taste vectors computed by the serving code from their history.
    """
    version_dir = resolve(Path(root), version)
    params = read_manifest(version_dir).parameters
    models = RetrievalModels.load(version_dir)
    rng = np.random.default_rng(seed)
    specs: list[IndexSpec] = []
    published = {"m": int(params.get("hnsw_m", models.hnsw.m)),
                 "ef_construction": int(params.get("hnsw_ef_construction",
                                                   models.hnsw.ef_construction))}
    chosen = params.get("generators", {})

    def count(name: str, gen: AlsGenerator | ContentGenerator) -> int:
        """N: the candidate count the manifest records (tuning's choice), else the config's."""
        return top_n or int(chosen.get(name, {}).get("candidates", gen.config.candidates))

    n_items = len(models.catalog)
    als = models.generators.get("als")
    if "als" in names and isinstance(als, AlsGenerator) and als.index is not None:
        factors = np.ascontiguousarray(als.model.item_factors, dtype=np.float32)
        users = als.model.user_factors
        live = np.flatnonzero(np.abs(users).sum(axis=1) > 0) if len(users) else users[:0, 0]
        if len(live):
            pick = rng.choice(live, size=min(n_queries, len(live)), replace=False)
            queries = users[np.sort(pick)]
            source = "stored ALS user factors of random users"
        else:
            pick = rng.integers(len(factors), size=n_queries)
            noise = rng.standard_normal((n_queries, factors.shape[1])).astype(np.float32)
            queries = factors[pick] + 0.1 * np.linalg.norm(factors[pick], axis=1,
                                                           keepdims=True) * noise
            source = "random item factors plus 10% noise (no user factors saved)"
        specs.append(IndexSpec(
            "als", "mips", factors, np.ascontiguousarray(queries, dtype=np.float32),
            count("als", als), source, published=als.index, published_params=published))
    content = models.generators.get("content")
    if "content" in names and isinstance(content, ContentGenerator) and content.index is not None:
        vectors = np.ascontiguousarray(_unit_rows(content.model.vectors), dtype=np.float32)
        order = rng.permutation(models.history.n_users)
        queries_list = []
        for user in order:
            taste = content.taste(models.user_state(int(user)))
            if taste is not None and np.any(taste):
                queries_list.append(taste)
            if len(queries_list) >= n_queries:
                break
        source = "taste vectors of random users with history (serving code)"
        if not queries_list:
            picks = rng.integers(n_items, size=(n_queries, TASTE_ITEMS))
            queries_list = list(_unit_rows(vectors[picks].mean(axis=1)))
            source = f"normalised mean of {TASTE_ITEMS} random items (no history)"
        specs.append(IndexSpec(
            "content", "cosine", vectors, np.asarray(queries_list, dtype=np.float32),
            count("content", content), source, published=content.index,
            published_params=published))
    if not specs:
        raise ValueError(f"{version_dir}: none of {list(names)} has an index in this version")
    return specs


# -- building ---------------------------------------------------------------------------------


def build_index(spec: IndexSpec, m: int, ef_construction: int, seed: int = 42,
                threads: int = 2, chunk: int = 50_000, progress: bool = True) -> Index:
    """The project's index for ``spec``, filled chunk by chunk so a long build shows progress.

    Insertion order and init parameters are the project's (``MipsIndex.build``: augmented
    vectors, largest norm first), so with ``threads=1`` the result equals the served build.
    """
    if spec.space == "mips":
        vectors, _ = augment_items(spec.vectors)
        order = np.argsort(-np.linalg.norm(vectors[:, :-1], axis=1), kind="stable")
        space = "l2"
    else:
        vectors, order, space = spec.vectors, np.arange(len(spec.vectors)), "cosine"
    n, dim = vectors.shape
    graph = HnswIndex.build(np.zeros((0, dim), dtype=np.float32), space, m, ef_construction,
                            ef_construction, seed, max_elements=n)
    raw: hnswlib.Index = graph._index  # the project class adds one item per call only
    with tqdm(total=n, desc=f"build {spec.name} M={m}", unit="item", disable=not progress,
              leave=False) as bar:
        for lo in range(0, n, chunk):
            labels = order[lo:lo + chunk]
            raw.add_items(vectors[labels], labels, num_threads=threads)
            bar.update(len(labels))
    return (MipsIndex(graph, spec.vectors) if spec.space == "mips"
            else CosineIndex(graph, spec.vectors))


def index_bytes(index: Index) -> int:
    """Bytes of the index as hnswlib saves it: the memory the graph and its vectors take."""
    with tempfile.TemporaryDirectory(prefix="ann-") as tmp:
        path = Path(tmp) / "index.bin"
        index.save(path)
        return path.stat().st_size


def _set_ef(index: Index, ef: int) -> None:
    """Sweep ef on the hnswlib object itself (as ``build_index`` fills it): serving fixes ef
    once, at load (``HnswIndex.load(..., ef)``), and has no setter to change it later."""
    graph = index if isinstance(index, HnswIndex) else index.index
    graph._index.set_ef(ef)


# -- measuring --------------------------------------------------------------------------------


def exact_scan(vectors: np.ndarray, queries: np.ndarray,
               top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query seconds and top-N item ids (best first) of the plain numpy scan."""
    n = len(vectors)
    top_n = min(top_n, n)
    scores = np.empty(n, dtype=np.float32)
    found = np.empty((len(queries), top_n), dtype=np.int64)
    seconds = np.empty(len(queries))
    for q in queries[:WARMUP]:
        np.matmul(vectors, q, out=scores)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        np.matmul(vectors, q, out=scores)
        top = np.argpartition(scores, n - top_n)[n - top_n:]
        top = top[np.argsort(-scores[top], kind="stable")]
        seconds[i] = time.perf_counter() - t0
        found[i] = top
    return seconds, found


def index_scan(index: Index, queries: np.ndarray,
               top_n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-query seconds and returned ids of the served query path (one vector per call)."""
    seconds = np.empty(len(queries))
    found = []
    for q in queries[:WARMUP]:
        index.query(q, top_n)
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        labels, _ = index.query(q, top_n)
        seconds[i] = time.perf_counter() - t0
        found.append(labels)
    return seconds, found


def recall_at_n(found: Sequence[np.ndarray], truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / N, N = the exact answer's length."""
    if len(truth) == 0 or truth.shape[1] == 0:
        return 1.0
    hits = [len(np.intersect1d(f, t, assume_unique=True)) for f, t in zip(found, truth,
                                                                          strict=True)]
    return float(np.mean(hits) / truth.shape[1])


def _timing(seconds: np.ndarray) -> dict[str, float]:
    ms = seconds * 1000.0
    return {"mean_ms": round(float(ms.mean()), 4), "p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4)}


def effective_dim(vectors: np.ndarray, sample: int = 20_000, seed: int = 0) -> float:
    """Participation ratio of the covariance spectrum (on a sample: it is a summary only)."""
    rng = np.random.default_rng(seed)
    x = vectors if len(vectors) <= sample else vectors[rng.choice(len(vectors), sample,
                                                                   replace=False)]
    if len(x) < 2:
        return 0.0
    lam = np.clip(np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False)), 0, None)
    return round(float(lam.sum() ** 2 / max((lam ** 2).sum(), 1e-300)), 2)


def ef_grid(efs: Sequence[int], top_n: int) -> tuple[list[int], list[int]]:
    """(efs to sweep, efs dropped): hnswlib searches with max(ef, N), so ef < N means ef = N."""
    below = sorted({e for e in efs if e < top_n})
    kept = sorted({e for e in efs if e >= top_n} | ({top_n} if below else set()))
    return kept, below


def sweep(index: Index, spec: IndexSpec, efs: Sequence[int], truth: np.ndarray,
          exact_mean_ms: float, progress: bool = True, label: str = "") -> list[dict[str, Any]]:
    """One curve: recall and latency at each ef, on the queries the exact scan answered."""
    points = []
    for ef in tqdm(efs, desc=f"sweep {spec.name} {label}", unit="ef", disable=not progress,
                   leave=False):
        _set_ef(index, ef)
        seconds, found = index_scan(index, spec.queries, spec.top_n)
        t = _timing(seconds)
        points.append({"ef": int(ef), "recall": round(recall_at_n(found, truth), 4), **t,
                       "speedup": round(exact_mean_ms / max(t["mean_ms"], 1e-9), 2)})
    return points


def operating_point(points: Sequence[dict[str, Any]],
                    target: float = TARGET_RECALL) -> dict[str, Any] | None:
    """The smallest ef reaching the target recall: the cheapest setting good enough to serve."""
    for p in sorted(points, key=lambda p: p["ef"]):
        if p["recall"] >= target:
            return dict(p)
    return None


def measure_spec(spec: IndexSpec, ms: Sequence[int], efs: Sequence[int], ef_construction: int,
                 seed: int = 42, threads: int = 2, chunk: int = 50_000,
                 progress: bool = True) -> dict[str, Any]:
    """Exact scan once, then for each M: build, size, and the ef sweep."""
    top_n = min(spec.top_n, len(spec.vectors))
    spec.top_n = top_n
    kept, below = ef_grid(efs, top_n)
    if below:
        logger.warning("%s: ef %s below top_n %d (hnswlib would use ef=%d); swept ef=%d instead",
                       spec.name, below, top_n, top_n, top_n)
    seconds, truth = exact_scan(spec.vectors, spec.queries, top_n)
    exact = _timing(seconds)
    curves = []
    runs: list[tuple[int, int, str]] = [(m, ef_construction, "built") for m in ms]
    if spec.published is not None:
        runs.append((spec.published_params.get("m", 0),
                     spec.published_params.get("ef_construction", 0), "published"))
    for m, efc, source in runs:
        build_s = None
        if source == "built":
            t0 = time.perf_counter()
            index = build_index(spec, m, efc, seed, threads, chunk, progress)
            build_s = round(time.perf_counter() - t0, 2)
        else:
            index = spec.published
        size = index_bytes(index)
        load = round(os.getloadavg()[0], 2)  # other work on the machine skews the latencies
        points = sweep(index, spec, kept, truth, exact["mean_ms"], progress, f"M={m} {source}")
        op = operating_point(points)
        curves.append({"m": int(m), "ef_construction": int(efc), "source": source,
                       "build_s": build_s, "build_threads": threads if source == "built" else None,
                       "index_bytes": int(size), "load_average_1m": load, "points": points,
                       "operating_point": None if op is None else {"m": int(m), **op}})
        logger.info("%s M=%d (%s): build %s s, %d bytes", spec.name, m, source, build_s, size)
        del index
    ops = [c["operating_point"] for c in curves if c["operating_point"]]
    return {
        "name": spec.name, "items": int(len(spec.vectors)), "dim": int(spec.vectors.shape[1]),
        "space": spec.space, "top_n": top_n, "queries": int(len(spec.queries)),
        "query_source": spec.query_source, "effective_dim": effective_dim(spec.vectors),
        "ef_below_top_n": below, "exact": exact, "curves": curves,
        "operating_point": min(ops, key=lambda p: p["mean_ms"]) if ops else None,
    }


def measure(specs: Iterator[IndexSpec] | Sequence[IndexSpec], ms: Sequence[int],
            efs: Sequence[int], ef_construction: int = 200, seed: int = 42, threads: int = 2,
            chunk: int = 50_000, progress: bool = True,
            config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full report (see the module docstring for its structure)."""
    cfg = {
        "m": list(ms), "ef": list(efs), "ef_construction": ef_construction, "seed": seed,
        "build_threads": threads, "target_recall": TARGET_RECALL, "warmup_queries": WARMUP,
        "hnswlib": getattr(hnswlib, "__version__", "unknown"), "numpy": np.__version__,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(config or {}),
    }
    indices = [measure_spec(s, ms, efs, ef_construction, seed, threads, chunk, progress)
               for s in specs]
    return {"config": cfg, "indices": indices}


# -- reporting --------------------------------------------------------------------------------


def format_table(report: dict[str, Any]) -> str:
    """A compact text table: one block per index, one row per (M, ef)."""
    lines = []
    for ix in report["indices"]:
        ex = ix["exact"]
        lines.append(
            f"{ix['name']} ({ix['space']}, {ix['items']} items x {ix['dim']}, top {ix['top_n']}, "
            f"{ix['queries']} queries, eff. dim {ix['effective_dim']})  exact scan: "
            f"mean {ex['mean_ms']:.3f} ms  p50 {ex['p50_ms']:.3f}  p99 {ex['p99_ms']:.3f}")
        if ix["ef_below_top_n"]:
            lines.append(f"  ef {ix['ef_below_top_n']} < top_n: swept ef={ix['top_n']} instead")
        lines.append(f"  {'M':>3} {'source':>9} {'build_s':>8} {'index_MB':>9} {'ef':>5} "
                     f"{'recall':>7} {'mean_ms':>8} {'p50_ms':>7} {'p99_ms':>7} {'speedup':>8}")
        for c in ix["curves"]:
            build = "-" if c["build_s"] is None else f"{c['build_s']:.1f}"
            for j, p in enumerate(c["points"]):
                head = (f"  {c['m']:>3} {c['source']:>9} {build:>8} "
                        f"{c['index_bytes'] / 1e6:>9.1f}") if j == 0 else " " * 33
                lines.append(f"{head} {p['ef']:>5} {p['recall']:>7.4f} {p['mean_ms']:>8.3f} "
                             f"{p['p50_ms']:>7.3f} {p['p99_ms']:>7.3f} {p['speedup']:>7.1f}x")
        for c in ix["curves"]:
            op = c["operating_point"]
            where = f"M={c['m']} ({c['source']})"
            lines.append(
                f"  operating point {where}: " + (
                    f"ef={op['ef']} recall {op['recall']:.4f} mean {op['mean_ms']:.3f} ms "
                    f"speedup {op['speedup']:.1f}x" if op else
                    f"recall {TARGET_RECALL} not reached in the ef grid"))
        lines.append("")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> bool:
    """Recall vs ms per query per index; False (and a warning) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
    except ImportError:
        logger.warning("matplotlib not importable (pip install 'shortlist[report]'): "
                       "no plot written to %s", path)
        return False
    indices = report["indices"]
    fig, axes = plt.subplots(1, len(indices), figsize=(6 * len(indices), 4.5), squeeze=False)
    for ax, ix in zip(axes[0], indices, strict=True):
        for c in ix["curves"]:
            pts = c["points"]
            style = "--" if c["source"] == "published" else "-"
            ax.plot([p["recall"] for p in pts], [p["mean_ms"] for p in pts], style, marker="o",
                    label=f"M={c['m']}" + (" (published)" if c["source"] == "published" else ""))
            for p in pts:
                ax.annotate(str(p["ef"]), (p["recall"], p["mean_ms"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.axhline(ix["exact"]["mean_ms"], color="black", linestyle="--", label="exact scan")
        ax.axvline(TARGET_RECALL, color="grey", linestyle=":", label=f"recall {TARGET_RECALL}")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"recall@{ix['top_n']}")
        ax.set_ylabel("mean ms per query")
        ax.set_title(f"{ix['name']} ({ix['space']}), {ix['items']:,} items x {ix['dim']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# -- command line -----------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m shortlist.perf.ann",
                                 description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifacts", type=Path, help="artifact root or version directory")
    src.add_argument("--synthetic-items", type=int, help="size of a synthetic clustered catalog")
    ap.add_argument("--version", default="", help="artifact version (default: the latest)")
    ap.add_argument("--dim", type=int, default=64, help="synthetic vector dimension")
    ap.add_argument("--clusters", type=int, default=1000, help="synthetic cluster count")
    ap.add_argument("--indices", default="als,content", help="which indices to measure")
    ap.add_argument("--m", type=_ints, default=[8, 16, 32], help="HNSW M values, e.g. 8,16,32")
    ap.add_argument("--ef", type=_ints, default=[50, 100, 200, 400, 800],
                    help="query ef values (values below top N are replaced by N)")
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--top-n", type=int, default=None,
                    help="N for recall@N and k per query (default: the candidate counts)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=50_000, help="items added per build step")
    ap.add_argument("--output", type=Path, default=None, help="JSON report path")
    ap.add_argument("--plot", type=Path, default=None, help="PNG plot path")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--log-level", default="INFO")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = [n.strip() for n in args.indices.split(",") if n.strip()]
    if args.artifacts is not None:
        version_dir = resolve(args.artifacts, args.version)
        specs = artifact_specs(version_dir, "", args.queries, args.seed, args.top_n, names)
        source = {"source": "artifacts", "artifact": str(version_dir),
                  "version": read_manifest(version_dir).version}
    else:
        t0 = time.perf_counter()
        specs = synthetic_specs(args.synthetic_items, args.dim, args.queries, args.seed,
                                args.clusters, args.top_n, names)
        logger.info("synthetic catalog of %d items in %.1f s", args.synthetic_items,
                    time.perf_counter() - t0)
        source = {"source": "synthetic", "items": args.synthetic_items, "dim": args.dim,
                  "clusters": args.clusters}
    report = measure(specs, args.m, args.ef, args.ef_construction, args.seed,
                     args.build_threads, args.chunk, not args.no_progress,
                     config={**source, "queries": args.queries, "top_n": args.top_n})
    print(format_table(report))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1) + "\n")
        logger.info("wrote %s", args.output)
    if args.plot is not None and plot(report, args.plot):
        logger.info("wrote %s", args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
