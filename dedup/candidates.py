"""Candidates: pairs worth verifying, from exact bytes and from dHash LSH banding, all in Spark.

Exact: products whose image bytes share a sha256. A group of k identical images gives all
k(k-1)/2 pairs up to ``exact.max_pairs_group_size`` members; a bigger group (a placeholder
picture, say) gives k-1 star edges to its first member instead.

Near: every pair within Hamming distance ``t`` of 64-bit dHashes, found by multi-probe banding.
The hash is cut into ``m`` bands. If two hashes differ in at most ``t`` bits, then some band
differs in at most ``r = floor(t / m)`` bits (pigeonhole: were every band off by ``r + 1`` or
more, the total would be at least ``m (r + 1) > t``). So each product is indexed under its ``m``
band values, and probes every value within ``r`` bits of each of its bands (and of its mirrored
hash's bands). Every pair within ``t`` is found; no N x N loop. Buckets with more than
``hash.max_bucket_size`` members are skipped and counted, since one such bucket would cost
the square of its size (that is where the guarantee gives way, and it is reported).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from math import comb

from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F

from dedup.settings import ExactSettings, HashSettings

HASH_BITS = 64
MAX_PROBES = 5000  # bucket keys one hash may probe
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BandPlan:
    """How the 64 hash bits are cut: ``widths`` per band and the probe ``radius`` in each."""

    widths: tuple[int, ...]
    radius: int

    @property
    def probes_per_hash(self) -> int:
        return sum(sum(comb(w, i) for i in range(self.radius + 1)) for w in self.widths)


def plan_bands(max_distance: int, n_items: int, bands: int = 0) -> BandPlan:
    """The band plan for threshold ``max_distance`` over ``n_items`` hashes.

    With ``bands`` = 0, pick the number of bands ``m`` that minimises the expected work per
    item, probes plus bucket matches under uniform hashes: ``P(m) * (1 + n / 2**b)`` with
    ``P(m)`` probes per hash and ``b`` the narrowest band's width.

    >>> plan_bands(6, 1_000_000)
    BandPlan(widths=(22, 21, 21), radius=2)
    >>> plan_bands(0, 10)
    BandPlan(widths=(64,), radius=0)
    """
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"hash.max_distance must be in 0..63, got {max_distance}")

    def plan(m: int) -> BandPlan:
        base, extra = divmod(HASH_BITS, m)
        return BandPlan(tuple(base + 1 if i < extra else base for i in range(m)), max_distance // m)

    if bands:
        chosen = plan(bands)
        if chosen.probes_per_hash > MAX_PROBES:
            raise ValueError(f"hash.bands={bands} probes {chosen.probes_per_hash} keys per hash; use more bands")
        return chosen
    options = [plan(m) for m in range(1, max_distance + 2)]
    options = [p for p in options if p.probes_per_hash <= MAX_PROBES] or options[-1:]
    return min(options, key=lambda p: p.probes_per_hash * (1 + n_items / 2 ** min(p.widths)))


def _band_values(hash_col: Column, plan: BandPlan) -> list[Column]:
    """Each band of the hash as a non-negative long (bits taken from the low end)."""
    values, shift = [], 0
    for width in plan.widths:
        mask = (1 << width) - 1 if width < 64 else -1  # all 64 bits: -1 as a signed long
        values.append(F.shiftrightunsigned(hash_col, shift).bitwiseAND(F.lit(mask)))
        shift += width
    return values


def _masks(width: int, radius: int) -> list[int]:
    """Every XOR mask of at most ``radius`` set bits within ``width`` bits."""
    return [
        sum(1 << bit for bit in bits) for k in range(radius + 1) for bits in itertools.combinations(range(width), k)
    ]


def _probe_keys(band: int, value: Column, masks: list[int]) -> Column:
    """(band, value XOR mask) for every mask: the bucket keys one band of a hash probes."""
    return F.transform(
        F.array(*[F.lit(m) for m in masks]),
        lambda mask: F.struct(F.lit(band).alias("band"), value.bitwiseXOR(mask).alias("value")),
    )


def exact_pairs(items: DataFrame, settings: ExactSettings) -> DataFrame:
    """(id_a, id_b) with id_a < id_b for products with byte-identical images."""
    cap = settings.max_pairs_group_size
    sized = items.select("id", "sha256").withColumn("n", F.count("*").over(_window("sha256"))).where("n > 1")
    small = sized.where(F.col("n") <= cap)
    all_pairs = (
        small.alias("a")
        .join(small.alias("b"), "sha256")
        .where(F.col("a.id") < F.col("b.id"))
        .select(F.col("a.id").alias("id_a"), F.col("b.id").alias("id_b"))
    )
    big = sized.where(F.col("n") > cap).withColumn("root", F.min("id").over(_window("sha256")))
    stars = big.where(F.col("id") != F.col("root")).select(F.col("root").alias("id_a"), F.col("id").alias("id_b"))
    return all_pairs.unionByName(stars)


def _window(column: str) -> WindowSpec:
    return Window.partitionBy(column)


@dataclass
class NearCandidates:
    """Near pairs (id_a < id_b) and the buckets skipped for size."""

    pairs: DataFrame
    skipped_buckets: DataFrame
    plan: BandPlan


def near_pairs(items: DataFrame, settings: HashSettings, n_items: int) -> NearCandidates:
    """(id_a, id_b, distance) for every pair whose dHashes (or mirrored dHashes) are within
    ``hash.max_distance`` bits, found by banding; ``n_items`` sizes the plan."""
    t = settings.max_distance
    plan = plan_bands(t, n_items, settings.bands)
    cap = settings.max_bucket_size
    band_ids = list(range(len(plan.widths)))

    index = items.select(
        "id", "dhash",
        F.explode(F.arrays_zip(
            F.array(*[F.lit(b) for b in band_ids]).alias("band"),
            F.array(*_band_values(F.col("dhash"), plan)).alias("value"),
        )).alias("k"),
    ).select("id", "dhash", F.col("k.band").alias("band"), F.col("k.value").alias("value"))  # fmt: skip
    bucket_sizes = index.groupBy("band", "value").count()
    skipped = bucket_sizes.where(F.col("count") > cap)
    index = index.join(skipped.select("band", "value"), ["band", "value"], "left_anti")

    probe_hashes = [F.col("dhash")]
    if settings.match_flips:
        probe_hashes.append(F.col("dhash_flip"))
    probe_keys = []
    for probe_hash in probe_hashes:
        for band, value in zip(band_ids, _band_values(probe_hash, plan), strict=True):
            probe_keys.append(_probe_keys(band, value, _masks(plan.widths[band], plan.radius)))
    probes = items.select(
        F.col("id").alias("probe_id"),
        F.col("dhash").alias("probe_dhash"),
        F.col("dhash_flip").alias("probe_flip"),
        F.explode(F.array_distinct(F.flatten(F.array(*probe_keys)))).alias("k"),
    ).select("probe_id", "probe_dhash", "probe_flip", F.col("k.band").alias("band"), F.col("k.value").alias("value"))

    distance = F.bit_count(F.col("probe_dhash").bitwiseXOR(F.col("dhash")))
    if settings.match_flips:
        distance = F.least(distance, F.bit_count(F.col("probe_flip").bitwiseXOR(F.col("dhash"))))
    pairs = (
        probes.join(index, ["band", "value"])
        .where(F.col("probe_id") != F.col("id"))
        .withColumn("distance", distance)
        .where(F.col("distance") <= t)
        .select(
            F.least("probe_id", "id").alias("id_a"),
            F.greatest("probe_id", "id").alias("id_b"),
        )
        .distinct()
    )
    return NearCandidates(pairs=pairs, skipped_buckets=skipped, plan=plan)
