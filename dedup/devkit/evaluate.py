"""``dedup eval``: a job output's figures against a bench set's truth, in Spark.

Pairwise precision and recall over the emitted pairs and over the pairs the groups imply, look-alike
false pairs, recall per edit kind and per parameter range, and sweeps of the hash rule and the
cosine, as :mod:`dedup.devkit.metrics` defines them (the same module the bench scripts use).
Nothing is O(N^2): the pairs the groups imply are counted from group-overlap sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup import candidates, verify
from dedup.devkit.metrics import ORIGINAL_TRANSFORMS, scores_from_counts
from dedup.outputs import path_exists
from dedup.rule import Rule
from dedup.settings import ExactSettings, HashSettings, typed

TRUTH_COLUMNS = ("productId", "group", "transform", "source", "split", "image", "params", "ranges")
TRUTH_SCHEMA = T.StructType([T.StructField(name, T.StringType()) for name in TRUTH_COLUMNS])  # v1 files: 6 columns


COSINE_GRID = tuple(round(0.5 + 0.02 * i, 2) for i in range(25))  # min_cosine thresholds swept: 0.50..0.98
THUMB_GRID = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 2.0)  # thumbnail-distance thresholds swept


def load_truth(spark: SparkSession, path: str, split: str | None = None) -> DataFrame:
    """truth.csv as productId, group (null for singletons), transform, kind (the transform before
    ``:``), source, split, ranges (an array of parameter-range labels, empty for a v1 file); only
    ``split``'s rows when given."""
    truth = spark.read.csv(path, header=True, schema=TRUTH_SCHEMA, escape='"')  # params: JSON in a quoted field
    if split:
        truth = truth.where(F.col("split") == split)
    return truth.select(
        "productId",
        F.when(F.col("group") != "", F.col("group")).alias("group"),
        "transform",
        F.split("transform", ":").getItem(0).alias("kind"),
        "source",
        "split",
        F.when(F.coalesce(F.col("ranges"), F.lit("")) == "", F.array().cast("array<string>"))
        .otherwise(F.split("ranges", ";"))
        .alias("ranges"),
    )


def _c2(column: Column | str) -> Column:
    n = F.col(column) if isinstance(column, str) else column
    return n * (n - 1) / 2


def _true_pairs(truth: DataFrame) -> int:
    sizes = truth.where(F.col("group").isNotNull()).groupBy("group").count()
    return int(sizes.agg(F.sum(_c2("count"))).first()[0] or 0)


def _labelled(pairs: DataFrame, truth: DataFrame) -> DataFrame:
    """Pairs (a, b, ...) whose both ends are in ``truth``, with ``same`` (a true pair) and ``lookalike``
    (two originals of different photos)."""
    ta = truth.select(
        F.col("productId").alias("a"),
        F.col("group").alias("ga"),
        F.col("kind").alias("ka"),
        F.col("source").alias("sa"),
    )
    tb = truth.select(
        F.col("productId").alias("b"),
        F.col("group").alias("gb"),
        F.col("kind").alias("kb"),
        F.col("source").alias("sb"),
    )
    both_originals = F.col("ka").isin(*ORIGINAL_TRANSFORMS) & F.col("kb").isin(*ORIGINAL_TRANSFORMS)
    return (
        pairs.join(ta, "a")
        .join(tb, "b")
        .withColumn("same", F.coalesce(F.col("ga") == F.col("gb"), F.lit(False)))
        .withColumn("lookalike", ~F.col("same") & both_originals & (F.col("sa") != F.col("sb")))
    )


def emitted_pair_scores(pairs: DataFrame, truth: DataFrame) -> dict[str, float]:
    """Pairwise scores over the pairs the job emitted (``pairs/``: a, b, ...)."""
    labelled = _labelled(pairs.select("a", "b"), truth)
    row = labelled.agg(
        F.count("*").alias("n"),
        F.sum(F.col("same").cast("long")).alias("tp"),
        F.sum(F.col("lookalike").cast("long")).alias("lookalike"),
    ).first()
    scores = scores_from_counts(int(row["tp"] or 0), int(row["n"]), _true_pairs(truth))
    scores["lookalike_false_pairs"] = int(row["lookalike"] or 0)
    return scores


def group_pair_scores(members: DataFrame, truth: DataFrame) -> dict[str, float]:
    """Pairwise scores over every pair implied by the groups (``groups/``; oversized groups are left
    out, as in duplicates.json): counted from group overlaps, never by listing pairs."""
    grouped = members.where(~F.col("oversized")).select("productId", "group_id").join(truth, "productId")
    predicted = grouped.groupBy("group_id").count().agg(F.sum(_c2("count"))).first()[0] or 0
    overlap = grouped.where(F.col("group").isNotNull()).groupBy("group_id", "group").count()
    true_positive = overlap.agg(F.sum(_c2("count"))).first()[0] or 0
    originals = grouped.where(F.col("kind").isin(*ORIGINAL_TRANSFORMS))
    all_originals = originals.groupBy("group_id").count().agg(F.sum(_c2("count"))).first()[0] or 0
    same_source = originals.groupBy("group_id", "source").count().agg(F.sum(_c2("count"))).first()[0] or 0
    scores = scores_from_counts(int(true_positive), int(predicted), _true_pairs(truth))
    scores["lookalike_false_pairs"] = int(all_originals - same_source)
    return scores


def _ordered(pairs: DataFrame, flag: str) -> DataFrame:
    """Distinct (a, b) of ``pairs`` with a < b, and a true column ``flag``."""
    return (
        pairs.select(F.least("a", "b").alias("a"), F.greatest("a", "b").alias("b"))
        .distinct()
        .withColumn(flag, F.lit(True))
    )


def copy_outcomes(
    members: DataFrame, pairs: DataFrame, truth: DataFrame, candidates: DataFrame | None = None
) -> DataFrame:
    """One row per edited copy (kind, ranges): ``grouped`` (in its original's group), ``emitted``
    (emitted as a pair with it) and, with the job's ``candidates/``, ``candidate`` (a candidate pair
    with it) and ``checked`` (photo-checked against it)."""
    copies = truth.where(F.col("group").isNotNull() & (F.col("kind") != "original"))
    originals = truth.where(F.col("kind") == "original").select("group", F.col("productId").alias("original"))
    labels = members.where(~F.col("oversized")).select("productId", "group_id")
    joined = (
        copies.join(originals, "group")
        .join(labels, "productId", "left")
        .join(
            labels.select(F.col("productId").alias("original"), F.col("group_id").alias("original_group")),
            "original",
            "left",
        )
        .withColumn("a", F.least("productId", "original"))
        .withColumn("b", F.greatest("productId", "original"))
        .join(_ordered(pairs, "emitted"), ["a", "b"], "left")
        .withColumn("grouped", F.coalesce(F.col("group_id") == F.col("original_group"), F.lit(False)))
        .withColumn("emitted", F.coalesce(F.col("emitted"), F.lit(False)))
    )
    if candidates is None:
        return joined.withColumn("candidate", F.lit(None).cast("boolean")).withColumn(
            "checked", F.lit(None).cast("boolean")
        )
    checked = _ordered(candidates.where(F.col("photo").isNotNull()), "checked")
    return (
        joined.join(_ordered(candidates, "candidate"), ["a", "b"], "left")
        .join(checked, ["a", "b"], "left")
        .withColumn("candidate", F.coalesce(F.col("candidate"), F.lit(False)))
        .withColumn("checked", F.coalesce(F.col("checked"), F.lit(False)))
    )


def _recall_rows(outcomes: DataFrame, by: Column | str) -> dict[str, dict[str, float]]:
    """copies, group_recall, pair_recall (and candidate_recall, checked_share when known) per ``by``."""
    rows = (
        outcomes.groupBy(F.col(by).alias("key") if isinstance(by, str) else by.alias("key"))
        .agg(
            F.count("*").alias("copies"),
            F.sum(F.col("grouped").cast("long")).alias("g"),
            F.sum(F.col("emitted").cast("long")).alias("p"),
            F.sum(F.col("candidate").cast("long")).alias("c"),
            F.sum(F.col("checked").cast("long")).alias("k"),
        )
        .collect()
    )
    report = {}
    for r in sorted(rows, key=lambda r: r["key"]):
        entry = {"copies": r["copies"], "group_recall": r["g"] / r["copies"], "pair_recall": r["p"] / r["copies"]}
        if r["c"] is not None:
            entry.update(candidate_recall=r["c"] / r["copies"], checked_share=r["k"] / r["copies"])
        report[r["key"]] = entry
    return report


def recall_by_transform(
    members: DataFrame, pairs: DataFrame, truth: DataFrame, candidates: DataFrame | None = None
) -> dict[str, dict[str, float]]:
    """For each transform kind: how many copies share a group with their original (``group_recall``)
    and how many were emitted as a pair with it (``pair_recall``); with ``candidates``, how many
    were a candidate pair with it (``candidate_recall``) and photo-checked (``checked_share``)."""
    return _recall_rows(copy_outcomes(members, pairs, truth, candidates), "kind")


def recall_by_range(
    members: DataFrame, pairs: DataFrame, truth: DataFrame, candidates: DataFrame | None = None
) -> dict[str, dict[str, float]]:
    """:func:`recall_by_transform` per parameter-range label (truth's ``ranges``: ``kind/param:range``;
    a stack counts under each of its steps' labels too); empty for a truth file without ranges."""
    outcomes = copy_outcomes(members, pairs, truth, candidates).withColumn("label", F.explode("ranges"))
    return _recall_rows(outcomes, "label")


def threshold_sweep(
    features: DataFrame,
    truth: DataFrame,
    hash_settings: HashSettings,
    exact_settings: ExactSettings,
    rule: Rule,
    max_distance: int = 10,
) -> list[dict[str, float]]:
    """Pairwise precision and recall of the rule "exact bytes, or dHash distance <= t and thumbnail
    distance <= d" for t = 0..``max_distance`` and d in :data:`THUMB_GRID`, from one candidate pass
    at the loosest t (the job's own banding and verification, so it counts what the job would emit):
    ``rule``, the run's hash rule (:class:`dedup.rule.Rule` without embeddings), at its loosest.
    """
    items = (
        features.where(F.col("feature_status") == "ok")
        .join(truth.select("productId"), "productId")
        .select(
            F.col("productId").alias("id"),
            "productId",
            F.array().cast("array<string>").alias("family"),
            "sha256",
            "dhash",
            "dhash_flip",
            "thumb",
        )
    ).cache()
    n_items = items.count()
    near = candidates.near_pairs(items, dataclasses.replace(hash_settings, max_distance=max_distance), n_items)
    found = candidates.exact_pairs(items, exact_settings).unionByName(near.pairs)
    loosest = dataclasses.replace(
        rule, near_distance=max_distance, max_distance=max_distance, max_thumb_distance=99.0, exclude_same_family=False
    )
    scored = verify.kept_pairs(verify.score_pairs(found, items, loosest), loosest).pairs
    grid = F.lit(None)
    for limit in reversed(THUMB_GRID):
        grid = F.when(F.col("thumb_distance") <= limit, F.lit(limit)).otherwise(grid)
    counts = (
        _labelled(scored.select("a", "b", "distance", "thumb_distance"), truth)
        .withColumn("thumb_bin", grid)
        .where(F.col("thumb_bin").isNotNull())
        .groupBy("distance", "thumb_bin")
        .agg(F.count("*").alias("n"), F.sum(F.col("same").cast("long")).alias("tp"))
        .collect()
    )
    items.unpersist()
    true_pairs = _true_pairs(truth)
    curve = []
    for t in range(max_distance + 1):
        for limit in THUMB_GRID:
            kept = [r for r in counts if r["distance"] <= t and r["thumb_bin"] <= limit]
            scores = scores_from_counts(sum(r["tp"] for r in kept), sum(r["n"] for r in kept), true_pairs)
            curve.append({"max_distance": t, "max_thumb_distance": limit, **scores})
    return curve


def cosine_sweep(scored: DataFrame, truth: DataFrame) -> list[dict[str, float]]:
    """Pairwise precision and recall of "cosine >= c" alone for c in :data:`COSINE_GRID`, over the
    job's scored candidates (``candidates/``: every pair the LSH or the hashes proposed, with its
    cosine), so it counts what the job would emit at each threshold."""
    grid = F.lit(None)
    for limit in COSINE_GRID:
        grid = F.when(F.col("cosine") >= limit, F.lit(limit)).otherwise(grid)
    counts = (
        _labelled(scored.where(F.col("cosine").isNotNull()).select("a", "b", "cosine"), truth)
        .withColumn("cosine_bin", grid)
        .where(F.col("cosine_bin").isNotNull())
        .groupBy("cosine_bin")
        .agg(F.count("*").alias("n"), F.sum(F.col("same").cast("long")).alias("tp"))
        .collect()
    )
    true_pairs = _true_pairs(truth)
    curve = []
    for limit in COSINE_GRID:
        kept = [r for r in counts if r["cosine_bin"] >= limit]
        curve.append(
            {
                "min_cosine": limit,
                **scores_from_counts(sum(r["tp"] for r in kept), sum(r["n"] for r in kept), true_pairs),
            }
        )
    return curve


def best_at_precision(curve: list[dict[str, float]], min_precision: float) -> dict[str, float] | None:
    """The sweep point with the highest recall at ``min_precision`` or better (ties: stricter rule)."""
    eligible = [p for p in curve if p["precision"] >= min_precision and p["predicted_pairs"]]
    strictness = ("max_distance", "max_thumb_distance")
    return max(
        eligible,
        key=lambda p: (p["recall"], *(-p[k] for k in strictness if k in p), p.get("min_cosine", 0)),
        default=None,
    )


def evaluate_output(
    spark: SparkSession,
    out: str,
    truth_path: str,
    cfg: Mapping[str, Any],
    split: str | None = None,
    sweep_max: int = 10,
    min_precision: float = 0.99,
) -> dict[str, Any]:
    """Every figure of ``dedup eval`` for the job output in ``out`` against ``truth_path``; ``cfg``
    (a merged config: ``dedup eval``'s entry) gives the hash rule that is swept."""
    settings = typed(cfg)
    hash_rule = Rule.of(settings, dim=0)
    truth = load_truth(spark, truth_path, split).cache()
    members = spark.read.parquet(f"{out}/groups")
    pairs = spark.read.parquet(f"{out}/pairs")
    scored_path = f"{out}/candidates"
    scored = spark.read.parquet(scored_path) if path_exists(spark, scored_path) else None
    features = spark.read.parquet(f"{out}/features")
    curve = threshold_sweep(features, truth, settings.hash, settings.exact, hash_rule, sweep_max)
    report = {
        "split": split or "all",
        "listings": truth.count(),
        "emitted_pairs": emitted_pair_scores(pairs, truth),
        "group_pairs": group_pair_scores(members, truth),
        "recall_by_transform": recall_by_transform(members, pairs, truth, scored),
        "recall_by_range": recall_by_range(members, pairs, truth, scored),
        "sweep": {"signal": "dhash+thumb", "points": curve},
        "best_at_precision": {"min_precision": min_precision, "point": best_at_precision(curve, min_precision)},
    }
    if scored is not None:
        cosines = cosine_sweep(scored, truth)
        if any(p["predicted_pairs"] for p in cosines):
            report["cosine_sweep"] = {"signal": "cosine", "points": cosines}
            report["cosine_best_at_precision"] = best_at_precision(cosines, min_precision)
    truth.unpersist()
    return report


def recall_table(recalls: dict[str, dict[str, float]], title: str) -> list[str]:
    """Markdown rows of :func:`recall_by_transform` or :func:`recall_by_range` figures, with the
    number of copies (copy-to-original pairs) behind each.

    >>> print("\\n".join(recall_table({"blur": {"copies": 4, "group_recall": 0.75, "pair_recall": 0.5}}, "kind")))
    | kind | copies | group recall | pair recall | candidate recall | photo-checked |
    |---|---:|---:|---:|---:|---:|
    | blur | 4 | 0.750 | 0.500 | - | - |
    """
    lines = [f"| {title} | copies | group recall | pair recall | candidate recall | photo-checked |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in recalls.items():
        known = "candidate_recall" in r
        candidate = f"{r['candidate_recall']:.3f}" if known else "-"
        checked = f"{r['checked_share']:.3f}" if known else "-"
        lines.append(f"| {name} | {r['copies']} | {r['group_recall']:.3f} | {r['pair_recall']:.3f} | "
                     f"{candidate} | {checked} |")  # fmt: skip
    return lines


def report_table(report: dict[str, Any]) -> str:
    """The short markdown table of an evaluation report."""
    lines = [
        f"split: {report['split']}, listings: {report['listings']}",
        "",
        "| scored over | precision | recall | F1 | predicted pairs | true pairs | look-alike false pairs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("emitted_pairs", "emitted pairs"), ("group_pairs", "pairs implied by groups")):
        s = report[key]
        lines.append(
            f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
            f"{s['predicted_pairs']:,} | {s['true_pairs']:,} | {s['lookalike_false_pairs']:,} |"
        )
    for key, title in (("recall_by_transform", "edit kind"), ("recall_by_range", "edit / parameter range")):
        if report.get(key):
            lines += ["", *recall_table(report[key], title)]
    best_cosine = report.get("cosine_best_at_precision")
    if best_cosine:
        lines += [
            "",
            f"best cosine threshold at precision >= {report['best_at_precision']['min_precision']}: "
            f"min_cosine={best_cosine['min_cosine']} (pairwise precision {best_cosine['precision']:.3f}, "
            f"recall {best_cosine['recall']:.3f})",
        ]
    best = report["best_at_precision"]["point"]
    if best:
        lines += [
            "",
            f"best dHash+thumb rule at precision >= {report['best_at_precision']['min_precision']}: "
            f"max_distance={best['max_distance']}, max_thumb_distance={best['max_thumb_distance']} "
            f"(pairwise precision {best['precision']:.3f}, recall {best['recall']:.3f})",
        ]
    return "\n".join(lines) + "\n"
