"""Groups: connected components of the duplicate pairs, computed in Spark, with a chaining guard.

Components come from the alternating Large-Star / Small-Star algorithm (Kiveris et al., 2014,
"Connected Components in MapReduce and Beyond"): each round is a few joins and aggregations on
the edge table, O(log^2 n) rounds at most, and nothing is collected on the driver. At
convergence each component is a star around its smallest id.

Chaining guard: near-duplicate edges chain (A~B~C~...~Z) into one giant group. Components
larger than ``groups.max_size`` are split again using only their strict edges (exact, or dHash
distance at most ``groups.strict_max_distance``); what is still too large is flagged
``oversized`` and left out of ``duplicates.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, Window, WindowSpec
from pyspark.sql import functions as F


def _checkpoint(frame: DataFrame) -> DataFrame:
    """Cut the lineage that grows each round (reliably when a checkpoint dir is set)."""
    if frame.sparkSession.sparkContext.getCheckpointDir():
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True)


def _large_star(edges: DataFrame) -> DataFrame:
    both = edges.unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))
    smallest = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    return both.join(smallest, "u").where(F.col("v") > F.col("u")).select(F.col("v").alias("u"), F.col("m").alias("v"))


def _small_star(edges: DataFrame) -> DataFrame:
    down = edges.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v"))
    smallest = down.groupBy("u").agg(F.min("v").alias("m"))
    moved = down.join(smallest, "u").select(F.col("v").alias("u"), F.col("m").alias("v"))
    return moved.unionByName(smallest.select("u", F.col("m").alias("v"))).where(F.col("u") != F.col("v"))


def _normalised(edges: DataFrame) -> DataFrame:
    return edges.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")).distinct()


def connected_components(edges: DataFrame, max_iterations: int = 40) -> DataFrame:
    """(id_a, id_b) edges in; (id, component) out for every id on an edge, component = min id.

    Raises RuntimeError if it has not converged after ``max_iterations`` rounds.
    """
    current = _checkpoint(_normalised(edges.select(F.col("id_a").alias("u"), F.col("id_b").alias("v"))))
    for _ in range(max_iterations):
        nxt = _checkpoint(_normalised(_small_star(_normalised(_large_star(current)))))
        if nxt.exceptAll(current).isEmpty() and current.exceptAll(nxt).isEmpty():
            roots = nxt.select(F.col("v").alias("id")).distinct()
            return nxt.select(F.col("u").alias("id"), F.col("v").alias("component")).unionByName(
                roots.select("id", F.col("id").alias("component"))
            )
        current = nxt
    raise RuntimeError(f"connected components did not converge in {max_iterations} rounds")


@dataclass
class Groups:
    """``members``: id, productId, group_id (smallest productId), group_size, oversized."""

    members: DataFrame
    resplit_components: int


def build_groups(pairs: DataFrame, items: DataFrame, settings: dict[str, Any]) -> Groups:
    """Groups of duplicate products from verified pairs (id_a, id_b, method, distance)."""
    max_size, rounds = int(settings["max_size"]), int(settings["max_iterations"])
    labels = _with_sizes(connected_components(pairs, rounds))
    big = labels.where(F.col("size") > max_size).select("id").persist()
    resplit = labels.where(F.col("size") > max_size).select("component").distinct().count()
    if resplit:
        strict = pairs.where((F.col("method") == "exact") | (F.col("distance") <= int(settings["strict_max_distance"])))
        strict = strict.join(big.withColumnRenamed("id", "id_a"), "id_a").join(
            big.withColumnRenamed("id", "id_b"), "id_b"
        )
        relabelled = connected_components(strict, rounds)
        labels = _with_sizes(labels.where(F.col("size") <= max_size).select("id", "component").unionByName(relabelled))
    big.unpersist()
    named = labels.join(items.select("id", "productId"), "id")
    members = named.withColumn("group_id", F.min("productId").over(_by_component())).select(
        "id",
        "productId",
        "group_id",
        F.col("size").alias("group_size"),
        (F.col("size") > max_size).alias("oversized"),
    )
    return Groups(members=members, resplit_components=resplit)


def _with_sizes(labels: DataFrame) -> DataFrame:
    return labels.withColumn("size", F.count("*").over(_by_component()))


def _by_component() -> WindowSpec:
    return Window.partitionBy("component")
