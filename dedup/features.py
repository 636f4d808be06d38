"""Features: decode each fetched image once; compute sha256, dHash, mirrored dHash, thumbnail
and, with an ``embed.backend``, a CNN embedding from the same decoded pixels.

Runs as a scalar iterator pandas UDF over Arrow batches (``maxRecordsPerBatch`` rows each): the
embedder is loaded once per Python worker (:func:`dedup.embed.cached_embedder`) and fed
``embed.batch_size`` images per call. Decoding is safe: Pillow's decompression-bomb limit, EXIF
orientation, any mode to RGB; an image that does not decode gets a reason instead of crashing
the task. JPEGs decode at reduced scale (DCT scaling): hashes alone need 9x8 and 12x12 pixels,
so a 1/4-scale decode serves them at a fraction of a full decode's cost; with an embedder the
decode keeps the model's input size and the hashes come from the same pixels.

With ``embed.region`` (the default with an embedder) an image that is a frame around a smaller
photo (a banner, a screenshot, a large pad: :mod:`dedup.content`) also gets ``region_embedding``,
the embedding of that photo alone, in the same model call; other images get null there, so the
extra cost is the region search on a 96 px copy and one embedding for the few that have one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup import content
from dedup.embed import cached_embedder, embedder_input
from dedup.imaging import DecodeError, decode_pixels, dhash_pair, thumbnail
from dedup.settings import EmbedSettings, FeaturesSettings
from dedup.vectors import DTYPES, to_bytes

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

_DRAFT_SIZE = 32  # hashes alone: JPEG decodes at the smallest DCT scale keeping 32x32 pixels (1/4 for 224x224)
EMBEDDING_FIELD = T.StructField("embedding", T.BinaryType())  # dedup.vectors: float16 or float32 bytes
REGION_FIELD = T.StructField("region_embedding", T.BinaryType())  # the content region's; null: none found


def hash_features(data: bytes | None, max_pixels: int) -> dict[str, Any]:
    """The feature record of one image's bytes (``decode_error`` set where it does not decode)."""
    record, _ = decoded_features(data, max_pixels, _DRAFT_SIZE)
    return record


def decoded_features(data: bytes | None, max_pixels: int, draft_size: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """:func:`hash_features` at decode size ``draft_size``, with the decoded RGB pixels (None
    where the bytes do not decode)."""
    if not data:
        return {"decode_error": "no_bytes"}, None
    record: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
    try:
        pixels = decode_pixels(data, max_pixels=max_pixels, draft_size=draft_size)
    except DecodeError as exc:
        record["decode_error"] = str(exc)
        return record, None
    record["dhash"], record["dhash_flip"] = dhash_pair(pixels)
    record["thumb"] = thumbnail(pixels)
    record["height"], record["width"] = pixels.shape[:2]  # after draft: a lower bound for JPEG
    return record, pixels


def feature_type(embed_settings: EmbedSettings) -> T.StructType:
    """FEATURE_TYPE, plus ``embedding`` when an embed backend is on, and ``region_embedding``
    with ``embed.region``."""
    if not embedding_on(embed_settings):
        return FEATURE_TYPE
    region = [REGION_FIELD] if content.region_on(embed_settings) else []
    return T.StructType([*FEATURE_TYPE.fields, EMBEDDING_FIELD, *region])


def embedding_on(embed_settings: EmbedSettings) -> bool:
    """Whether an embedder is on (``embed.backend`` is not none)."""
    return embed_settings.backend != "none"


def _embed_records(records: list[dict[str, Any]], pixels: list[np.ndarray | None], settings: EmbedSettings) -> None:
    """Add ``embedding`` (and with ``embed.region``, ``region_embedding`` where the image has a
    content region) to each decoded record, ``embed.batch_size`` images per model call."""
    embedder = cached_embedder(settings)
    inputs: list[tuple[int, str, np.ndarray]] = []  # (record, field, pixels to embed)
    region = content.region_on(settings)
    for i, image in enumerate(pixels):
        if image is None:
            continue
        inputs.append((i, "embedding", image))
        box = content.content_box(image, settings) if region else None
        if box is not None:
            inputs.append((i, "region_embedding", content.square_region(image, box)))
    step = max(1, settings.batch_size)
    for start in range(0, len(inputs), step):
        chunk = inputs[start : start + step]
        batch = np.stack([embedder_input(image, embedder.input_size, settings.denoise_from) for _, _, image in chunk])
        for (i, field, _), vector in zip(chunk, embedder.embed(batch), strict=True):
            records[i][field] = to_bytes(vector, settings.dtype)


def embedding_dim(features: DataFrame, embed_settings: EmbedSettings) -> int:
    """The dimension of the embeddings in a features table (0: none), read off one stored vector."""
    if not embedding_on(embed_settings) or "embedding" not in features.columns:
        return 0
    row = features.where(F.col("embedding").isNotNull()).select(F.length("embedding").alias("n")).first()
    if row is None:
        return 0
    return int(row["n"]) // DTYPES[embed_settings.dtype].itemsize


def features_udf(max_pixels: int, embed_settings: EmbedSettings):
    """A scalar iterator pandas UDF: binary image column in, :func:`feature_type` struct out."""
    schema = feature_type(embed_settings)
    names = schema.fieldNames()
    embed = embedding_on(embed_settings)

    @F.pandas_udf(schema)
    def image_features(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        draft = cached_embedder(embed_settings).input_size if embed else _DRAFT_SIZE  # loads the model once
        for images in batches:
            decoded = [decoded_features(data, max_pixels, draft) for data in images]
            records = [record for record, _ in decoded]
            if embed:
                _embed_records(records, [pixels for _, pixels in decoded], embed_settings)
            # object columns keep 64-bit hashes exact next to nulls (a float column would round them)
            yield pd.DataFrame({name: pd.Series([r.get(name) for r in records], dtype=object) for name in names})

    return image_features


def compute_features(images: DataFrame, settings: FeaturesSettings, embed_settings: EmbedSettings) -> DataFrame:
    """Fetched rows (productId, image_url, image_bytes) in; the same keys, feature columns
    (``embedding`` too with an embed backend) and ``feature_status`` out. ``embed_settings``:
    as :func:`dedup.embed.stage_model_files` returns them (the file names executors find).

    ``feature_status`` is ok, or failed with ``feature_reason`` when the bytes do not decode.
    """
    udf = features_udf(settings.max_image_pixels, embed_settings)
    features = images.select("productId", "image_url", udf(F.col("image_bytes")).alias("f")).select(
        "productId", "image_url", "f.*"
    )
    return features.withColumn(
        "feature_status", F.when(F.col("decode_error").isNull(), "ok").otherwise("failed")
    ).withColumnRenamed("decode_error", "feature_reason")
