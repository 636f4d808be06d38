"""Scale benchmark: candidates, verification and groups on synthetic feature tables of 10k-1M products.

For each kind and size, a feature table with planted near duplicates is generated inside Spark
(``dedup.devkit.synthfeatures``: one row per ``spark.range`` id, made in the tasks), written to Parquet
(reused when already there) and read back; then, timed one after the other:

* ``hash``: ``candidates.near_pairs`` (64-bit dHashes, mirrored hashes probed) -> ``verify.score_pairs``
  and ``kept_pairs`` (dHash distance and thumbnail check) written to Parquet -> ``groups.build_groups``
  written to Parquet;
* ``v256`` / ``v4096``: ``cosine.cosine_pairs`` (SimHash banding, exact cosine on every candidate)
  written to Parquet -> ``groups.build_groups``.

Per run: seconds per stage and in all, driver memory (heap peak of the driver JVM, which in local
mode also runs the tasks; peak RSS of that JVM and of the driver Python, both reset before the
run), candidate pairs before verification as a share of all N(N-1)/2 pairs, recall of the planted
pairs above the threshold, and recall against exact search: ``--queries`` ids (half planted
copies, half uniform) compared with all N rows in Spark (a full scan), every pair at or above the
threshold (cosine) or within ``hash.max_distance`` bits (hashes) counted as truth. The candidates
(before verification) and the verified pairs are each checked against it.

Run from the repository root::

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/scale.py \\
        [--kinds hash,v256,v4096] [--sizes 10000,100000,1000000] [--max-rows v4096=100000] \\
        [--min-cosine 0.95] [--dtype float16] [--out bench-out/scale]

Results: a markdown table on stdout and ``<out>/results.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dedup import candidates, cosine, groups, verify
from dedup.config import DEFAULTS
from dedup.devkit import synthfeatures
from dedup.devkit.benchrun import DriverMemory, run_meta, timed
from dedup.rule import Rule
from dedup.session import build_session
from dedup.settings import default_table, typed

REPO = Path(__file__).resolve().parent.parent
DIMS = {"v256": 256, "v4096": 4096}


def _table(spark: SparkSession, kind: str, n: int, args: argparse.Namespace) -> tuple[DataFrame, float]:
    """The Parquet feature table (written first when missing) and the seconds it took to make."""
    path = Path(args.out) / "tables" / f"{kind}-{args.dtype if kind != 'hash' else 'h'}-{n}"
    started = time.perf_counter()
    if not (path / "_SUCCESS").exists():
        if kind == "hash":
            table = synthfeatures.hash_table(spark, n, int(DEFAULTS["hash"]["max_distance"]), seed=args.seed)
        else:
            table = synthfeatures.vector_table(
                spark, n, DIMS[kind], args.dtype, seed=args.seed, near=(args.min_cosine, 0.99), far=(0.5, 0.85)
            )
        table.write.mode("overwrite").parquet(str(path))
    return spark.read.parquet(str(path)), time.perf_counter() - started


def _queries(table: DataFrame, n: int, count: int, seed: int) -> DataFrame:
    """``count`` ids: half near copies (id % 10 == 9), half uniform."""
    rng = random.Random(seed)
    copies = [10 * rng.randrange(n // 10) + synthfeatures.NEAR_SLOT for _ in range(count // 2)]
    uniform = [rng.randrange(n) for _ in range(count - len(copies))]
    return table.where(F.col("id").isin(sorted(set(copies + uniform))))


def _pair_recall(truth: DataFrame, found: DataFrame) -> tuple[int, int]:
    """(truth pairs, those among ``found``) for (id_a, id_b) frames."""
    truth = truth.select("id_a", "id_b").distinct().persist()
    total = truth.count()
    hit = truth.join(found.select("id_a", "id_b").distinct(), ["id_a", "id_b"]).count()
    truth.unpersist()
    return total, hit


def _ordered(frame: DataFrame, x: str, y: str) -> DataFrame:
    return frame.select(F.least(x, y).alias("id_a"), F.greatest(x, y).alias("id_b"))


def run_hash(spark: SparkSession, table: DataFrame, n: int, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    hash_settings, stages = default_table("hash"), {}
    t = hash_settings.max_distance
    items = table.select("id", "productId", "family", "sha256", "dhash", "dhash_flip", "thumb")
    near = candidates.near_pairs(items, hash_settings, n)
    cands = near.pairs.persist()
    n_candidates = timed(stages, "candidates", cands.count)
    rule = Rule.of(typed(DEFAULTS), dim=0)  # the hash rule at the defaults
    verified = verify.kept_pairs(verify.score_pairs(cands, items, rule), rule)
    timed(stages, "verify", lambda: verified.pairs.write.mode("overwrite").parquet(str(out / "pairs")))
    pairs = spark.read.parquet(str(out / "pairs"))
    built = groups.build_groups(pairs, items, default_table("groups"))
    timed(stages, "groups", lambda: built.members.write.mode("overwrite").parquet(str(out / "groups")))
    skipped = near.skipped_buckets.count()
    # truth: planted pairs within t bits; and an exact scan of the queries against all rows
    planted = _ordered(table.where(F.col("planted_distance") <= t), "copy_of", "id")
    a, b = items.alias("a"), F.broadcast(_queries(items, n, args.queries, args.seed).alias("b"))
    distance = verify.hash_signals("a", "b", hash_settings.match_flips)[1]
    scan = a.crossJoin(b).where(F.col("a.id") != F.col("b.id")).where(distance <= t)
    exact = _ordered(scan, "a.id", "b.id")
    summary = _checked(stages, cands, n_candidates, pairs, planted, exact)
    plan = f"bands {list(near.plan.widths)}, radius {near.plan.radius}"
    return summary | {"plan": plan, "skipped_buckets": skipped, "threshold": f"dHash <= {t} bits"}


def _checked(
    stages: dict[str, float],
    cands: DataFrame,
    n_candidates: int,
    pairs: DataFrame,
    planted: DataFrame,
    exact: DataFrame,
) -> dict[str, Any]:
    """The counts and recalls of one run (``cands`` is unpersisted after)."""
    cand_truth = _pair_recall(exact, cands)
    cands.unpersist()
    return {
        "stages": stages,
        "candidates": n_candidates,
        "verified": pairs.count(),
        "planted": _pair_recall(planted, pairs),
        "exact_candidates": cand_truth,
        "exact_verified": _pair_recall(exact, pairs),
    }


def run_vectors(
    spark: SparkSession, table: DataFrame, n: int, dim: int, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    settings = default_table("cosine", min_cosine=args.min_cosine)
    stages: dict[str, float] = {}
    items = table.select("id", "embedding")
    found = cosine.cosine_pairs(items, settings, dim, n)
    cands = found.candidates.persist()
    n_candidates = timed(stages, "candidates", cands.count)
    timed(stages, "verify", lambda: found.pairs.write.mode("overwrite").parquet(str(out / "pairs")))
    pairs = spark.read.parquet(str(out / "pairs"))
    edges = pairs.select("id_a", "id_b", F.lit("cosine").alias("method"), F.lit(None).cast("int").alias("distance"))
    named = table.select("id", F.concat(F.lit("p"), F.col("id").cast("string")).alias("productId"))
    built = groups.build_groups(edges, named, default_table("groups"))
    timed(stages, "groups", lambda: built.members.write.mode("overwrite").parquet(str(out / "groups")))
    skipped, _ = found.count_skipped()
    planted = _ordered(table.where(F.col("planted_cosine") >= args.min_cosine), "copy_of", "id")
    queries = _queries(items, n, args.queries, args.seed)
    exact = _ordered(cosine.exact_neighbours(items, queries, dim, args.min_cosine), "query", "id")
    summary = _checked(stages, cands, n_candidates, pairs, planted, exact)
    found.release()
    p = found.plan
    plan = f"{p.bands} bands x {p.rows} rows ({p.bits} bits), planned recall {p.recall(args.min_cosine):.4f}"
    threshold = f"cosine >= {args.min_cosine} ({args.dtype})"
    return summary | {"plan": plan, "skipped_buckets": skipped, "threshold": threshold}


def _share(count: int, n: int) -> float:
    return count / (n * (n - 1) / 2)


def _recall(pair: tuple[int, int]) -> str:
    total, hit = pair
    return f"{hit / total:.4f} ({hit}/{total})" if total else "n/a (0 truth pairs)"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| kind | N | threshold | plan | candidates | share of N(N-1)/2 | verified | skipped buckets | "
        "candidates s | verify s | groups s | total s | JVM heap peak MB | JVM RSS peak MB | Python RSS peak MB | "
        "planted recall | candidate recall vs exact | verified recall vs exact |",
        "|---" * 18 + "|",
    ]
    for r in results:
        s = r["stages"]
        lines.append(
            f"| {r['kind']} | {r['n']:,} | {r['threshold']} | {r['plan']} | {r['candidates']:,} | "
            f"{_share(r['candidates'], r['n']):.2e} | {r['verified']:,} | {r['skipped_buckets']} | "
            f"{s['candidates']} | {s['verify']} | {s['groups']} | {r['total_s']} | {r['memory']['jvm_heap_peak_mb']} | "
            f"{r['memory']['jvm_rss_peak_mb']} | {r['memory']['python_rss_peak_mb']} | {_recall(r['planted'])} | "
            f"{_recall(r['exact_candidates'])} | {_recall(r['exact_verified'])} |"
        )
    growth = []
    by_kind: dict[str, dict[int, list[float]]] = {}
    for r in results:  # repeated runs of one kind and size: their median
        by_kind.setdefault(r["kind"], {}).setdefault(r["n"], []).append(r["total_s"])
    for kind, runs in by_kind.items():
        times = {n: statistics.median(seconds) for n, seconds in runs.items()}
        sizes = sorted(times)
        for small, big in itertools.pairwise(sizes):
            ratio = times[big] / times[small]
            growth.append(
                f"| {kind} | {small:,} -> {big:,} | {ratio:.2f}x | {big / small:.0f}x | {ratio / (big / small):.2f} |"
            )
    if growth:
        header = "| kind | sizes | time ratio (median total s) | size ratio | vs linear |"
        lines += ["", header, "|---|---|---|---|---|", *growth]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="hash,v256,v4096")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--max-rows", default="v4096=100000", help="kind=N caps, comma separated")
    parser.add_argument("--min-cosine", type=float, default=0.95)
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--partitions", default="16", help="spark.sql.shuffle.partitions")
    parser.add_argument("--out", default=str(REPO / "bench-out" / "scale"))
    parser.add_argument("--append", action="store_true", help="keep the runs already in <out>/results.json")
    parser.add_argument("--report", action="store_true", help="print the table of <out>/results.json, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown(json.loads((Path(args.out) / "results.json").read_text())["runs"]))
        return 0
    caps = dict(item.split("=") for item in args.max_rows.split(",") if item)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spark = build_session(
        dict(DEFAULTS["spark"])
        | {
            "spark.master": "local[2]",
            "spark.app.name": "dedup-scale-bench",
            "spark.ui.enabled": "false",
            "spark.driver.memory": args.driver_memory,
            "spark.sql.shuffle.partitions": args.partitions,
            "spark.local.dir": str(out / "spark-tmp"),
        }
    )
    memory = DriverMemory(spark)
    results: list[dict[str, Any]] = []
    if args.append and (out / "results.json").exists():  # runs of earlier invocations, kept
        results = json.loads((out / "results.json").read_text())["runs"]
    for n in (int(size) for size in args.sizes.split(",")):  # every kind at one size, then the next size
        for kind in args.kinds.split(","):
            if n > int(caps.get(kind, n)):
                print(f"skip {kind} at {n:,} (cap {caps[kind]})", file=sys.stderr, flush=True)
                continue
            table, made_s = _table(spark, kind, n, args)
            run_out = out / "runs" / f"{kind}-{n}"
            memory.reset()
            started = time.perf_counter()
            if kind == "hash":
                result = run_hash(spark, table, n, run_out, args)
            else:
                result = run_vectors(spark, table, n, DIMS[kind], run_out, args)
            result |= {
                "kind": kind,
                "n": n,
                "table_s": round(made_s, 1),
                "total_s": round(sum(result["stages"].values()), 2),
                "with_checks_s": round(time.perf_counter() - started, 1),
                "memory": memory.peaks(),
            }
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            result["meta"] = run_meta()
            (out / "results.json").write_text(json.dumps({"runs": results}, indent=1))
    print(markdown(results))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
