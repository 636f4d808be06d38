"""The SparkSession from a profile's ``spark`` table."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession


def under_spark_submit() -> bool:
    """True inside a driver started by spark-submit (it chose the master already)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(spark_settings: dict[str, str]) -> SparkSession:
    """Get or create the session; under spark-submit the profile does not override ``--master``."""
    builder = SparkSession.builder
    for key, value in spark_settings.items():
        if key == "spark.master" and under_spark_submit():
            continue
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("DEDUP_SPARK_LOG_LEVEL", "ERROR"))
    return spark
