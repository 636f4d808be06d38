"""Cosine candidates: random-hyperplane (SimHash) LSH with banding in Spark, each pair verified exactly.

Each embedding ``x`` gets ``b * r`` sign bits ``sign(h_k . x)`` from Gaussian hyperplanes ``h_k``
(drawn from ``cosine.seed``, the same on every worker). For two vectors at angle
``theta = arccos(cos)`` one bit agrees with probability ``p = 1 - theta / pi`` (Charikar, 2002).
The bits are cut into ``b`` bands of ``r`` rows; a pair is a candidate when some band agrees in
all ``r`` bits:

    P(candidate | cos) = 1 - (1 - p ** r) ** b

``r`` sets the bucket load: two unrelated vectors (cos ~ 0, p = 1/2) share a band with
probability ``2 ** -r``, so each item meets about ``n / 2 ** r`` unrelated items per band. The work
per item is ``b * (1 + PAIR_COST * n / 2 ** r)``: one index row per band, and each chance
candidate costs about ``PAIR_COST`` index rows (two joins that bring both vectors, and a dot
product). :func:`plan_hyperplanes` takes, for each ``r``, the least ``b`` whose recall at
``cosine.min_cosine`` is at least ``cosine.target_recall``, and keeps the ``r`` with the least
work. Every candidate is then verified by its exact cosine (:func:`cosine_udf`) and kept when it
is at least ``min_cosine``, so precision is exact and recall is the planned probability (or better,
for pairs above the threshold). Buckets with more than ``cosine.max_bucket_size`` members are
skipped and returned, as in :mod:`dedup.candidates`. Nothing is collected on the driver; there is no N x N loop.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup.settings import CosineSettings
from dedup.vectors import DTYPES, stack

MAX_ROWS = 40  # bits per band: band values and band ids share one long key
MAX_BITS = 16_384  # hyperplanes per vector (a d x bits float32 matrix on each worker)
PAIR_COST = 8  # a chance candidate (two vector lookups and a dot product) costs about 8 index rows
log = logging.getLogger(__name__)


def bit_agreement(cosine: float) -> float:
    """``p = 1 - arccos(cos) / pi``: the chance that one random hyperplane does not split the pair.

    >>> bit_agreement(1.0), bit_agreement(0.0), round(bit_agreement(0.95), 4)
    (1.0, 0.5, 0.8989)
    """
    return 1.0 - math.acos(max(-1.0, min(1.0, cosine))) / math.pi


@dataclass(frozen=True)
class HyperplanePlan:
    """``bands`` bands of ``rows`` sign bits each, planned for pairs at ``min_cosine``."""

    rows: int
    bands: int
    min_cosine: float

    @property
    def bits(self) -> int:
        return self.rows * self.bands

    def recall(self, cosine: float) -> float:
        """``1 - (1 - p ** r) ** b``: the chance a pair at ``cosine`` shares at least one band."""
        return 1.0 - (1.0 - bit_agreement(cosine) ** self.rows) ** self.bands


def least_bands(min_cosine: float, target_recall: float, rows: int) -> int:
    """The least ``b`` with ``1 - (1 - p ** rows) ** b >= target_recall``, ``p`` at ``min_cosine``."""
    hit = bit_agreement(min_cosine) ** rows
    if hit >= 1.0:
        return 1
    return max(1, math.ceil(math.log(1.0 - target_recall) / math.log1p(-hit) - 1e-9))


def plan_hyperplanes(
    min_cosine: float, target_recall: float, n_items: int, rows: int = 0, bands: int = 0
) -> HyperplanePlan:
    """The band plan for pairs at ``min_cosine`` found with ``target_recall`` among ``n_items``.

    ``rows`` and ``bands`` (0: planned) override the plan; plans over ``MAX_BITS`` hyperplanes
    are passed over (the projection costs ``d`` multiply-adds per bit). Worked example, a million SSCD
    vectors, threshold 0.95, recall 0.99: ``p = 1 - arccos(0.95) / pi = 0.8989``; ``r = 25`` gives
    ``p ** 25 = 0.0696``, so ``b = ceil(ln 0.01 / ln(1 - 0.0696)) = 64`` bands, 1,600 bits and
    ``64 * (1 + 8 * 10**6 / 2**25) = 79`` units of work per item (r = 22 needs only 46 bands but
    ``46 * (1 + 8 * 10**6 / 2**22) = 134`` units; r = 26: 72 bands, 81 units). Unrelated pairs
    collide with probability about ``64 / 2**25 = 1.9e-6``: about 1e6 chance candidates, 1.9e-6 of
    the N(N-1)/2 pairs; a pair at 0.9 is found with probability 0.74:

    >>> plan = plan_hyperplanes(0.95, 0.99, 1_000_000)
    >>> plan, plan.bits, round(plan.recall(0.95), 4), round(plan.recall(0.9), 2)
    (HyperplanePlan(rows=25, bands=64, min_cosine=0.95), 1600, 0.9902, 0.74)
    >>> plan_hyperplanes(0.95, 0.99, 10_000)
    HyperplanePlan(rows=18, bands=29, min_cosine=0.95)
    """
    if not 0.0 < min_cosine < 1.0:
        raise ValueError(f"cosine.min_cosine must be in (0, 1) here, got {min_cosine}")
    if not 0.0 < target_recall < 1.0:
        raise ValueError(f"cosine.target_recall must be in (0, 1), got {target_recall}")
    if rows and not 1 <= rows <= MAX_ROWS:
        raise ValueError(f"cosine.rows must be in 1..{MAX_ROWS}, got {rows}")

    def plan(r: int) -> HyperplanePlan:
        return HyperplanePlan(r, bands or least_bands(min_cosine, target_recall, r), min_cosine)

    options = [plan(rows)] if rows else [plan(r) for r in range(1, MAX_ROWS + 1)]
    fitting = [p for p in options if p.bits <= MAX_BITS]
    if not fitting:
        raise ValueError(
            f"cosine LSH at min_cosine={min_cosine} needs {min(p.bits for p in options)} bits per vector "
            f"(> {MAX_BITS}); raise min_cosine or lower target_recall"
        )
    return min(fitting, key=lambda p: p.bands * (1 + PAIR_COST * n_items / 2**p.rows))


@functools.lru_cache(maxsize=4)
def hyperplanes(seed: int, dim: int, bits: int) -> np.ndarray:
    """The ``dim x bits`` Gaussian hyperplane matrix for ``seed`` (cached per worker process).

    >>> h = hyperplanes(17, 4, 3)
    >>> h.shape, h.dtype, bool((h == hyperplanes(17, 4, 3)).all())
    ((4, 3), dtype('float32'), True)
    """
    return np.random.default_rng(seed).standard_normal((dim, bits), dtype=np.float32)


def decode(blobs: pd.Series | list[bytes], dim: int) -> np.ndarray:
    """Stored vectors (all float32 or all float16 in one go; mixed ones one by one) as float32."""
    blobs = list(blobs)
    lengths = {len(blob) for blob in blobs}
    for dtype in DTYPES.values():
        if lengths == {dtype.itemsize * dim}:
            return np.frombuffer(b"".join(blobs), dtype=dtype).astype(np.float32).reshape(-1, dim)
    return stack(blobs, dim)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) matrices (0 where a row is all zero).

    >>> cosines(np.array([[1.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 2.0], [3.0, 4.0]])).tolist()
    [0.0, 1.0]
    """
    dots = np.einsum("ij,ij->i", a, b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1).astype(np.float64) * np.linalg.norm(b, axis=1)
    return dots / np.maximum(norms, 1e-12)


def cosine_udf(dim: int) -> Callable[[Column | str, Column | str], Column]:
    """A pandas UDF: the exact cosine of two binary embedding columns of dimension ``dim``
    (float32 or float16 bytes, see :mod:`dedup.vectors`); null when either is null."""

    @F.pandas_udf(T.DoubleType())
    def exact_cosine(a: pd.Series, b: pd.Series) -> pd.Series:
        out = np.full(len(a), np.nan)
        ok = (a.notna() & b.notna()).to_numpy()
        if ok.any():
            out[ok] = cosines(decode(a[ok], dim), decode(b[ok], dim))
        return pd.Series(out, index=a.index)

    return exact_cosine


def best_cosine_udf(dim: int) -> Callable[..., Column]:
    """A pandas UDF over (a, a_region, b, b_region) binary embedding columns: the best exact
    cosine between any vector of ``a`` and any of ``b`` (a null region takes no part; null when
    no pair of vectors is there), as the kNN ranks a product with a content region."""

    @F.pandas_udf(T.DoubleType())
    def best_cosine(a: pd.Series, a_region: pd.Series, b: pd.Series, b_region: pd.Series) -> pd.Series:
        out = np.full(len(a), -np.inf)
        for left, right in ((a, b), (a_region, b), (a, b_region), (a_region, b_region)):
            ok = (left.notna() & right.notna()).to_numpy()
            if ok.any():
                out[ok] = np.maximum(out[ok], cosines(decode(left[ok], dim), decode(right[ok], dim)))
        return pd.Series(np.where(np.isinf(out), np.nan, out), index=a.index)

    return best_cosine


def _band_keys(plan: HyperplanePlan, dim: int, seed: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas: (id, embedding) batches in, (id, key) out, one row per band; the key is
    ``band << rows | the band's sign bits``."""
    rows, bands = plan.rows, plan.bands

    def keys(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        planes = hyperplanes(seed, dim, plan.bits)
        weights = np.left_shift(np.int64(1), np.arange(rows, dtype=np.int64))
        offsets = np.left_shift(np.arange(bands, dtype=np.int64), rows)
        for frame in batches:
            signs = (decode(frame["embedding"], dim) @ planes) > 0
            values = signs.reshape(len(frame), bands, rows).astype(np.int64) @ weights + offsets
            yield pd.DataFrame({"id": np.repeat(frame["id"].to_numpy(np.int64), bands), "key": values.ravel()})

    return keys


@dataclass
class CosineCandidates:
    """Verified pairs (id_a < id_b, cosine >= min_cosine), the buckets skipped for size
    (band, value, count), the plan, and the distinct ``candidates`` (id_a, id_b) before
    verification. ``buckets`` (the shared, non-singleton buckets) is persisted so that every
    frame reuses one projection; :meth:`release` frees it."""

    pairs: DataFrame
    skipped_buckets: DataFrame
    plan: HyperplanePlan
    candidates: DataFrame
    buckets: DataFrame

    def count_skipped(self) -> tuple[int, int]:
        """(buckets skipped, members they held), logged as a warning when any were skipped."""
        row = self.skipped_buckets.agg(F.count("*").alias("n"), F.sum("count").alias("members")).first()
        skipped, members = int(row["n"]), int(row["members"] or 0)
        if skipped:
            log.warning("cosine LSH skipped %d oversized buckets holding %d members", skipped, members)
        return skipped, members

    def release(self) -> None:
        self.buckets.unpersist()


def cosine_pairs(items: DataFrame, settings: CosineSettings, dim: int, n_items: int) -> CosineCandidates:
    """(id_a, id_b, cosine) for the pairs of ``items`` (id long, embedding binary) whose cosine
    is at least ``cosine.min_cosine``, found by SimHash banding; ``n_items`` sizes the plan.
    Rows with a null embedding take no part."""
    min_cosine = settings.min_cosine
    plan = plan_hyperplanes(min_cosine, settings.target_recall, n_items, settings.rows, settings.bands)
    cap = settings.max_bucket_size
    log.info("cosine LSH plan: %s (%d bits, recall %.4f at %.3f)", plan, plan.bits, plan.recall(min_cosine), min_cosine)
    vectors = items.select("id", "embedding").where(F.col("embedding").isNotNull())
    index = vectors.mapInPandas(_band_keys(plan, dim, settings.seed), "id long, key long")
    buckets = (
        index.groupBy("key")
        .agg(F.count("*").alias("count"), F.collect_list("id").alias("ids"))
        .where(F.col("count") > 1)
        .persist()
    )
    skipped = buckets.where(F.col("count") > cap).select(
        F.shiftright("key", plan.rows).cast("int").alias("band"),
        F.col("key").bitwiseAND(F.lit((1 << plan.rows) - 1)).alias("value"),
        "count",
    )
    candidates = (
        buckets.where(F.col("count") <= cap)
        .select(F.explode("ids").alias("id_a"), "ids")
        .select("id_a", F.explode("ids").alias("id_b"))
        .where(F.col("id_a") < F.col("id_b"))
        .distinct()
    )
    return CosineCandidates(
        pairs=verify_cosine(candidates, vectors, dim, min_cosine),
        skipped_buckets=skipped,
        plan=plan,
        candidates=candidates,
        buckets=buckets,
    )


def verify_cosine(candidates: DataFrame, items: DataFrame, dim: int, min_cosine: float) -> DataFrame:
    """Candidates (id_a, id_b) with both embeddings looked up in ``items`` (id, embedding): the
    pairs whose exact cosine is at least ``min_cosine``, as (id_a, id_b, cosine)."""
    a, b = items.select("id", "embedding").alias("a"), items.select("id", "embedding").alias("b")
    scored = (
        candidates.join(a, F.col("id_a") == F.col("a.id"))
        .join(b, F.col("id_b") == F.col("b.id"))
        .select("id_a", "id_b", cosine_udf(dim)(F.col("a.embedding"), F.col("b.embedding")).alias("cosine"))
    )
    return scored.where(F.col("cosine") >= min_cosine)


def exact_neighbours(items: DataFrame, queries: DataFrame, dim: int, min_cosine: float) -> DataFrame:
    """Exact search, the reference LSH is measured against: (query, id, cosine) for every item
    (id, embedding) within ``min_cosine`` of one of a few ``queries`` (id, embedding), the query
    itself left out. The queries (a sample: hundreds, not millions) are collected and shipped to
    every task; the items are scanned once."""
    rows = queries.select("id", "embedding").collect()
    query_ids = np.array([row["id"] for row in rows], dtype=np.int64)
    query_vectors = decode([row["embedding"] for row in rows], dim) if rows else np.zeros((0, dim), np.float32)
    query_vectors = query_vectors / np.maximum(np.linalg.norm(query_vectors, axis=1, keepdims=True), 1e-12)

    def scan(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            frame = frame[frame["embedding"].notna()]
            matrix = decode(frame["embedding"], dim)
            matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
            sims = matrix @ query_vectors.T
            item_at, query_at = np.nonzero(sims >= min_cosine)
            ids = frame["id"].to_numpy(np.int64)[item_at]
            found = pd.DataFrame(
                {"query": query_ids[query_at], "id": ids, "cosine": sims[item_at, query_at].astype(np.float64)}
            )
            yield found[found["query"] != found["id"]]

    return items.select("id", "embedding").mapInPandas(scan, "query long, id long, cosine double")


def lsh_summary(found: CosineCandidates) -> dict[str, Any]:
    """The plan and the skipped buckets (logged when any), for the job's manifest."""
    skipped, members = found.count_skipped()
    return {"rows": found.plan.rows, "bands": found.plan.bands, "skipped_buckets": skipped,
            "rows_in_skipped_buckets": members}  # fmt: skip
