"""Verify: decide each candidate pair from both products' features, and name the signal.

A pair is a duplicate when its images are byte-identical (method ``exact``). With an embedder and
``verify.photo_match`` on (the default), any other candidate whose dHash distance is at most
``verify.photo_max_distance`` or whose cosine reaches the candidate floor is decided by the photo
check, :mod:`dedup.photomatch` (method ``photo``), and no other is a duplicate. Without the photo
check (``embed.backend=none`` or ``verify.photo_match=false``): when its dHashes (or one image's
and the other's mirrored dHash) differ in at most ``hash.max_distance`` bits and their 12x12
colour thumbnails agree: ``thumb_distance`` (1 - correlation) at most
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

from dedup import photomatch
from dedup.imaging import thumb_distances


@F.pandas_udf(T.DoubleType())
def thumb_distance_udf(a: pd.Series, b: pd.Series) -> pd.Series:
    """:func:`dedup.imaging.thumb_distances` over an Arrow batch of thumbnail pairs."""
    return pd.Series(thumb_distances(list(a), list(b)), index=a.index)


PAIR_COLUMNS = ("a", "b", "method", "distance", "flipped", "thumb_distance", "cosine", "photo")  # pairs/


@dataclass
class Verified:
    """Duplicate pairs (``id_a``, ``id_b``, ``a``, ``b``, ``method``, ``distance``, ``flipped``,
    ``thumb_distance``, ``cosine``, ``photo``) and the pairs dropped as same-family variants."""

    pairs: DataFrame
    family_excluded: DataFrame


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


def within_distance(hash_settings: dict[str, Any]) -> Column:
    """dHash distance at most ``hash.max_distance``: half of the hash rule."""
    return F.col("distance") <= int(hash_settings["max_distance"])


def thumbs_agree(verify_settings: dict[str, Any]) -> Column:
    """Thumbnail distance at most ``verify.max_thumb_distance``: the other half of the hash rule."""
    return F.col("thumb_distance") <= float(verify_settings["max_thumb_distance"])


def apply_rule(scored: DataFrame, hash_settings: dict[str, Any], verify_settings: dict[str, Any]) -> DataFrame:
    """The duplicates among ``scored`` pairs (``method``, ``distance``, ``thumb_a``, ``thumb_b`` and
    any other columns): exact, or dHash within ``hash.max_distance`` with thumbnails within
    ``verify.max_thumb_distance``. Adds ``thumb_distance`` (computed for near pairs only) and
    drops the thumbnails."""
    near = (F.col("method") == "dhash") & within_distance(hash_settings)
    scored = (
        scored.where((F.col("method") == "exact") | near)
        .withColumn(
            "thumb_distance",
            F.when(F.col("method") == "exact", F.lit(0.0)).otherwise(thumb_distance_udf("thumb_a", "thumb_b")),
        )
        .drop("thumb_a", "thumb_b")
    )
    return scored.where((F.col("method") == "exact") | thumbs_agree(verify_settings))


def photo_checked(verify_settings: dict[str, Any], embedded: bool) -> bool:
    """Whether candidates are decided by :mod:`dedup.photomatch`: with embeddings and
    ``verify.photo_match`` on."""
    return embedded and bool(verify_settings.get("photo_match"))


def near_candidate_distance(hash_settings: dict[str, Any], verify_settings: dict[str, Any], photo_check: bool) -> int:
    """The dHash distance candidates are generated within: ``hash.max_distance``, or with the
    photo check on, ``verify.photo_max_distance`` when smaller (farther dHash pairs are only
    photo-checked when their cosine reaches the floor, and those the cosine LSH finds)."""
    if photo_check:
        return min(int(hash_settings["max_distance"]), int(verify_settings["photo_max_distance"]))
    return int(hash_settings["max_distance"])


def score_pairs(
    candidates: DataFrame,
    items: DataFrame,
    hash_settings: dict[str, Any],
    verify_settings: dict[str, Any],
    cosine_settings: dict[str, Any] | None = None,
    images: DataFrame | None = None,
    described: DataFrame | None = None,
) -> DataFrame:
    """Every candidate with its signals and the decision: candidates (id_a, id_b) and items (id,
    productId, family, sha256, dhash, dhash_flip, thumb and, with ``cosine_settings`` = {"dim",
    "min_cosine", "floor"}, embedding) in; id_a, id_b, a, b, ``method`` (the signal that decided,
    null for no duplicate), distance, flipped, thumb_distance, cosine, photo, same_family and
    ``duplicate`` out.

    With embeddings, ``images`` (id, image_bytes; ``described``: :func:`describe_images` of them,
    else computed here) and ``verify.photo_match`` on, a candidate that
    is not byte-identical is decided by :mod:`dedup.photomatch` (method ``photo``) instead of the
    dHash and cosine thresholds, when its cosine is at least the candidate ``floor`` or its dHash
    distance at most ``verify.photo_max_distance`` (white-background photos put many unrelated
    products within a few dHash bits); the others are not duplicates. On catalog photos,
    look-alike products pass any single threshold; a same-photograph check tells them apart
    (docs/BENCHMARKS.md).
    """
    a, b = items.alias("a"), items.alias("b")
    joined = candidates.select("id_a", "id_b").distinct()
    joined = joined.join(a, F.col("id_a") == F.col("a.id")).join(b, F.col("id_b") == F.col("b.id"))
    cosine = F.lit(None).cast("double")
    if cosine_settings:
        from dedup.cosine import best_cosine_udf, cosine_udf

        dim = int(cosine_settings["dim"])
        if "region_embedding" in items.columns:  # the best over both products' vectors, as the kNN ranks them
            cosine = best_cosine_udf(dim)(*(F.col(f"{side}.{column}") for side in "ab"
                                            for column in ("embedding", "region_embedding")))  # fmt: skip
        else:
            cosine = cosine_udf(dim)(F.col("a.embedding"), F.col("b.embedding"))
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
    if photo_checked(verify_settings, bool(cosine_settings)) and images is not None:
        gate = (F.col("distance") <= int(verify_settings["photo_max_distance"])) | F.coalesce(
            F.col("cosine") >= float(cosine_settings["floor"]), F.lit(False)
        )
        fit_gate = (int(verify_settings["min_inliers"]), float(verify_settings["min_inlier_ratio"]))
        scored = _with_photo_scores(scored, images, gate, fit_gate, described)
        decided_method = F.when(exact, "exact").when(photomatch.decide_column(F.col("photo"), verify_settings), "photo")
    else:
        by_hash = within_distance(hash_settings) & thumbs_agree(verify_settings)
        by_cosine = F.lit(False)
        if cosine_settings:
            by_cosine = F.coalesce(F.col("cosine") >= float(cosine_settings["min_cosine"]), F.lit(False))
        decided_method = F.when(exact, "exact").when(by_hash, "dhash").when(by_cosine, "cosine")
        scored = scored.withColumn("photo", F.lit(None).cast(photomatch.SCORES_SCHEMA))
    return scored.select(
        "id_a", "id_b", "a", "b", decided_method.alias("method"),
        "distance", "flipped", "thumb_distance", "cosine", "photo", "same_family",
    ).withColumn("duplicate", F.col("method").isNotNull())  # fmt: skip


def kept_pairs(scored: DataFrame, verify_settings: dict[str, Any]) -> Verified:
    """The duplicates among :func:`score_pairs`' rows, same-family pairs set apart when
    ``verify.exclude_same_family`` is on."""
    kept = scored.where("duplicate").drop("duplicate")
    if not verify_settings["exclude_same_family"]:
        kept = kept.withColumn("same_family", F.lit(False))
    return Verified(
        pairs=kept.where(~F.col("same_family")).drop("same_family"),
        family_excluded=kept.where(F.col("same_family")).drop("same_family"),
    )


def describe_images(images: DataFrame) -> DataFrame:
    """(id, described, image_bytes): each image's :class:`dedup.photomatch.Description` (decode,
    downscale, keypoints and descriptors of the image and its mirror; :data:`DESCRIBED_SCHEMA`),
    computed once per image, next to its bytes for the pairs whose fit leaves a comparison to run;
    write it out before :func:`score_pairs` reads it for both sides of every pair."""
    return images.select("id", photomatch.describe_udf()("image_bytes").alias("described"), "image_bytes")


def _with_photo_scores(
    scored: DataFrame, images: DataFrame, gate: Column, fit_gate: photomatch.FitGate, described: DataFrame | None
) -> DataFrame:
    """``photo``: the :mod:`dedup.photomatch` scores of each pair that is not byte-identical and
    passes ``gate`` (null for the others: not checked, not kept), in one pass over the pairs
    (:func:`dedup.photomatch.pair_udf`): the fit from both images' stored descriptions
    (``described``, from :func:`describe_images`), and only for the pairs whose fit reaches
    ``fit_gate``, the comparison of their pixels; the others keep their fit scores
    (``weak_fit``, ``no_fit``). Each side is joined once; ``a``'s without its mirror keypoints
    (the fit uses ``b``'s only), so a pair carries about 1.5 descriptions, not 2."""
    described = describe_images(images) if described is None else described
    checked = (F.col("method") != "exact") & gate
    scored = scored.withColumn("checked", checked)
    fields = {"a": ("direct", "reason", "image_bytes"), "b": ("direct", "mirror", "reason", "image_bytes")}
    for name, names in fields.items():
        side = described.select(
            F.col("id").alias(f"photo_id_{name}"),
            *(F.col(f"described.{f}" if f != "image_bytes" else f).alias(f"{f}_{name}") for f in names),
        )
        on = F.col("checked") & (F.col(f"id_{name}") == F.col(f"photo_id_{name}"))
        scored = scored.join(side, on, "left")
    a, b = (F.struct(*(F.col(f"{f}_{name}").alias(f) for f in names)) for name, names in fields.items())
    photo = F.when(F.col("checked"), photomatch.pair_udf(fit_gate)(a, b))
    extra = ["checked", *(f"{f}_{name}" for name, names in fields.items() for f in names), "photo_id_a", "photo_id_b"]
    return scored.withColumn("photo", photo).drop(*extra)
