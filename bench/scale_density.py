"""Scale benchmark at real catalog density: the job's kNN candidates, verification and groups on
synthetic embeddings of 10k-1M products whose pair cosines are distributed as real product photos'.

**Density model** (fitted on the driver from real embeddings, a fixed 9,583 x d table whatever N):
spherical k-means (faiss, ``--clusters``, seeded) over the real embeddings of the shared photos;
a synthetic product picks a cluster by its share of the photos and is the cluster's mean plus a
Gaussian combination of the cluster members' residuals (the cluster's own covariance, scaled by
``--spread``), normalised. Each product is drawn from the same distribution whatever N, so as in
the real photos the share of pairs above any cosine stays put as N grows, and pairs above it grow
as N². The run checks it: at ``--check-n`` products (10k) it computes every pair's cosine and
compares the share at >= 0.6, 0.7, 0.8, 0.9 and 0.95 with the real photos' (each must be within
+-25%; the result is recorded, and the run stops when it fails unless ``--no-check``).

**Planted copies**: each block of 100 ids holds 98 drawn products, a twin of the 98th (the same
vector: a duplicate listing, as the real photos hold 121 byte-identical groups) and an edited copy
of it at a cosine drawn from the cosines real edits produce (``bench/knn_recall.py --out``: the
dev set's original-to-copy pairs, every transform, embedded by the job). The density check is
over the catalog with its twins and without the planted copies (1% of the rows, the test set);
the shares with them are recorded too.

**Pipeline**, timed stage by stage (Spark ``local[2]``): ``candidates``: ``dedup.knn.knn_pairs``
at the job's defaults (``cosine.k``, the backend's floor; ``--nearest``: another
``cosine.nearest``), pairs written to Parquet; ``verify``:
the exact cosine of every candidate (both vectors joined, ``cosine.verify_cosine``) written to
Parquet, plus the photo check priced by a measured cost model (``--describe-ms`` per product in a
pair, ``--pair-ms`` per candidate pair: CPU ms from ``bench/photo_cost.py`` on the dev set, over
``--cores``), reported apart; ``groups``: ``groups.build_groups`` over the planted copies found
(the photo check's decision on synthetic vectors, which have no pixels). Reported: candidates per
product (2 x pairs / N), candidate recall of the planted copies, top-k recall against exact kNN on
``--queries`` products (a full scan in Spark), seconds per stage, driver memory.

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/scale_density.py \\
        --real-features bench-out/dev/job/default/features --truth bench-out/dev/set/truth.csv \\
        --copy-cosines bench-out/knn-recall-all.json --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dedup import cosine, groups, knn
from dedup.config import DEFAULTS
from dedup.devkit.benchrun import DriverMemory, run_meta, timed
from dedup.devkit.benchset import read_truth
from dedup.embed import CANDIDATE_COSINE
from dedup.session import build_session
from dedup.settings import default_table
from dedup.vectors import normalise, stack, to_bytes

REPO = Path(__file__).resolve().parent.parent

BLOCK = 100  # ids per block: 98 drawn, then a twin of the 98th (a duplicate listing), then a planted copy of it
THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95)


def pair_shares(vectors: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS, block: int = 2048) -> dict[str, float]:
    """Share of all n(n-1)/2 pairs at or above each cosine (exact, blockwise)."""
    n, counts = len(vectors), np.zeros(len(thresholds))
    for start in range(0, n, block):
        sims = vectors[start : start + block] @ vectors.T
        upper = sims[np.arange(len(sims))[:, None] + start < np.arange(n)[None, :]]
        counts += [(upper >= t).sum() for t in thresholds]
    return {str(t): float(c / (n * (n - 1) / 2)) for t, c in zip(thresholds, counts, strict=True)}


def real_vectors(features: Path, truth: Path) -> np.ndarray:
    """The embeddings of the photos themselves (originals and their byte-identical twins) from a
    job output's ``features/`` over a bench set."""
    kinds = {t["productId"]: t["transform"] for t in read_truth(truth)}
    rows = pq.read_table(features, columns=["productId", "embedding"]).to_pylist()
    blobs = [r["embedding"] for r in rows if r["embedding"] and kinds.get(r["productId"]) in ("original", "exact_real")]
    return normalise(stack(blobs, len(blobs[0]) // 2))


def fit_model(real: np.ndarray, clusters: int, seed: int) -> dict[str, np.ndarray]:
    """Cluster means, member residuals (grouped by cluster) and cluster shares of ``real``."""
    centroids = knn.train_centroids(real, clusters, seed)
    labels = knn.nearest_cells(real, centroids, 1)[:, 0]
    order = np.argsort(labels, kind="stable")
    labels, members = labels[order], real[order]
    counts = np.bincount(labels, minlength=len(centroids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.stack(
        [members[s : s + c].mean(0) if c else np.zeros(real.shape[1]) for s, c in zip(starts, counts, strict=True)]
    )
    residuals = members - means[labels]
    return {"means": means.astype(np.float32), "residuals": residuals.astype(np.float32),
            "starts": starts, "counts": counts, "shares": counts / counts.sum()}  # fmt: skip


def block_vectors(block: int, seed: int, model: dict[str, np.ndarray], copies: np.ndarray, spread: float,
                  ) -> tuple[np.ndarray, float]:  # fmt: skip
    """The ``BLOCK`` unit vectors of one block and the planted copy's cosine: ``BLOCK - 2`` drawn
    from the model, a twin of the last drawn (the same vector: a duplicate listing of one photo,
    as the real photos hold 121 byte-identical groups), and an edited copy of it."""
    rng = np.random.default_rng([seed, block])
    dim = model["means"].shape[1]
    chosen = rng.choice(len(model["shares"]), BLOCK - 2, p=model["shares"])
    out = np.empty((BLOCK, dim), np.float32)
    for row, c in enumerate(chosen):
        start, count = int(model["starts"][c]), int(model["counts"][c])
        weights = rng.standard_normal(count).astype(np.float32) / math.sqrt(max(1, count - 1))
        out[row] = model["means"][c] + spread * (weights @ model["residuals"][start : start + count])
    out[: BLOCK - 2] = normalise(out[: BLOCK - 2])
    base, c = out[BLOCK - 3], float(rng.choice(copies))
    out[BLOCK - 2] = base
    side = rng.standard_normal(dim).astype(np.float32)
    side -= (side @ base) * base
    out[BLOCK - 1] = c * base + math.sqrt(max(0.0, 1 - c * c)) * side / np.linalg.norm(side)
    return out, c


def synthetic_table(spark: SparkSession, n: int, seed: int, model: dict[str, np.ndarray], copies: np.ndarray,
                    spread: float) -> DataFrame:  # fmt: skip
    """(id, embedding float16, planted_cosine) for ``n`` ids (a multiple of ``BLOCK``), made in the tasks."""
    shipped = spark.sparkContext.broadcast((model, copies))

    def make(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        fitted, drawn = shipped.value
        for frame in batches:
            ids, blobs, planted = [], [], []
            for block in frame["id"].to_numpy(np.int64):
                vectors, c = block_vectors(int(block), seed, fitted, drawn, spread)
                ids.extend(range(block * BLOCK, (block + 1) * BLOCK))
                blobs.extend(to_bytes(v, "float16") for v in vectors)
                planted.extend([None] * (BLOCK - 1) + [c])
            yield pd.DataFrame({"id": ids, "embedding": blobs, "planted_cosine": planted})

    blocks = spark.range(0, n // BLOCK, numPartitions=max(2, n // 25_000))
    return blocks.mapInPandas(make, "id long, embedding binary, planted_cosine double")


def exact_top_k(items: DataFrame, queries: np.ndarray, query_ids: np.ndarray, dim: int, k: int) -> dict[int, set[int]]:
    """Each query's exact top-k (itself left out) over every row: per-partition top-k in Spark,
    merged on the driver (queries x k x partitions rows)."""

    def scan(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            vectors = knn.unit_rows(frame["embedding"], dim)
            ids = frame["id"].to_numpy(np.int64)
            sims = queries @ vectors.T
            sims[query_ids[:, None] == ids[None, :]] = -2
            take = min(k, len(ids))
            best = np.argpartition(-sims, take - 1, axis=1)[:, :take]
            yield pd.DataFrame({"query": np.repeat(query_ids, take), "id": ids[best].ravel(),
                                "cosine": np.take_along_axis(sims, best, 1).ravel()})  # fmt: skip

    rows = items.select("id", "embedding").mapInPandas(scan, "query long, id long, cosine float").collect()
    merged: dict[int, list[tuple[float, int]]] = {}
    for r in rows:
        merged.setdefault(r["query"], []).append((r["cosine"], r["id"]))
    return {q: {i for _, i in sorted(v, reverse=True)[:k]} for q, v in merged.items()}


def run_size(spark: SparkSession, n: int, args: argparse.Namespace, model: dict[str, np.ndarray], copies: np.ndarray,
             memory: DriverMemory) -> dict[str, Any]:  # fmt: skip
    out = Path(args.out)
    path = out / "tables" / f"n{n}"
    if not (path / "_SUCCESS").exists():
        synthetic_table(spark, n, args.seed, model, copies, args.spread).write.mode("overwrite").parquet(str(path))
    table = spark.read.parquet(str(path))
    dim = int(model["means"].shape[1])
    changes = {} if args.nearest is None else {"nearest": args.nearest}
    settings, floor = default_table("cosine", **changes), CANDIDATE_COSINE["sscd_distilled"]
    run = out / "runs" / f"n{n}"
    memory.reset()
    stages: dict[str, float] = {}
    items = table.select("id", "embedding")
    found = knn.knn_pairs(items, settings, dim, n, floor)
    timed(stages, "candidates", lambda: found.pairs.write.mode("overwrite").parquet(str(run / "candidates")))
    cands = spark.read.parquet(str(run / "candidates"))
    verified = cosine.verify_cosine(cands.select("id_a", "id_b"), items, dim, floor)
    timed(stages, "verify_cosine", lambda: verified.write.mode("overwrite").parquet(str(run / "scored")))
    planted = table.where(F.col("planted_cosine").isNotNull()).select(
        (F.col("id") - 2).alias("id_a"), F.col("id").alias("id_b"), "planted_cosine"
    )
    kept = cands.join(planted, ["id_a", "id_b"])  # the synthetic decision: the planted copies
    edges = kept.select("id_a", "id_b", F.lit("photo").alias("method"), F.lit(None).cast("int").alias("distance"))
    named = table.select("id", F.concat(F.lit("p"), F.col("id").cast("string")).alias("productId"))
    built = groups.build_groups(edges, named, default_table("groups"))
    timed(stages, "groups", lambda: built.members.write.mode("overwrite").parquet(str(run / "groups")))
    peaks = memory.peaks()
    n_pairs = cands.count()
    in_pairs = cands.select(F.col("id_a").alias("id")).union(cands.select(F.col("id_b").alias("id"))).distinct().count()
    photo_s = (args.describe_ms * in_pairs + args.pair_ms * n_pairs) / 1000 / args.cores
    n_planted, n_found = planted.count(), kept.count()
    missed = planted.join(kept.select("id_a", "id_b"), ["id_a", "id_b"], "left_anti")
    missed_cosines = [r["planted_cosine"] for r in missed.orderBy("planted_cosine").limit(50).collect()]
    rng = np.random.default_rng(args.seed)
    picks = np.unique(rng.integers(0, n, args.queries))
    query_rows = table.where(F.col("id").isin(picks.tolist())).select("id", "embedding").collect()
    query_ids = np.array([r["id"] for r in query_rows], np.int64)
    queries = knn.unit_rows(pd.Series([r["embedding"] for r in query_rows]), dim)
    k = settings.k
    exact = exact_top_k(items, queries, query_ids, dim, k)
    best = found.neighbours.where(F.col("id").isin(query_ids.tolist())).toPandas()
    best = best.drop_duplicates(["id", "nbr"]).sort_values("cosine", ascending=False).groupby("id").head(k)
    approx = best.groupby("id")["nbr"].apply(set).to_dict()
    hits = sum(len(exact[q] & approx.get(q, set())) for q in exact)
    summary = found.summary()
    found.release()
    return {
        "n": n, "stages": stages, "photo_check_model_s": round(photo_s, 1),
        "total_s": round(sum(stages.values()) + photo_s, 1), "pairs": n_pairs,
        "candidates_per_product": 2 * n_pairs / n, "products_in_pairs": in_pairs,
        "planted": n_planted, "planted_found": n_found, "planted_recall": n_found / max(1, n_planted),
        "missed_planted_cosines": missed_cosines, "topk_recall_vs_exact": hits / max(1, k * len(exact)),
        "queries": len(exact), "knn": summary, "memory": peaks,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-features", type=Path, required=True, help="a job output's features/ over a bench set")
    parser.add_argument("--truth", type=Path, required=True, help="that bench set's truth.csv")
    parser.add_argument("--copy-cosines", type=Path, required=True, help="bench/knn_recall.py --out JSON")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--clusters", type=int, default=512)
    parser.add_argument("--spread", type=float, default=1.03)
    parser.add_argument("--check-n", type=int, default=10_000)
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--describe-ms", type=float, required=True, help="photo check CPU ms per image described")
    parser.add_argument("--pair-ms", type=float, required=True, help="photo check CPU ms per candidate pair")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--nearest", type=int, help="cosine.nearest (default: the job's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--partitions", default="16")
    parser.add_argument("--out", default=str(REPO / "bench-out" / "scale-density"))
    parser.add_argument("--report", action="store_true", help="print <out>/results.json's table, run nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.report:
        print(markdown(json.loads((out / "results.json").read_text()), args))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    real = real_vectors(args.real_features, args.truth)
    copies = np.array([c for v in json.loads(args.copy_cosines.read_text())["copy_cosines"].values() for c in v])
    model = fit_model(real, args.clusters, args.seed)
    results: dict[str, Any] = {"meta": run_meta(), "real_photos": len(real), "copy_cosines": len(copies),
                               "real_shares": pair_shares(real), "runs": []}  # fmt: skip
    spark = build_session(dict(DEFAULTS["spark"]) | {
        "spark.master": "local[2]", "spark.app.name": "dedup-scale-density", "spark.ui.enabled": "false",
        "spark.driver.memory": args.driver_memory, "spark.sql.shuffle.partitions": args.partitions,
        "spark.local.dir": str(out / "spark-tmp")})  # fmt: skip
    try:
        check = synthetic_table(spark, args.check_n, args.seed, model, copies, args.spread).toPandas()
        results["density_check_with_planted_copies"] = pair_shares(knn.unit_rows(check["embedding"], real.shape[1]))
        check = check[check["planted_cosine"].isna()]  # the catalog; its planted copies are the test set
        synthetic = pair_shares(knn.unit_rows(check["embedding"], real.shape[1]))
        ratios = {t: synthetic[t] / results["real_shares"][t] for t in synthetic}
        results["density_check"] = {"n": args.check_n, "synthetic_shares": synthetic, "ratio_to_real": ratios,
                                    "within_25pct": all(0.75 <= r <= 1.25 for r in ratios.values())}  # fmt: skip
        print(json.dumps(results["density_check"]), file=sys.stderr, flush=True)
        if not results["density_check"]["within_25pct"] and not args.no_check:
            (out / "results.json").write_text(json.dumps(results, indent=1))
            print("density check failed: the synthetic shares are not within 25% of the real ones", file=sys.stderr)
            return 1
        memory = DriverMemory(spark)
        for n in (int(s) for s in args.sizes.split(",")):
            started = time.perf_counter()
            result = run_size(spark, n, args, model, copies, memory)
            result["with_checks_s"] = round(time.perf_counter() - started, 1)
            results["runs"].append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        spark.stop()
    print(markdown(results, args))
    return 0


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The runs as a table; the photo check priced by ``args``' cost model."""
    lines = ["| N | candidates per product | planted recall | top-k recall vs exact | candidates s | verify cosine s "
             "| photo check s (model) | groups s | total s | JVM heap peak MB | driver Python RSS MB | largest cell |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results["runs"]:
        s = r["stages"]
        photo = (args.describe_ms * r["products_in_pairs"] + args.pair_ms * r["pairs"]) / 1000 / args.cores
        r = {**r, "photo_check_model_s": round(photo, 1), "total_s": round(sum(s.values()) + photo, 1)}
        lines.append(f"| {r['n']:,} | {r['candidates_per_product']:.2f} | {r['planted_recall']:.4f} "
                     f"({r['planted_found']:,}/{r['planted']:,}) | {r['topk_recall_vs_exact']:.4f} | "
                     f"{s['candidates']} | {s['verify_cosine']} | {r['photo_check_model_s']} | {s['groups']} | "
                     f"{r['total_s']} | {r['memory']['jvm_heap_peak_mb']} | {r['memory']['python_rss_peak_mb']} | "
                     f"{r['knn']['largest_cell']:,} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
