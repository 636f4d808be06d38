"""Features: decode each fetched image once; compute sha256, dHash, mirrored dHash, thumbnail.

Runs as a pandas UDF over Arrow batches. Decoding is safe: Pillow's decompression-bomb limit,
EXIF orientation, any mode to RGB; an image that does not decode gets a reason instead of
crashing the task. JPEGs decode at reduced scale (DCT scaling): dHash needs 9x8 pixels and the
thumbnail 12x12, so a 1/4-scale decode serves both at a fraction of a full decode's cost.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup.imaging import DecodeError, decode_pixels, dhash_pair, thumbnail

FEATURE_TYPE = T.StructType(
    [
        T.StructField("sha256", T.StringType()),
        T.StructField("dhash", T.LongType()),
        T.StructField("dhash_flip", T.LongType()),
        T.StructField("width", T.IntegerType()),
        T.StructField("height", T.IntegerType()),
        T.StructField("thumb", T.BinaryType()),
        T.StructField("decode_error", T.StringType()),
    ]
)

_DRAFT_SIZE = 32  # JPEG decodes at the smallest DCT scale keeping 32x32 pixels (1/4 for 224x224)


def hash_features(data: bytes | None, max_pixels: int) -> dict[str, Any]:
    """The feature record of one image's bytes (``decode_error`` set where it does not decode)."""
    if not data:
        return {"decode_error": "no_bytes"}
    record: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
    try:
        pixels = decode_pixels(data, max_pixels=max_pixels, draft_size=_DRAFT_SIZE)
    except DecodeError as exc:
        record["decode_error"] = str(exc)
        return record
    record["dhash"], record["dhash_flip"] = dhash_pair(pixels)
    record["thumb"] = thumbnail(pixels)
    record["height"], record["width"] = pixels.shape[:2]  # after draft: a lower bound for JPEG
    return record


def hash_udf(max_pixels: int):
    """A pandas UDF: binary image column in, FEATURE_TYPE struct out."""

    @F.pandas_udf(FEATURE_TYPE)
    def image_hashes(images: pd.Series) -> pd.DataFrame:
        records = [hash_features(data, max_pixels) for data in images]
        # object columns keep 64-bit hashes exact next to nulls (a float column would round them)
        return pd.DataFrame(
            {name: pd.Series([r.get(name) for r in records], dtype=object) for name in FEATURE_TYPE.fieldNames()}
        )

    return image_hashes


def compute_features(images: DataFrame, settings: dict[str, Any]) -> DataFrame:
    """Fetched rows (productId, image_url, image_bytes) in; the same keys, feature columns and
    ``feature_status`` out.

    ``feature_status`` is ok, or failed with ``feature_reason`` when the bytes do not decode.
    """
    udf = hash_udf(int(settings["max_image_pixels"]))
    features = images.select("productId", "image_url", udf(F.col("image_bytes")).alias("f")).select(
        "productId", "image_url", "f.*"
    )
    return features.withColumn(
        "feature_status", F.when(F.col("decode_error").isNull(), "ok").otherwise("failed")
    ).withColumnRenamed("decode_error", "feature_reason")
