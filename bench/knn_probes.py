"""The kNN's IVF probes against an exact search, on a finished job's vectors: for each
``cosine.probes`` value, the cosine pairs ``dedup.knn.knn_pairs`` makes (the job's defaults
otherwise, regions included), how many of them are true pairs of the bench set, the share of the
exact search's pairs it finds (one cell: every vector meets every other), and the seconds the
stage takes (pairs collected; median of ``--repeats``, the settings alternating).

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/knn_probes.py \\
        --job bench-out/r25/job/default --truth bench-out/dev2/set/truth.csv --probes 2,3,4 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from dedup import knn
from dedup.devkit.benchrun import put_result, run_meta
from dedup.devkit.benchset import read_truth
from dedup.session import build_session
from dedup.settings import CosineSettings, default_table

SPARK = {"spark.master": "local[2]", "spark.driver.memory": "4g", "spark.ui.enabled": "false",
         "spark.sql.shuffle.partitions": "8", "spark.ui.showConsoleProgress": "false"}  # fmt: skip
FLOOR = 0.5  # the sscd_distilled backend's candidate floor, as the job's manifest records it


def cosine_pairs(items: DataFrame, settings: CosineSettings, dim: int, n: int) -> tuple[set[tuple[int, int]], float]:
    """The kNN's pairs (id_a, id_b) and the seconds they took."""
    started = time.perf_counter()
    found = knn.knn_pairs(items, settings, dim, n, FLOOR)
    pairs = {(row[0], row[1]) for row in found.pairs.select("id_a", "id_b").collect()}
    found.release()
    return pairs, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a job output run with an embedder (features/)")
    parser.add_argument("--truth", type=Path, required=True, help="the bench set's truth.csv")
    parser.add_argument("--probes", default="2,3,4", help="comma-separated cosine.probes values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    group = {row["productId"]: row["group"] for row in read_truth(args.truth)}
    spark = build_session(SPARK)
    try:
        features = spark.read.parquet(str(args.job / "features")).where("feature_status = 'ok'")
        items = features.select("productId", "embedding", "region_embedding",
                                F.xxhash64("productId").alias("id")).cache()  # fmt: skip
        product = {row["id"]: row["productId"] for row in items.select("id", "productId").collect()}
        n, dim = len(product), len(items.first()["embedding"]) // 4
        defaults = default_table("cosine")
        one_cell = replace(defaults, cell_size=2 * n, max_group_rows=2 * n)  # never split, never cut (<= 2n rows)
        exact, _ = cosine_pairs(items, one_cell, dim, n)

        def true_pairs(pairs: set[tuple[int, int]]) -> int:
            return sum(1 for a, b in pairs if group[product[a]] and group[product[a]] == group[product[b]])

        runs: dict[int, list[float]] = {}
        found: dict[int, set[tuple[int, int]]] = {}
        for _ in range(args.repeats):
            for probes in (int(p) for p in args.probes.split(",")):
                found[probes], seconds = cosine_pairs(items, replace(defaults, probes=probes), dim, n)
                runs.setdefault(probes, []).append(seconds)
    finally:
        spark.stop()
    result: dict[str, Any] = {
        "meta": run_meta(), "products": n, "floor": FLOOR,
        "exact": {"pairs": len(exact), "true_pairs": true_pairs(exact)},
        "probes": {str(p): {"pairs": len(found[p]), "true_pairs": true_pairs(found[p]),
                            "exact_pairs_found": round(len(found[p] & exact) / max(1, len(exact)), 4),
                            "seconds": [round(s, 2) for s in runs[p]],
                            "median_seconds": round(statistics.median(runs[p]), 2)} for p in found},
    }  # fmt: skip
    return put_result(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
