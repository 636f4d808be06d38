"""Verify: decide each candidate pair from both products' features, and name the signal.

A pair is a duplicate when its images are byte-identical (method ``exact``); or when its dHashes
(or one image's and the other's mirrored dHash) differ in at most ``hash.max_distance`` bits and
their 12x12 colour thumbnails agree: ``thumb_distance`` (1 - correlation) at most
``verify.max_thumb_distance`` (method ``dhash``); or, with embeddings, when their exact cosine is
at least the backend's ``min_cosine`` (method ``cosine``). Every candidate keeps every signal
(``scored``), so users can re-threshold without re-running. The thumbnail check is where the precision
comes from: on white-background product photos, different products of one cut share dHashes
(measured: docs/BENCHMARKS.md). Pairs of products in the same productFamily (size or colour variants of one
product) are not duplicates when ``verify.exclude_same_family`` is on: they are counted, not
kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup.imaging import thumb_distances


@F.pandas_udf(T.DoubleType())
def thumb_distance_udf(a: pd.Series, b: pd.Series) -> pd.Series:
    """:func:`dedup.imaging.thumb_distances` over an Arrow batch of thumbnail pairs."""
    return pd.Series(thumb_distances(list(a), list(b)), index=a.index)


PAIR_COLUMNS = ("a", "b", "method", "distance", "flipped", "thumb_distance", "cosine")  # pairs/


@dataclass
class Verified:
    """Duplicate pairs (``id_a``, ``id_b``, ``a``, ``b``, ``method``, ``distance``, ``flipped``,
    ``thumb_distance``, ``cosine``), the pairs dropped as same-family variants, and every
    candidate with its signals and the decision (``duplicate``, ``same_family``)."""

    pairs: DataFrame
    family_excluded: DataFrame
    scored: DataFrame


def same_family(a: str, b: str) -> Column:
    """True when products ``a`` and ``b`` (aliases of item rows) are variants of one product:
    one lists the other in productFamily, or both list a common member."""
    fam_a = F.array_union(F.col(f"{a}.family"), F.array(F.col(f"{a}.productId")))
    fam_b = F.array_union(F.col(f"{b}.family"), F.array(F.col(f"{b}.productId")))
    return F.coalesce(F.arrays_overlap(fam_a, fam_b), F.lit(False))


def hash_signals(a: str, b: str, match_flips: bool) -> list[Column]:
    """``method``, ``distance`` and ``flipped`` of a pair of feature rows aliased ``a`` and ``b``
    (each with sha256, dhash, dhash_flip): the signals the rule decides on."""
    direct = F.bit_count(F.col(f"{a}.dhash").bitwiseXOR(F.col(f"{b}.dhash")))
    mirrored = F.least(
        F.bit_count(F.col(f"{a}.dhash_flip").bitwiseXOR(F.col(f"{b}.dhash"))),
        F.bit_count(F.col(f"{a}.dhash").bitwiseXOR(F.col(f"{b}.dhash_flip"))),
    )
    if not match_flips:
        mirrored = F.lit(64)
    exact = F.col(f"{a}.sha256") == F.col(f"{b}.sha256")
    return [
        F.when(exact, "exact").otherwise("dhash").alias("method"),
        F.when(exact, 0).otherwise(F.least(direct, mirrored)).alias("distance"),
        (~exact & (mirrored < direct)).alias("flipped"),
    ]


def apply_rule(scored: DataFrame, hash_settings: dict[str, Any], verify_settings: dict[str, Any]) -> DataFrame:
    """The duplicates among ``scored`` pairs (``method``, ``distance``, ``thumb_a``, ``thumb_b`` and
    any other columns): exact, or dHash within ``hash.max_distance`` with thumbnails within
    ``verify.max_thumb_distance``. Adds ``thumb_distance`` (computed for near pairs only) and
    drops the thumbnails."""
    near = (F.col("method") == "dhash") & (F.col("distance") <= int(hash_settings["max_distance"]))
    scored = (
        scored.where((F.col("method") == "exact") | near)
        .withColumn(
            "thumb_distance",
            F.when(F.col("method") == "exact", F.lit(0.0)).otherwise(thumb_distance_udf("thumb_a", "thumb_b")),
        )
        .drop("thumb_a", "thumb_b")
    )
    return scored.where(
        (F.col("method") == "exact") | (F.col("thumb_distance") <= float(verify_settings["max_thumb_distance"]))
    )


def verify_pairs(
    candidates: DataFrame,
    items: DataFrame,
    hash_settings: dict[str, Any],
    verify_settings: dict[str, Any],
    cosine_settings: dict[str, Any] | None = None,
) -> Verified:
    """Candidates (id_a, id_b) and items (id, productId, family, sha256, dhash, dhash_flip, thumb
    and, with ``cosine_settings`` = {"dim", "min_cosine"}, embedding) in."""
    a, b = items.alias("a"), items.alias("b")
    joined = candidates.select("id_a", "id_b").distinct()
    joined = joined.join(a, F.col("id_a") == F.col("a.id")).join(b, F.col("id_b") == F.col("b.id"))
    cosine = F.lit(None).cast("double")
    if cosine_settings:
        from dedup.cosine import cosine_udf

        cosine = cosine_udf(int(cosine_settings["dim"]))(F.col("a.embedding"), F.col("b.embedding"))
    scored = joined.select(
        "id_a", "id_b",
        F.col("a.productId").alias("a"), F.col("b.productId").alias("b"),
        *hash_signals("a", "b", bool(hash_settings["match_flips"])),
        F.when(F.col("a.sha256") == F.col("b.sha256"), F.lit(0.0))
        .otherwise(thumb_distance_udf(F.col("a.thumb"), F.col("b.thumb"))).alias("thumb_distance"),
        cosine.alias("cosine"),
        same_family("a", "b").alias("same_family"),
    )  # fmt: skip
    exact = F.col("method") == "exact"
    by_hash = (F.col("distance") <= int(hash_settings["max_distance"])) & (
        F.col("thumb_distance") <= float(verify_settings["max_thumb_distance"])
    )
    by_cosine = F.lit(False)
    if cosine_settings:
        by_cosine = F.coalesce(F.col("cosine") >= float(cosine_settings["min_cosine"]), F.lit(False))
    decided = scored.select(
        "id_a", "id_b", "a", "b",
        F.when(exact, "exact").when(by_hash, "dhash").when(by_cosine, "cosine").otherwise(F.lit(None)).alias("method"),
        "distance", "flipped", "thumb_distance", "cosine", "same_family",
    ).withColumn("duplicate", F.col("method").isNotNull())  # fmt: skip
    kept = decided.where("duplicate").drop("duplicate")
    if not verify_settings["exclude_same_family"]:
        kept = kept.withColumn("same_family", F.lit(False))
    return Verified(
        pairs=kept.where(~F.col("same_family")).drop("same_family"),
        family_excluded=kept.where(F.col("same_family")).drop("same_family"),
        scored=decided,
    )
