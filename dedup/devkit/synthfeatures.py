"""Synthetic feature tables with planted near duplicates, generated inside Spark (for bench/scale.py).

Rows are ``spark.range(n)``; each task makes its rows from ``(seed, id)`` alone, so nothing is
built on the driver and any size can be written straight to Parquet. In every block of ten ids,
id ``10k + 9`` is a near copy of ``10k + 8`` and id ``10k + 7`` a farther copy of ``10k + 6``;
the other ids are independent. ``copy_of`` names the original of a copy (null otherwise).

Vectors (:func:`vector_table`): originals are seeded Gaussian directions, normalised; a copy of
``u`` is ``c u + sqrt(1 - c^2) w`` with ``w`` a unit vector orthogonal to ``u``, so its cosine to
``u`` is exactly ``c`` (``planted_cosine``; up to float16 rounding when stored as float16), drawn
uniformly from ``near`` for near copies and from ``far`` for far ones.

Hashes (:func:`hash_table`): random 64-bit dHashes (and mirrored dHashes) and 12x12 thumbnails;
a copy flips ``planted_distance`` bits of both hashes, 0 to ``max_distance + 2`` (so some are
beyond the threshold), and its thumbnail is the original's plus a little noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from dedup.imaging import THUMB_SIZE
from dedup.vectors import DTYPES, normalise

NEAR_SLOT, FAR_SLOT = 9, 7  # id % 10 of a near copy and of a far copy (of the id before it)


def _rng(seed: int, item: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, int(item), stream])


def planted_cosine(seed: int, item: int, near: tuple[float, float], far: tuple[float, float]) -> float:
    """The cosine planted for copy ``item`` (nan when ``item`` is not a copy)."""
    slot = item % 10
    if slot not in (NEAR_SLOT, FAR_SLOT):
        return float("nan")
    low, high = near if slot == NEAR_SLOT else far
    return float(low + (high - low) * _rng(seed, item, 1).random())


def planted_vector(seed: int, item: int, dim: int, near: tuple[float, float], far: tuple[float, float]) -> np.ndarray:
    """The unit vector of ``item``: its own seeded direction, or a copy of the item before it.

    >>> a = planted_vector(3, 8, 64, (0.95, 0.99), (0.5, 0.8))
    >>> b = planted_vector(3, 9, 64, (0.95, 0.99), (0.5, 0.8))
    >>> bool(abs(float(a @ b) - planted_cosine(3, 9, (0.95, 0.99), (0.5, 0.8))) < 1e-5)
    True
    """
    own = normalise(_rng(seed, item).standard_normal((1, dim)))[0]
    cosine = planted_cosine(seed, item, near, far)
    if np.isnan(cosine):
        return own
    base = normalise(_rng(seed, item - 1).standard_normal((1, dim)))[0]
    side = normalise((own - (own @ base) * base)[None, :])[0]
    return (cosine * base + np.sqrt(1.0 - cosine * cosine) * side).astype(np.float32)


def _copy_columns(ids: np.ndarray) -> np.ndarray:
    slot = ids % 10
    return np.where((slot == NEAR_SLOT) | (slot == FAR_SLOT), ids - 1, -1)


def _nullable(values: np.ndarray) -> pd.Series:
    """Non-negative values kept, negative ones null."""
    return pd.Series(values, dtype="Int64").mask(values < 0)


def vector_table(
    spark: SparkSession,
    n: int,
    dim: int,
    dtype: str = "float16",
    seed: int = 1,
    near: tuple[float, float] = (0.9, 0.99),
    far: tuple[float, float] = (0.5, 0.85),
    partitions: int = 0,
) -> DataFrame:
    """``n`` rows of (id, embedding binary, copy_of, planted_cosine), made in Spark tasks."""
    np_dtype = DTYPES[dtype]

    def make(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            ids = frame["id"].to_numpy(np.int64)
            blobs = [planted_vector(seed, i, dim, near, far).astype(np_dtype).tobytes() for i in ids]
            copy_of = _copy_columns(ids)
            yield pd.DataFrame(
                {
                    "id": ids,
                    "embedding": blobs,
                    "copy_of": _nullable(copy_of),
                    "planted_cosine": [planted_cosine(seed, i, near, far) for i in ids],
                }
            )

    return _generate(spark, n, partitions, make, "id long, embedding binary, copy_of long, planted_cosine double")


def hash_table(spark: SparkSession, n: int, max_distance: int = 3, seed: int = 1, partitions: int = 0) -> DataFrame:
    """``n`` rows of the features the hash path reads (id, productId, family, sha256, dhash,
    dhash_flip, thumb) plus copy_of and planted_distance, made in Spark tasks."""

    def own(item: int) -> tuple[int, int, np.ndarray]:
        rng = _rng(seed, item)
        words = rng.integers(-(2**63), 2**63 - 1, size=2, dtype=np.int64, endpoint=True)
        return int(words[0]), int(words[1]), rng.integers(0, 256, THUMB_SIZE * THUMB_SIZE * 3, dtype=np.int16)

    def make(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            ids = frame["id"].to_numpy(np.int64)
            copy_of = _copy_columns(ids)
            rows = []
            for item, base in zip(ids, copy_of, strict=True):
                if base < 0:
                    dhash, flip, thumb = own(item)
                    rows.append((dhash, flip, thumb, None))
                    continue
                dhash, flip, thumb = own(base)
                rng = _rng(seed, item, 2)
                distance = int(rng.integers(0, max_distance + 3))
                mask = 0
                for bit in rng.choice(64, size=distance, replace=False):
                    mask |= 1 << int(bit)
                mask = mask - (1 << 64) if mask >= 1 << 63 else mask
                thumb = np.clip(thumb + rng.integers(-4, 5, thumb.shape), 0, 255)
                rows.append((dhash ^ mask, flip ^ mask, thumb, distance))
            yield pd.DataFrame(
                {
                    "id": ids,
                    "productId": [f"p{i}" for i in ids],
                    "family": [[] for _ in ids],
                    "sha256": [f"{i:064x}" for i in ids],
                    "dhash": [row[0] for row in rows],
                    "dhash_flip": [row[1] for row in rows],
                    "thumb": [row[2].astype(np.uint8).tobytes() for row in rows],
                    "copy_of": _nullable(copy_of),
                    "planted_distance": pd.array([row[3] for row in rows], dtype="Int64"),
                }
            )

    schema = (
        "id long, productId string, family array<string>, sha256 string, dhash long, dhash_flip long, "
        "thumb binary, copy_of long, planted_distance int"
    )
    return _generate(spark, n, partitions, make, schema)


def _generate(
    spark: SparkSession,
    n: int,
    partitions: int,
    make: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]],
    schema: str,
) -> DataFrame:
    parts = partitions or max(2, spark.sparkContext.defaultParallelism, n // 20_000)
    return spark.range(0, n, numPartitions=parts).mapInPandas(make, schema)
