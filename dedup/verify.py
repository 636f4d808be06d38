"""Verify: score each candidate pair from both products' features, and decide it by the rule.

:func:`score_pairs` computes every signal of a candidate (byte equality, dHash distance and
whether the mirrored image's dHash gave it, thumbnail distance, exact cosine, the cosine of two
framed photos, and for the pairs the photo check compares, :mod:`dedup.photomatch`'s scores) and
decides it by :class:`dedup.rule.Rule` (the rule, its thresholds and which candidates the photo
check compares are stated there). ``method`` names the signal that decided: ``exact``,
``photo``, or without the photo check ``dhash`` or ``cosine``; null for no duplicate. Every
candidate keeps every signal (``scored``), so users can re-threshold without re-running. Pairs
of products in the same productFamily (size or colour variants of one product) are not
duplicates when ``verify.exclude_same_family`` is on: :func:`kept_pairs` counts them, and does
not keep them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup import photomatch
from dedup.cosine import best_cosine_udf, cosine_udf
from dedup.imaging import thumb_distances
from dedup.rule import Rule


@F.pandas_udf(T.DoubleType())
def thumb_distance_udf(a: pd.Series, b: pd.Series) -> pd.Series:
    """:func:`dedup.imaging.thumb_distances` over an Arrow batch of thumbnail pairs."""
    return pd.Series(thumb_distances(list(a), list(b)), index=a.index)


# pairs/
PAIR_COLUMNS = ("a", "b", "method", "distance", "flipped", "thumb_distance", "cosine", "region_cosine", "photo")


@dataclass
class Verified:
    """Duplicate pairs (``id_a``, ``id_b``, ``a``, ``b``, ``method``, ``distance``, ``flipped``,
    ``thumb_distance``, ``cosine``, ``region_cosine``, ``photo``) and the pairs dropped as same-family variants."""

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


def score_pairs(
    candidates: DataFrame,
    items: DataFrame,
    rule: Rule,
    images: DataFrame | None = None,
    described: DataFrame | None = None,
) -> DataFrame:
    """Every candidate with its signals and the rule's decision: candidates (id_a, id_b) and items
    (id, productId, family, sha256, dhash, dhash_flip, thumb and, when ``rule.dim``, embedding) in;
    id_a, id_b, a, b, ``method`` (the signal that decided, null for no duplicate), distance,
    flipped, thumb_distance, cosine, region_cosine (the cosine of both products' content-region
    vectors, with ``region_embedding`` in items; null unless both have one), photo, same_family and
    ``duplicate`` out.

    With the photo check (``rule.photo``), ``images`` (id, image_bytes; ``described``:
    :func:`describe_images` of them, else computed here) give the pixels of the pairs that
    ``rule.photo_gate()`` sends to :mod:`dedup.photomatch`; ``photo`` is null for the others.
    """
    a, b = items.alias("a"), items.alias("b")
    joined = candidates.select("id_a", "id_b").distinct()
    joined = joined.join(a, F.col("id_a") == F.col("a.id")).join(b, F.col("id_b") == F.col("b.id"))
    cosine = region_cosine = F.lit(None).cast("double")
    if rule.dim:
        if "region_embedding" in items.columns:  # the best over both products' vectors, as the kNN ranks them
            cosine = best_cosine_udf(rule.dim)(*(F.col(f"{side}.{column}") for side in "ab"
                                                 for column in ("embedding", "region_embedding")))  # fmt: skip
            region_cosine = cosine_udf(rule.dim)(F.col("a.region_embedding"), F.col("b.region_embedding"))
        else:
            cosine = cosine_udf(rule.dim)(F.col("a.embedding"), F.col("b.embedding"))
    scored = joined.select(
        "id_a", "id_b",
        F.col("a.productId").alias("a"), F.col("b.productId").alias("b"),
        *hash_signals("a", "b", rule.match_flips),
        F.when(F.col("a.sha256") == F.col("b.sha256"), F.lit(0.0))
        .otherwise(thumb_distance_udf(F.col("a.thumb"), F.col("b.thumb"))).alias("thumb_distance"),
        cosine.alias("cosine"),
        region_cosine.alias("region_cosine"),
        same_family("a", "b").alias("same_family"),
    )  # fmt: skip
    if rule.photo is not None:
        if images is None:
            raise ValueError("the photo check needs the images: pass images to score_pairs")
        scored = _with_photo_scores(scored, images, rule, described)
    else:
        scored = scored.withColumn("photo", F.lit(None).cast(photomatch.SCORES_SCHEMA))
    return scored.select(
        "id_a", "id_b", "a", "b", rule.decision().alias("method"),
        "distance", "flipped", "thumb_distance", "cosine", "region_cosine", "photo", "same_family",
    ).withColumn("duplicate", F.col("method").isNotNull())  # fmt: skip


def kept_pairs(scored: DataFrame, rule: Rule) -> Verified:
    """The duplicates among :func:`score_pairs`' rows, same-family pairs set apart when
    ``verify.exclude_same_family`` is on."""
    kept = scored.where("duplicate").drop("duplicate")
    if not rule.exclude_same_family:
        kept = kept.withColumn("same_family", F.lit(False))
    return Verified(
        pairs=kept.where(~F.col("same_family")).drop("same_family"),
        family_excluded=kept.where(F.col("same_family")).drop("same_family"),
    )


def describe_images(images: DataFrame, rule: Rule) -> DataFrame:
    """(id, described, image_bytes): each image's :class:`dedup.photomatch.Description` (decode,
    downscale, keypoints and descriptors of the image and its mirror, and of the photo it frames
    where ``rule.framed``; :data:`DESCRIBED_SCHEMA`), computed once per image, next to its bytes
    for the pairs whose fit leaves a comparison to run; write it out before :func:`score_pairs`
    reads it for both sides of every pair."""
    described = photomatch.describe_udf(rule.framed)("image_bytes")
    return images.select("id", described.alias("described"), "image_bytes")


def _with_photo_scores(scored: DataFrame, images: DataFrame, rule: Rule, described: DataFrame | None) -> DataFrame:
    """``photo``: the :mod:`dedup.photomatch` scores of each pair that is not byte-identical and
    passes ``rule.photo_gate()`` (null for the others: not checked, not kept), in one pass over
    the pairs (:func:`dedup.photomatch.pair_udf`): the fit from both images' stored descriptions
    (``described``, from :func:`describe_images`), and only for the pairs whose fit reaches
    ``rule.fit_gate()``, the comparison of their pixels; the others keep their fit scores
    (``weak_fit``, ``no_fit``). A framed photo's view is scored the same way. Each side is joined
    once; ``a``'s without its mirror keypoints (the fit uses ``b``'s only), so a pair carries
    about 1.5 descriptions, not 2."""
    described = describe_images(images, rule) if described is None else described
    checked = (F.col("method") != "exact") & rule.photo_gate()
    scored = scored.withColumn("checked", checked)
    fields = {
        "a": ("direct", "reason", "region_direct", "region_box", "image_bytes"),
        "b": ("direct", "mirror", "reason", "region_direct", "region_mirror", "region_box", "image_bytes"),
    }
    for name, names in fields.items():
        side = described.select(
            F.col("id").alias(f"photo_id_{name}"),
            *(F.col(f"described.{f}" if f != "image_bytes" else f).alias(f"{f}_{name}") for f in names),
        )
        on = F.col("checked") & (F.col(f"id_{name}") == F.col(f"photo_id_{name}"))
        scored = scored.join(side, on, "left")
    a, b = (F.struct(*(F.col(f"{f}_{name}").alias(f) for f in names)) for name, names in fields.items())
    photo = F.when(F.col("checked"), photomatch.pair_udf(rule.fit_gate())(a, b))
    extra = ["checked", *(f"{f}_{name}" for name, names in fields.items() for f in names), "photo_id_a", "photo_id_b"]
    return scored.withColumn("photo", photo).drop(*extra)
