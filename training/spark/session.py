"""A Spark session for training: local (``local[N]``) or a cluster's master URL.

Settings chosen here, and why:
- The Python workers run this interpreter (``spark.pyspark.python``): executors on this
  machine, or on a cluster with the same environment, import the same Shortlist. The data
  stage uses Spark SQL only (no Python UDFs), so nothing of ours is shipped to executors.
- ANSI mode off for the split hash (``training.spark.prepare``), which needs wrapping 64-bit
  arithmetic exactly as numpy's uint64 does.
- No web UI (a port nobody asked for), math libraries limited to one thread per task (Spark
  runs a task per core already).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from shortlist.training.datasets import DatasetError


class SparkUnavailable(DatasetError):
    """pyspark or a Java runtime is missing, or the session could not start."""


def java_home() -> str | None:
    """A Java 17 or 21 home for Spark: $JAVA_HOME, else Debian's OpenJDK 17, else `java`."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    for candidate in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-17-openjdk-arm64",
                      "/usr/lib/jvm/java-21-openjdk-amd64"):
        if Path(candidate, "bin", "java").is_file():
            return candidate
    java = shutil.which("java")
    return str(Path(java).resolve().parent.parent) if java else None


def spark_session(master: str = "local[2]", app: str = "shortlist-fit",
                  local_dir: Path | None = None, driver_memory: str = "2g"):
    """Start (or join) a session on ``master``; SparkUnavailable with the fix when it cannot."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable("--engine spark needs pyspark: pip install 'shortlist[spark]' "
                               "(make install does)") from exc
    home = java_home()
    if home is None:
        raise SparkUnavailable("--engine spark needs Java 17: apt-get install "
                               "openjdk-17-jre-headless (`make servers` as root)")
    os.environ["JAVA_HOME"] = home
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName(app)
               .config("spark.ui.enabled", "false")
               .config("spark.sql.ansi.enabled", "false")
               .config("spark.pyspark.python", sys.executable)
               .config("spark.driver.memory", driver_memory)
               # deep query plans (ALS iterations, window chains) need more than 1 MB of stack
               .config("spark.driver.extraJavaOptions", "-Xss16m")
               .config("spark.executor.extraJavaOptions", "-Xss16m")
               .config("spark.sql.shuffle.partitions", "8")
               .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
               .config("spark.executorEnv.OMP_NUM_THREADS", "1"))
    if local_dir is not None:
        builder = builder.config("spark.local.dir", str(local_dir))
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up failures have no common base class
        raise SparkUnavailable(f"could not start Spark on {master}: {exc}") from exc
    session.sparkContext.setLogLevel("ERROR")
    return session
