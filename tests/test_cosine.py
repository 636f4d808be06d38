import math

import numpy as np
import pytest

from dedup import cosine
from dedup.settings import default_table
from dedup.vectors import normalise, to_bytes

MIN_COSINE = 0.9


def settings(**changes):
    return default_table("cosine", method="lsh", **{"min_cosine": MIN_COSINE, "target_recall": 0.99} | changes)


def copy_at(base: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine exactly ``c`` to the unit vector ``base``."""
    side = rng.standard_normal(base.shape[0]).astype(np.float32)
    side = normalise((side - (side @ base) * base)[None, :])[0]
    return c * base + math.sqrt(1 - c * c) * side


def planted(dim: int, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """300 random unit vectors, then 40 copies at 0.95-0.99, 10 just under the threshold and 10 at 0.5."""
    rng = np.random.default_rng(seed)
    vectors = list(normalise(rng.standard_normal((300, dim))))
    cosines = [*np.linspace(0.95, 0.99, 40), *np.linspace(0.85, 0.895, 10), *[0.5] * 10]
    for k, c in enumerate(cosines):
        vectors.append(copy_at(vectors[k], float(c), rng))
    return np.stack(vectors).astype(np.float32), cosines


def frame(spark, vectors: np.ndarray, dtype: str):
    rows = [(i, to_bytes(v, dtype)) for i, v in enumerate(vectors)]
    return spark.createDataFrame(rows, "id long, embedding binary")


def test_bit_agreement_is_the_share_of_hyperplanes_that_do_not_split_a_pair():
    rng = np.random.default_rng(5)
    planes = cosine.hyperplanes(5, 64, 20_000)
    base = normalise(rng.standard_normal((1, 64)))[0]
    for c in (0.5, 0.9, 0.97):
        other = copy_at(base, c, rng)
        agree = float(np.mean((base @ planes > 0) == (other @ planes > 0)))
        assert agree == pytest.approx(cosine.bit_agreement(c), abs=0.01)


@pytest.mark.parametrize("n", [1_000, 100_000, 1_000_000])
@pytest.mark.parametrize("c", [0.8, 0.9, 0.95])
def test_plan_is_the_least_bands_reaching_the_recall_at_the_least_work(n, c):
    plan = cosine.plan_hyperplanes(c, 0.99, n)
    assert plan.recall(c) >= 0.99
    assert cosine.HyperplanePlan(plan.rows, plan.bands - 1, c).recall(c) < 0.99
    assert plan.recall(min(1.0, c + 0.03)) > plan.recall(c) > plan.recall(c - 0.1)

    def work(rows: int) -> float:
        bands = cosine.least_bands(c, 0.99, rows)
        if bands * rows > cosine.MAX_BITS:
            return math.inf
        return bands * (1 + cosine.PAIR_COST * n / 2**rows)

    assert work(plan.rows) <= min(work(plan.rows - 1), work(plan.rows + 1))
    assert 2**plan.rows >= n / 4  # buckets of unrelated vectors stay small


def test_plan_overrides_and_refusals():
    assert cosine.plan_hyperplanes(0.9, 0.99, 1000, rows=8, bands=3) == cosine.HyperplanePlan(8, 3, 0.9)
    assert cosine.plan_hyperplanes(0.9, 0.99, 1000, rows=8).bands == cosine.least_bands(0.9, 0.99, 8)
    with pytest.raises(ValueError, match="min_cosine"):
        cosine.plan_hyperplanes(0.0, 0.99, 1000)
    crowded = cosine.plan_hyperplanes(0.8, 0.99, 10**7)  # the least-work plan would need over 16,384 bits
    assert crowded.bits <= cosine.MAX_BITS and crowded.recall(0.8) >= 0.99
    with pytest.raises(ValueError, match="bits per vector"):
        cosine.plan_hyperplanes(0.5, 0.99, 10**7, rows=40)


@pytest.mark.parametrize(("dim", "dtype"), [(256, "float32"), (256, "float16"), (4096, "float16"), (4096, "float32")])
def test_every_pair_above_the_threshold_and_none_below(spark, dim, dtype):
    vectors, planted_cosines = planted(dim, seed=dim)
    stored = np.stack([np.frombuffer(to_bytes(v, dtype), dtype=dtype).astype(np.float32) for v in vectors])
    unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    sims = unit.astype(np.float64) @ unit.T.astype(np.float64)
    expected = {(i, j) for i in range(len(stored)) for j in range(i + 1, len(stored)) if sims[i, j] >= MIN_COSINE}
    assert {(k, 300 + k) for k in range(40)} <= expected  # the planted copies above the threshold
    assert len(expected) == 40  # random 256-d and 4096-d vectors are nowhere near 0.9

    found = cosine.cosine_pairs(frame(spark, vectors, dtype), settings(), dim, len(vectors))
    rows = found.pairs.collect()
    assert {(r["id_a"], r["id_b"]) for r in rows} == expected
    for r in rows:
        assert r["cosine"] == pytest.approx(float(sims[r["id_a"], r["id_b"]]), abs=1e-6)
        assert r["cosine"] == pytest.approx(planted_cosines[r["id_a"]], abs=2e-3 if dtype == "float16" else 1e-5)
    candidates = {(r["id_a"], r["id_b"]) for r in found.candidates.collect()}
    assert expected <= candidates
    assert all(a < b for a, b in candidates)
    assert found.count_skipped() == (0, 0)
    found.release()


def test_oversized_buckets_are_skipped_counted_and_logged(spark, caplog):
    rng = np.random.default_rng(3)
    crowd = normalise(rng.standard_normal((1, 64)))[0]
    pair = normalise(rng.standard_normal((1, 64)))[0]
    vectors = [crowd] * 6 + [pair, copy_at(pair, 0.99, rng)] + list(normalise(rng.standard_normal((20, 64))))
    items = frame(spark, np.stack(vectors), "float32")
    found = cosine.cosine_pairs(items, settings(max_bucket_size=5, rows=20), 64, len(vectors))
    assert {(r["id_a"], r["id_b"]) for r in found.pairs.collect()} == {(6, 7)}
    with caplog.at_level("WARNING", logger="dedup.cosine"):
        skipped, members = found.count_skipped()
    assert skipped == found.plan.bands  # the six identical vectors share every band
    assert members == 6 * found.plan.bands
    assert "skipped" in caplog.text
    sizes = {r["count"] for r in found.skipped_buckets.collect()}
    assert sizes == {6}
    found.release()


def test_cosine_udf_reads_float16_and_float32_and_nulls(spark):
    rng = np.random.default_rng(9)
    a, b = normalise(rng.standard_normal((2, 32)))
    rows = [
        (to_bytes(a, "float32"), to_bytes(b, "float32")),
        (to_bytes(a, "float16"), to_bytes(b, "float32")),
        (to_bytes(a, "float16"), to_bytes(a, "float16")),
        (to_bytes(a, "float32"), None),
    ]
    df = spark.createDataFrame(rows, "x binary, y binary")
    got = [r["c"] for r in df.select(cosine.cosine_udf(32)("x", "y").alias("c")).collect()]
    assert got[0] == pytest.approx(float(a @ b), abs=1e-6)
    assert got[1] == pytest.approx(float(a @ b), abs=2e-3)
    assert got[2] == pytest.approx(1.0, abs=1e-6)
    assert got[3] is None


def test_exact_neighbours_is_a_full_scan_for_the_queries(spark):
    vectors, _ = planted(128, seed=11)
    items = frame(spark, vectors, "float32")
    queries = items.where("id in (0, 5, 120, 305)")
    got = {(r["query"], r["id"]) for r in cosine.exact_neighbours(items, queries, 128, MIN_COSINE).collect()}
    assert got == {(0, 300), (5, 305), (305, 5)}


def test_the_same_vectors_give_the_same_pairs_and_skips_in_any_row_order(spark):
    """As the kNN (tests/test_knn.py), LSH must not change its answer with the rows' order: its
    keys come from the vectors and ``cosine.seed`` alone, and an oversized bucket is skipped whole."""
    from pyspark.sql import functions as F

    vectors, _ = planted(64, seed=5)
    crowd = np.repeat(vectors[:1], 6, axis=0)  # six identical vectors: a bucket over the cap in every band
    vectors = np.concatenate([vectors, crowd])
    table = settings(max_bucket_size=5, min_cosine=0.8)
    found = []
    for order in (F.col("id"), F.rand(1), F.rand(2)):
        items = frame(spark, vectors, "float32").repartition(3).orderBy(order).repartition(4, F.rand(7))
        run = cosine.cosine_pairs(items, table, 64, len(vectors))
        pairs = {(r["id_a"], r["id_b"]) for r in run.pairs.collect()}
        skipped = sorted((r["band"], r["value"], r["count"]) for r in run.skipped_buckets.collect())
        found.append((pairs, skipped))
        run.release()
    assert len(found[0][0]) >= 40 and len(found[0][1]) >= run.plan.bands
    assert found[0] == found[1] == found[2]
