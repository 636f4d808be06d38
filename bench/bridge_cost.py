"""What the bridge guard (``groups.bridge_min_side``, :mod:`dedup.bridges`) costs the groups stage.

``groups.build_groups`` runs on a synthetic edge table made inside Spark, once with the guard at
its default and once off (``bridge_min_side`` 0), ``--repeats`` times each, alternating; its
members are written to Parquet each time. The groups are a mix of shapes (one per group id, in
turn): a pair, a triangle, a chain of four, a star of six, two triangles joined by one link (one
cut), a ring of eight with chords, and three triangles in a row (two cuts). Four of the seven
shapes reach the guard's six members or more, so far more groups go through it than in a real
run (on the dev sets, 4 to 6 of about 3,000 groups). Prints the median seconds of each and their
ratio, and the links cut (which must be three per seven groups; the exit status says whether).

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/bridge_cost.py \\
        [--groups 100000] [--repeats 3] [--out bench-out/bridge-cost]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dedup import groups
from dedup.devkit.benchrun import run_meta
from dedup.session import build_session
from dedup.settings import default_table

TRIANGLE = [(0, 1), (1, 2), (0, 2)]
SHAPES: list[list[tuple[int, int]]] = [
    [(0, 1)],
    TRIANGLE,
    [(0, 1), (1, 2), (2, 3)],
    [(0, i) for i in range(1, 6)],
    TRIANGLE + [(a + 3, b + 3) for a, b in TRIANGLE] + [(2, 3)],
    [(i, (i + 1) % 8) for i in range(8)] + [(0, 4), (2, 6)],
    TRIANGLE + [(a + 3, b + 3) for a, b in TRIANGLE] + [(a + 6, b + 6) for a, b in TRIANGLE] + [(2, 3), (5, 6)],
]
CUTS_PER_ROUND = 3  # two triangles: 1; three triangles in a row: 2
SPAN = 16  # ids per group: node i of group g is g * SPAN + i


def edge_table(spark: SparkSession, n_groups: int) -> DataFrame:
    """(id_a, id_b, method, distance) of ``n_groups`` groups, shapes in turn (module doc)."""
    template = spark.createDataFrame(
        [(shape, a, b) for shape, links in enumerate(SHAPES) for a, b in links], "shape int, a int, b int"
    )
    ids = spark.range(n_groups).select(F.col("id").alias("g"), (F.col("id") % len(SHAPES)).cast("int").alias("shape"))
    return ids.join(F.broadcast(template), "shape").select(
        (F.col("g") * SPAN + F.col("a")).alias("id_a"),
        (F.col("g") * SPAN + F.col("b")).alias("id_b"),
        F.lit("photo").alias("method"),
        F.lit(12).alias("distance"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out/bridge-cost"))
    args = parser.parse_args(argv)
    spark = build_session({"spark.master": "local[2]", "spark.ui.enabled": "false", "spark.driver.memory": "3g"})
    work = Path(tempfile.mkdtemp(prefix="bridge-cost-"))
    edge_table(spark, args.groups).write.mode("overwrite").parquet(str(work / "edges"))
    edges = spark.read.parquet(str(work / "edges")).persist()
    n_edges = edges.count()
    items = spark.range(args.groups * SPAN).select("id", F.format_string("P%09d", "id").alias("productId"))
    seconds: dict[str, list[float]] = {"guard": [], "off": []}
    cut = {}
    for _ in range(args.repeats):
        for name, min_side in (("guard", default_table("groups").bridge_min_side), ("off", 0)):
            settings = default_table("groups", bridge_min_side=min_side)
            start = time.perf_counter()
            built = groups.build_groups(edges, items, settings)
            built.members.write.mode("overwrite").parquet(str(work / f"members-{name}"))
            seconds[name].append(time.perf_counter() - start)
            cut[name] = built.bridges_cut
    spark.stop()
    expected = CUTS_PER_ROUND * (args.groups // len(SHAPES)) + sum(
        (1 if shape == 4 else 2 if shape == 6 else 0) for shape in range(args.groups % len(SHAPES))
    )
    result = {
        "meta": run_meta(),
        "groups": args.groups,
        "edges": n_edges,
        "seconds": seconds,
        "median_s": {name: statistics.median(values) for name, values in seconds.items()},
        "bridges_cut": cut,
        "expected_cuts": expected,
    }
    result["ratio"] = result["median_s"]["guard"] / result["median_s"]["off"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "meta"}, indent=1))
    return 0 if cut["guard"] == expected and cut["off"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
