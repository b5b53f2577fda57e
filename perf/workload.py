"""The requests every tuning measurement runs on: real candidates from a real artifact.

Candidates come from retrieval's own generators and merge (``RetrievalModels.source()``, the
code the retrieval server runs) for sampled users with history, and are put on the wire with the
contract's own ``Candidates.fill_proto``, as retrieval answers and the gateway forwards them to
Rank. Features and predictions use ranking's model code. No server module is imported: the
server measurements start the real servers as processes (``perf.server_layout``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import threadpoolctl

from shortlist.common import artifacts
from shortlist.common.candidates import Candidates
from shortlist.v1 import common_pb2, ranking_pb2

# LightGBM (imported with ranking's bundle) takes seconds to import; measurements that run in a
# child process (perf.blas_threads) must start fast, so the model code is imported where used.
if TYPE_CHECKING:
    from shortlist.ranking.bundle import RankingModels


@dataclass
class Workload:
    """Rank requests as the ranking server receives them, and what it computes from them."""

    version_dir: Path
    version: str
    ranking: RankingModels
    requests: list[ranking_pb2.RankRequest]
    candidates: list[Candidates]  # the same requests before the wire
    features: list[np.ndarray]
    item_factors: np.ndarray  # ALS item factors (retrieval's scoring space)
    user_vectors: np.ndarray  # the sampled users' ALS vectors
    info: dict[str, Any] = field(default_factory=dict)


def fit_small_artifact(directory: Path, n_users: int = 2000, n_items: int = 3000,
                       n_interactions: int = 60_000, dim: int = 64, rounds: int = 100,
                       eval_users: int = 500, seed: int = 42) -> Path:
    """Fit and publish a small model (synthetic data, no tuning) when no artifact is given.

    ``dim`` matches production's 64 by default, since vector width is what the BLAS and
    dtype measurements scale with; the validation metrics (``eval_users``) only fill the
    manifest here, so few users suffice.
    """
    from shortlist.training.fit import fit
    from shortlist.training.params import FitParams
    from shortlist.training.synth import generate

    data = generate(directory / "data", n_users, n_items, n_interactions,
                    n_topics=min(20, n_items), seed=seed, progress=False)
    params = FitParams(seed=seed, tune=False,
                       generators={"als": {"factors": dim, "iterations": 5},
                                   "content": {"dim": dim}},
                       ranker_rounds=rounds, hnsw_ef=100, max_ranker_users=min(n_users, 2000),
                       max_eval_users=min(n_users, eval_users))
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # as shortlist-train
        return fit(str(data), directory / "artifacts", params, progress=False)


def rank_request(cands: Candidates, user_id: str, catalog: Any, version: str, k: int,
                 request_id: str) -> ranking_pb2.RankRequest:
    """The RankRequest the gateway sends for these candidates: retrieval's columns and user
    context, and the details of the top ``k`` (what a RetrieveResponse describes)."""
    request = ranking_pb2.RankRequest(k=k, request_id=request_id, version=version)
    request.user.user_id = user_id
    cands.fill_proto(request.candidates, request.user, catalog.vocab.ids)
    request.items.extend(common_pb2.Item(item_id=catalog.vocab.id(i), title=catalog.titles[i],
                                         categories=catalog.categories[i])
                         for i in cands.items[:k].tolist())
    return request


def load_workload(path: Path, n_requests: int = 16, n_candidates: int = 300,
                  seed: int = 42, k: int = 10) -> Workload:
    """Candidates for sampled real users, through retrieval's and ranking's own model code.

    Each generator's count is raised to at least its default (its config class's), so requests
    carry ``n_candidates`` candidates even when tuning chose fewer.
    """
    from shortlist.ranking.bundle import RankingModels
    from shortlist.retrieval.bundle import RetrievalModels, banned_mask
    from shortlist.retrieval.generators import AlsGenerator

    version_dir = artifacts.resolve(path)
    manifest = artifacts.read_manifest(version_dir)
    ranking = RankingModels.load(version_dir)
    retrieval = RetrievalModels.load(version_dir)
    for name, gen in retrieval.generators.items():
        default = type(gen).Config().candidates
        retrieval.with_generator_config(name, candidates=max(gen.config.candidates, default))
    retrieval.config = dataclasses.replace(retrieval.config, max_candidates=n_candidates)
    source = retrieval.source()
    catalog = retrieval.catalog
    n_items = len(catalog)
    lengths = np.diff(retrieval.history.indptr)
    eligible = np.flatnonzero(lengths >= 5)
    if len(eligible) == 0:
        eligible = np.flatnonzero(lengths > 0)
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(eligible, min(n_requests, len(eligible)), replace=False))
    als = retrieval.generators.get("als")
    pipeline = ranking.pipeline()
    requests, candidates, features, user_vecs = [], [], [], []
    for user in users.tolist():
        state = retrieval.user_state(user)
        cands = source.generate(state, banned_mask(n_items, state.items), n_candidates)
        requests.append(rank_request(cands, retrieval.users.id(user), catalog,
                                     manifest.version, k, f"tuning-{user}"))
        candidates.append(cands)
        features.append(pipeline.features(cands))
        vec = als.vector(state) if isinstance(als, AlsGenerator) else None
        if vec is not None:
            user_vecs.append(vec)
    if isinstance(als, AlsGenerator) and user_vecs:
        item_factors = als.model.item_factors
        user_vectors = np.vstack(user_vecs).astype(np.float32)
    else:  # no ALS vectors here: a similarity space has the same role and shape
        item_factors = ranking.stats.diversity.astype(np.float32)
        user_vectors = item_factors[rng.choice(len(item_factors), max(1, len(users)))]
    sizes = [len(c) for c in candidates]
    info = {"artifact": str(version_dir), "version": manifest.version,
            "dataset": manifest.data.get("dataset", {}), "items": n_items,
            "generators": list(retrieval.generators),
            "features": int(features[0].shape[1]) if features else 0,
            "trees": int(ranking.ranker.booster.num_trees()),
            "requests": len(requests), "candidates_per_request": {
                "min": min(sizes, default=0), "max": max(sizes, default=0),
                "mean": float(np.mean(sizes)) if sizes else 0.0},
            "factor_dim": int(item_factors.shape[1]),
            "request_bytes": int(np.mean([r.ByteSize() for r in requests])) if requests else 0}
    return Workload(version_dir, manifest.version, ranking, requests, candidates, features,
                    item_factors, user_vectors, info)


def snapshot(version_dir: Path, into: Path) -> Path:
    """Hard-link (or copy) a version's files, so a fit replacing it meanwhile cannot pull
    them from under the server processes started minutes into the run."""
    dest = into / version_dir.name
    for src in sorted(p for p in version_dir.rglob("*") if p.is_file()):
        target = dest / src.relative_to(version_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:  # another filesystem
            shutil.copy2(src, target)
    artifacts.read_manifest(dest)  # a version (manifest last) or an error now
    return dest
