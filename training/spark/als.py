"""ALS in Spark MLlib, as the ALS generator's solver: the same model, fitted by Spark.

Both libraries minimise the implicit-feedback loss of Hu, Koren and Volinsky; two conventions
differ and are mapped so that a tuned configuration means the same thing on either engine:

- Confidence. Shortlist's ALS (``implicit``) gives an observed pair confidence ``alpha * r``
  (r = 1 here); MLlib gives ``1 + alpha' * r``. So ``alpha' = alpha - 1`` (at least 0).
- Regularisation. ``implicit`` adds ``lambda`` to each user's (item's) normal equations; MLlib
  adds ``regParam * n`` (n: that user's or item's events, "ALS-WR"). ``regParam`` is set to
  ``lambda`` divided by the mean events per user, which matches the user side on average.

The events reach Spark as parquet written on the driver, and the factors leave it the same way
(MLlib's ``userFactors``/``itemFactors`` tables), read with pyarrow into float32 arrays: no
pickle on either side. Users or items without events keep zero vectors, as ``implicit``
leaves them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shortlist.retrieval.als import AlsModel
from shortlist.retrieval.generators import AlsGenerator, Registry


def mllib_params(model: AlsModel, matrix: sp.csr_matrix) -> dict:
    """MLlib ALS parameters for ``model``'s configuration on ``matrix``."""
    active = max(int((np.diff(matrix.indptr) > 0).sum()), 1)
    return {"rank": model.factors, "maxIter": model.iterations,
            "regParam": model.regularization / (matrix.nnz / active),
            "alpha": max(model.alpha - 1.0, 0.0), "seed": model.seed}


def fit_factors(spark, workdir: Path, matrix: sp.csr_matrix,
                model: AlsModel) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of ``model``'s configuration, fitted by MLlib."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.ml.recommendation import ALS

    workdir.mkdir(parents=True, exist_ok=True)
    # ALS's lineage grows with every iteration; without checkpoints a long fit overflows the
    # JVM's stack. MLlib checkpoints every checkpointInterval (10) iterations once a
    # directory is set (on a cluster it must be storage every executor sees).
    if spark.sparkContext.getCheckpointDir() is None:
        spark.sparkContext.setCheckpointDir(str(workdir / "checkpoints"))
    run = next(n for n in itertools.count() if not (workdir / f"als-{n}").exists())
    base = workdir / f"als-{run}"
    base.mkdir()
    coo = matrix.tocoo()
    pq.write_table(pa.table({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32),
                             "rating": coo.data.astype(np.float32)}), base / "input.parquet")
    als = ALS(userCol="user", itemCol="item", ratingCol="rating", implicitPrefs=True,
              coldStartStrategy="nan", **mllib_params(model, matrix))
    fitted = als.fit(spark.read.parquet(str(base / "input.parquet")))
    out = []
    for name, table, n in (("users", fitted.userFactors, matrix.shape[0]),
                           ("items", fitted.itemFactors, matrix.shape[1])):
        table.write.mode("overwrite").parquet(str(base / f"{name}.parquet"))
        read = pq.read_table(base / f"{name}.parquet")
        factors = np.zeros((n, model.factors), dtype=np.float32)
        ids = read.column("id").to_numpy()
        if len(ids):
            values = read.column("features").combine_chunks().flatten().to_numpy()
            factors[ids] = values.reshape(len(ids), model.factors)
        out.append(np.ascontiguousarray(factors))
    return out[0], out[1]


def spark_registry(spark, workdir: Path, registry: Registry) -> Registry:
    """``registry`` with its ALS generator solved by MLlib; saved artifacts are unchanged (the
    generator keeps its name and model files, so servers load it as they load any)."""

    class SparkAlsGenerator(AlsGenerator):
        @classmethod
        def fit(cls, data, config, previous=None):
            return super().fit(data, config, None)  # MLlib cannot start from given factors

        @classmethod
        def solve(cls, model, matrix, data, warm):
            return model.set_factors(*fit_factors(spark, workdir, matrix, model))

    return Registry(SparkAlsGenerator if cls.name == AlsGenerator.name else cls
                    for cls in registry)
