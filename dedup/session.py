"""The SparkSession from a profile's ``spark`` table.

Python workers: in local mode (``local``, ``local[N]``, ``local-cluster[...]``) they run on the
driver's own interpreter, ``sys.executable``, unless ``PYSPARK_PYTHON`` or ``spark.pyspark.python``
names another. PySpark's own default is whatever ``python3`` is first on PATH, which on a machine
whose ``python3`` is another version than the venv's fails every task with
``PYTHON_VERSION_MISMATCH``. On a cluster the executors' Python stays the cluster's choice
(``spark-submit.sh --ship-env`` sets ``spark.pyspark.python``).

>>> worker_python({"spark.master": "local[2]"}, {}, "/venv/bin/python")
'/venv/bin/python'
>>> worker_python({"spark.master": "local[*]", "spark.pyspark.python": "/opt/py"}, {}, "/venv/bin/python")
'/opt/py'
>>> worker_python({"spark.master": "local[2]"}, {"PYSPARK_PYTHON": "/usr/bin/python3.12"}, "/venv/bin/python") is None
True
>>> worker_python({"spark.master": "yarn"}, {}, "/venv/bin/python") is None
True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from pyspark.sql import SparkSession

from dedup.config import load_config
from dedup.settings import typed


def under_spark_submit() -> bool:
    """True inside a driver started by spark-submit (it chose the master already)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def is_local_master(master: str | None) -> bool:
    """``local``, ``local[N]``, ``local[*]``, ``local[N,F]`` or ``local-cluster[...]``: every worker on this machine."""
    return bool(master) and (master == "local" or master.startswith(("local[", "local-cluster[")))


def worker_python(settings: dict[str, str], environ: dict[str, str] | os._Environ, driver_python: str) -> str | None:
    """The interpreter to export as ``PYSPARK_PYTHON`` for the Python workers, or None to leave it:
    ``PYSPARK_PYTHON`` already set wins; then ``spark.pyspark.python``; then, in local mode, the
    driver's interpreter."""
    if environ.get("PYSPARK_PYTHON"):
        return None
    if settings.get("spark.pyspark.python"):
        return str(settings["spark.pyspark.python"])
    return driver_python if is_local_master(settings.get("spark.master")) else None


def _effective_settings(spark_settings: dict[str, str]) -> dict[str, str]:
    """The profile's Spark settings; under spark-submit, its own ``--master`` and ``--conf`` win."""
    if not under_spark_submit():
        return dict(spark_settings)
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # attaches to spark-submit's JVM, whose settings SparkConf reads
    submitted = dict(SparkConf().getAll())
    return {**{k: v for k, v in spark_settings.items() if k != "spark.master"}, **submitted}


def build_session(spark_settings: dict[str, str]) -> SparkSession:
    """Get or create the session; under spark-submit the profile does not override ``--master``.
    Points local-mode Python workers at this interpreter (see the module doc)."""
    python = worker_python(_effective_settings(spark_settings), os.environ, sys.executable)
    if python:
        os.environ["PYSPARK_PYTHON"] = python  # read once, when the SparkContext starts
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
    try:
        cfg = load_config(config_path, overrides)
        typed(cfg)  # checked once here: a clear error naming the key, before Spark starts
    except (OSError, KeyError, ValueError) as exc:
        print(f"dedup: bad configuration: {exc}", file=sys.stderr)
        return 2
    spark = build_session(cfg["spark"])
    try:
        return work(spark, cfg)
    finally:
        spark.stop()
