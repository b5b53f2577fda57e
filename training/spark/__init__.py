"""Training on Spark (`shortlist-train fit --engine spark`): the data stage in Spark SQL and ALS
in Spark MLlib, writing the same artifact as the single-process engine (docs/scale-out.md).

Imported only by that engine: pyspark and a Java runtime are needed for nothing else.
"""
