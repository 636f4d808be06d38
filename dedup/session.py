"""The SparkSession from a profile's ``spark`` table."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

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


def run_with_session(
    config_path: str | None, overrides: list[str], work: Callable[[SparkSession, dict[str, Any]], int]
) -> int:
    """For the commands: load the settings (exit status 2 with a message when they are bad),
    start the session, run ``work(spark, cfg)`` and stop the session whatever happens."""
    from dedup.config import load_config

    try:
        cfg = load_config(config_path, overrides)
    except (OSError, KeyError, ValueError) as exc:
        print(f"dedup: bad configuration: {exc}", file=sys.stderr)
        return 2
    spark = build_session(cfg["spark"])
    try:
        return work(spark, cfg)
    finally:
        spark.stop()
