"""The data stage in Spark SQL: load, deduplicate, encode ids, carve the splits.

It produces exactly what the single-process engine does (``training.datasets``,
``training.split``), so the two engines fit on the same events and validate on the same items:

- **Load.** A generic-format directory is read by Spark itself (``interactions.csv``, typed as
  the pyarrow loader types it); other formats (MovieLens, ``~untimed`` variants) go through the
  Python loader once and reach Spark as parquet. ``items.csv`` (small) is read on the driver.
- **Ids.** Users are indexed in sorted id order (Spark orders strings by UTF-8 bytes, which is
  code-point order, as Python sorts); items in catalog order, then interacted items the catalog
  lacks in order of first appearance.
- **Duplicates.** One event per (user, item): the latest (ties: the later row) with time, or the
  first row carrying the summed weight without.
- **Splits.** Validation: each eligible user's latest item (time; ties in time broken by
  ``common.ordering``'s hash) or one drawn by the same seeded hash of (user, item) as
  ``common.ordering.pair_hash`` (computed with wrapping 64-bit arithmetic, compared
  unsigned). Ranker labels: the latest (or drawn) ``label_fraction`` of the rest.

The encoded events with their split go to parquet (``events.parquet``, columns user, item,
timestamp, weight, split: 0 train, 1 label, 2 validation), which the driver reads with pyarrow.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shortlist.common.ordering import TIE_SEED
from shortlist.common.vocab import Vocabulary
from shortlist.training.datasets import (
    VARIANT_SEP,
    Dataset,
    DatasetError,
    Items,
    fingerprint,
    load,
    read_generic_items,
    resolve_path,
    seconds_unit,
)
from shortlist.training.split import Events

logger = logging.getLogger(__name__)

TRAIN, LABEL, VALID = 0, 1, 2
# common.ordering.pair_hash's constants as signed 64-bit values (Spark has no unsigned type).
_C1, _C2, _C3 = (c - (1 << 64) if c >= 1 << 63 else c for c in
                 (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9))
_C4 = 0xBF58476D1CE4E5B9 - (1 << 64)
_SIGN = -(1 << 63)


@dataclass
class Prepared:
    """Everything ``fit`` needs from the data stage, on the driver."""

    name: str
    fingerprint: str
    has_timestamps: bool
    catalog: Items
    users: Vocabulary
    events: Events
    valid: np.ndarray  # mask over events: validation items
    labels: np.ndarray  # mask over the non-validation events: the ranker's labels
    parquet: Path


def refuse_event_types(path: Path, dataset: Dataset | None = None) -> None:
    """Typed data is refused: this stage carries no event type, so a dislike would be fitted
    as a positive event just like a purchase. Checked before any Spark work (a header read)."""
    typed = dataset is not None and dataset.event_codes is not None
    file = path / "interactions.csv"
    if not typed and file.is_file():
        with open(file, encoding="utf-8-sig", newline="", errors="replace") as fh:
            typed = "event" in next(csv.reader(fh), [])
    if typed:
        raise DatasetError(f"{path.name}: the data has event types (an event column), which "
                           "the Spark engine does not support; fit it with the python engine "
                           "(--engine python)")


def _raw_generic(spark, path: Path, row_order_time: bool):
    """(rows: user_id, item_id, weight, timestamp, row; has time) read by Spark."""
    from pyspark.sql import functions as F

    file = path / "interactions.csv"
    with open(file, encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh), [])
    if not {"user_id", "item_id"} <= set(header):
        raise DatasetError(f"{file}: needs columns user_id and item_id, found {header}")
    df = spark.read.csv(str(file), header=True, inferSchema=False, encoding="UTF-8")
    df = _with_row_index(spark, df)
    weight = (F.coalesce(F.col("weight").cast("float"), F.lit(1.0)) if "weight" in header
              else F.lit(1.0)).cast("float")
    has_t = "timestamp" in header
    if has_t:
        raw = F.col("timestamp").cast("double")
        # as the pyarrow loader: truncated toward zero, an empty one takes the row number
        stamp = F.when(raw.isNull() | F.isnan(raw), F.col("row")).otherwise(raw.cast("long"))
    elif row_order_time:
        stamp, has_t = F.col("row"), True
    else:
        stamp = F.lit(0)
    df = df.select("user_id", "item_id", weight.alias("weight"),
                   stamp.cast("long").alias("timestamp"), "row")
    if "timestamp" in header:  # milliseconds and finer to seconds, as the pyarrow loader does
        top = df.agg(F.max(F.abs(F.col("timestamp")))).first()[0]
        unit = seconds_unit(int(top or 0))
        if unit > 1:
            logger.warning("timestamps read as 1/%d seconds and converted to unix seconds", unit)
            floored = (F.col("timestamp") - F.pmod(F.col("timestamp"), F.lit(unit))) / unit
            df = df.withColumn("timestamp", floored.cast("long"))
    return df, has_t


def _with_row_index(spark, df):
    """``row``: the 0-based line order of the file, contiguous (what the Python loader calls
    the row): each partition's offset plus the position within it."""
    from pyspark.sql import functions as F

    df = df.withColumn("_pid", F.spark_partition_id()).withColumn(
        "_mid", F.monotonically_increasing_id())
    counts = sorted((r["_pid"], r["count"]) for r in df.groupBy("_pid").count().collect())
    offsets, total = [], 0
    for pid, count in counts:
        offsets.append((pid, total))
        total += count
    off = spark.createDataFrame(offsets, "_pid int, _off long")
    return (df.join(F.broadcast(off), "_pid")
            .withColumn("row", F.col("_off") + F.col("_mid") - F.shiftleft(
                F.col("_pid").cast("long"), 33))
            .drop("_pid", "_mid", "_off"))


def _raw_from_loader(spark, ds, workdir: Path):
    """Other formats (or data extended with an event log): the Python loader's dataset,
    handed to Spark as parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"user_id": pa.array(ds.user_ids.astype(str), pa.large_string()),
                      "item_id": pa.array(ds.item_ids.astype(str), pa.large_string()),
                      "weight": pa.array(ds.weights, pa.float32()),
                      "timestamp": pa.array(ds.timestamps, pa.int64()),
                      "row": pa.array(np.arange(len(ds)), pa.int64())})
    raw = workdir / "raw.parquet"
    pq.write_table(table, raw)
    return spark.read.parquet(str(raw))


def _pair_hash(seed: int):
    """common.ordering.pair_hash of (user, item), as a signed long that orders like the uint64."""
    from pyspark.sql import functions as F

    x = (F.col("user") * F.lit(_C1)).bitwiseXOR(F.col("item") * F.lit(_C2)).bitwiseXOR(
        F.lit(seed).cast("long") * F.lit(_C3))
    x = x.bitwiseXOR(F.shiftrightunsigned(x, 31))
    x = x * F.lit(_C4)
    x = x.bitwiseXOR(F.shiftrightunsigned(x, 29))
    return x.bitwiseXOR(F.lit(_SIGN))  # flip the sign bit: signed order = unsigned order


def _holdout(df, fraction_or_n, min_items: int, by_time: bool, seed: int, name: str):
    """``df`` with a boolean column ``name``: each eligible user's latest (or drawn) events,
    as ``split.holdout`` marks them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    per_user = Window.partitionBy("user")
    if by_time:  # latest first: timestamp, ties broken as common.ordering.time_order does
        order = Window.partitionBy("user").orderBy(F.col("timestamp").desc(),
                                                   _pair_hash(TIE_SEED).desc())
    else:
        order = Window.partitionBy("user").orderBy(_pair_hash(seed).asc(), F.col("row").asc())
    total = F.count(F.lit(1)).over(per_user)
    if isinstance(fraction_or_n, float) and fraction_or_n < 1:
        take = F.greatest(F.lit(1), F.floor(total * F.lit(fraction_or_n)))
    else:
        take = F.lit(int(fraction_or_n))
    pos = F.row_number().over(order) - 1
    return df.withColumn(name, (total >= min_items) & (pos < take))


def prepare(spark, spec: str, workdir: Path, seed: int = 42, min_items: int = 5,
            label_fraction: float = 0.2, row_order_time: bool = False,
            dataset: Dataset | None = None) -> Prepared:
    """Run the data stage on ``spark``; parquet in ``workdir`` (which the executors must see:
    a local directory for local[N] or a one-machine cluster, shared storage otherwise).
    ``dataset``: already loaded (e.g. extended with the event log), instead of ``spec``."""
    base, _, variant = spec.partition(VARIANT_SEP)
    path = resolve_path(base)
    refuse_event_types(path, dataset)
    import pyarrow.parquet as pq
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    workdir.mkdir(parents=True, exist_ok=True)
    if dataset is None and (path / "interactions.csv").is_file() and not variant:
        raw, has_t = _raw_generic(spark, path, row_order_time)
        catalog, files = read_generic_items(path)
        for extra in ("users.csv", "social.csv"):  # the dataset's, as the python loader has it
            if (path / extra).is_file():
                files.append(path / extra)
        name, print_ = path.name, fingerprint(files)
    else:
        ds = dataset if dataset is not None else load(spec, row_order_time)
        raw = _raw_from_loader(spark, ds, workdir)
        has_t, name, print_ = ds.has_timestamps, ds.name, ds.fingerprint
        catalog = Items(list(ds.items.item_ids), list(ds.items.titles),
                        [list(c) for c in ds.items.categories], list(ds.items.texts))
    raw = raw.cache()
    if raw.limit(1).count() == 0:
        raise DatasetError(f"{name}: no interactions")

    # Items: the catalog's order, then interacted items it lacks by first appearance.
    known = set(catalog.item_ids)
    firsts = raw.groupBy("item_id").agg(F.min("row").alias("first")).orderBy("first")
    for row in firsts.toLocalIterator():
        if row["item_id"] not in known:
            known.add(row["item_id"])
            catalog.item_ids.append(row["item_id"])
            catalog.titles.append(row["item_id"])
            catalog.categories.append([])
            catalog.texts.append("")
    items = spark.createDataFrame(list(zip(catalog.item_ids, range(len(catalog.item_ids)),
                                           strict=True)), "item_id string, item long")
    # Users: sorted id order.
    users = (raw.select("user_id").distinct()
             .withColumn("user", F.row_number().over(Window.orderBy("user_id")) - 1))
    user_ids = [r["user_id"] for r in users.orderBy("user").toLocalIterator()]
    ev = raw.join(users, "user_id").join(F.broadcast(items), "item_id")

    # One event per (user, item).
    pair = Window.partitionBy("user", "item")
    if has_t:
        latest = pair.orderBy(F.col("timestamp").desc(), F.col("row").desc())
        ev = ev.withColumn("_rn", F.row_number().over(latest)).where("_rn = 1").drop("_rn")
    else:
        ev = (ev.groupBy("user", "item")
              .agg(F.min("row").alias("row"), F.sum("weight").cast("float").alias("weight"),
                   F.min_by("timestamp", "row").alias("timestamp")))
    ev = ev.select("user", "item", "timestamp", "weight", "row")

    # Validation, then the ranker's labels among the rest.
    ev = _holdout(ev, 1, min_items, has_t, seed, "_valid")
    rest = _holdout(ev.where(~F.col("_valid")), label_fraction, min_items - 1, has_t,
                    seed + 1, "_label")
    out = (ev.where(F.col("_valid")).withColumn("split", F.lit(VALID))
           .unionByName(rest.withColumn("split", F.when(F.col("_label"), F.lit(LABEL))
                                        .otherwise(F.lit(TRAIN))).drop("_label"))
           .drop("_valid").orderBy("row"))
    parquet = workdir / "events.parquet"
    out.write.mode("overwrite").parquet(str(parquet))
    raw.unpersist()

    table = pq.read_table(parquet).sort_by("row")
    col = {c: table.column(c).to_numpy() for c in ("user", "item", "timestamp", "weight",
                                                   "split")}
    events = Events(col["user"].astype(np.int64), col["item"].astype(np.int64),
                    col["timestamp"].astype(np.int64), col["weight"].astype(np.float32))
    split = col["split"]
    return Prepared(name, print_, has_t, catalog, Vocabulary(user_ids), events,
                    split == VALID, split[split != VALID] == LABEL, parquet)
