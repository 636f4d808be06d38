"""Cosine kNN candidates: each product's k nearest neighbours, bounded per product, none skipped."""

from __future__ import annotations

import numpy as np
import pytest

from dedup import knn
from dedup.settings import default_table
from dedup.vectors import normalise, to_bytes

DIM = 32


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around 8 shared directions (a dense catalog: every cut shot alike)."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((8, DIM)))
    return normalise(centres[rng.integers(0, 8, n)] + 0.45 * rng.standard_normal((n, DIM)) / np.sqrt(DIM))


def frame(spark, vectors: np.ndarray):
    rows = [(i, to_bytes(v, "float16")) for i, v in enumerate(vectors)]
    return spark.createDataFrame(rows, "id long, embedding binary")


def exact_top(vectors: np.ndarray, k: int, floor: float, nearest: int = 0) -> set[tuple[int, int]]:
    """Every product's exact top-k at or above the floor (its top ``nearest`` at any cosine), as pairs (a < b)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -2)
    pairs = set()
    for i, row in enumerate(sims):
        for rank, j in enumerate(np.argsort(-row, kind="stable")[:k]):
            if row[j] >= floor or rank < nearest:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return pairs


def settings(**changes):
    return default_table("cosine", **changes)


@pytest.mark.parametrize("cell_size", [2000, 100])  # one cell (exact), then 12 cells with probes
def test_knn_pairs_are_each_products_nearest_neighbours(spark, cell_size):
    vectors = clustered(1200)
    stored = np.stack([np.frombuffer(to_bytes(v, "float16"), "<f2").astype(np.float32) for v in vectors])
    stored = normalise(stored)
    found = knn.knn_pairs(frame(spark, vectors), settings(k=5, cell_size=cell_size, nearest=0), DIM, len(vectors), 0.3)
    pairs = {(r["id_a"], r["id_b"]): r["cosine"] for r in found.pairs.collect()}
    truth = exact_top(stored, 5, 0.3)
    recall = len(truth & set(pairs)) / len(truth)
    assert recall == 1.0 if cell_size == 2000 else recall >= 0.9, recall
    assert all(c >= 0.3 for c in pairs.values())
    per_product = np.bincount([i for pair in pairs for i in pair], minlength=len(vectors))
    assert len(pairs) <= 5 * len(vectors) and per_product.mean() <= 2 * 5  # at most k pairs per product
    summary = found.summary()
    assert summary["cells"] == knn.plan_cells(1200, settings(cell_size=cell_size)) and summary["skipped_rows"] == 0
    found.release()


def test_the_nearest_neighbours_are_candidates_under_the_floor_by_default(spark):
    """A heavily edited copy (here: products 0-9, far from everything) still has its nearest
    ``cosine.nearest`` products as candidates, under the floor; the floor holds for the rest of k."""
    rng = np.random.default_rng(40)  # not the clusters' seed: the outliers are not their centres
    vectors = np.concatenate([normalise(rng.standard_normal((10, DIM))), clustered(300, 4)])
    stored = normalise(np.stack([np.frombuffer(to_bytes(v, "float16"), "<f2").astype(np.float32) for v in vectors]))
    floor, k, nearest = 0.7, settings().k, settings().nearest
    assert 0 < nearest < k and (stored[:10] @ stored[10:].T).max() < floor  # every neighbour of 0-9 is under it

    def outliers_pairs(**changes) -> set[tuple[int, int]]:
        found = knn.knn_pairs(frame(spark, vectors), settings(**changes), DIM, len(vectors), floor)
        return {(r["id_a"], r["id_b"]) for r in found.pairs.collect() if r["id_a"] < 10}

    expected = {pair for pair in exact_top(stored, k, floor, nearest) if pair[0] < 10}
    assert outliers_pairs() == expected and len(expected) >= 10 * nearest - 5  # each its nearest few (some shared)
    assert not outliers_pairs(nearest=0)  # the floor alone: no candidate


def test_an_oversized_cell_is_split_and_identical_vectors_are_searched_in_blocks(spark):
    rng = np.random.default_rng(3)
    vectors = np.concatenate([np.repeat(normalise(rng.standard_normal((1, DIM))), 300, axis=0), clustered(300, 1)])
    found = knn.knn_pairs(frame(spark, vectors), settings(k=3, cell_size=50, split_factor=2, probes=1), DIM,
                          len(vectors), 0.0)  # fmt: skip
    pairs = found.pairs.collect()
    summary = found.summary()
    assert summary["rows_in_split_cells"] > 0 and summary["rows_in_blocks"] >= 300, summary
    touched = {i for r in pairs for i in (r["id_a"], r["id_b"])}
    assert set(range(300)) <= touched  # every copy of the one image still has neighbours
    found.release()


def test_a_cell_too_large_for_one_task_is_cut_and_counted(spark):
    vectors = clustered(400, 2)
    found = knn.knn_pairs(frame(spark, vectors), settings(k=3, max_group_rows=150), DIM, len(vectors), 0.0)
    summary = found.summary()
    assert summary["rows_in_cut_cells"] == 400 and found.pairs.count() > 0
    found.release()


def test_settings_that_cannot_work_are_refused(spark):
    with pytest.raises(ValueError, match=r"cosine\.k"):
        knn.knn_pairs(frame(spark, clustered(10)), settings(k=0), DIM, 10, 0.5)
    with pytest.raises(ValueError, match=r"cosine\.method"):
        knn.check_settings(settings(method="annoy"))
    with pytest.raises(ValueError, match=r"cosine\.probes \(3\) must be at most cosine\.split_factor \(2\)"):
        knn.check_settings(settings(split_factor=2))  # every part of a split cell would hold every member
    with pytest.raises(ValueError, match=r"cosine\.nearest must be 0 to cosine\.k \(5\), got 6"):
        knn.check_settings(settings(nearest=6))
    knn.check_settings(settings(method="lsh"))


@pytest.mark.parametrize("cell_size", [2000, 60])  # one cell, then cells with probes and a split
def test_a_region_vector_finds_its_own_neighbours_among_whole_images_only(spark, cell_size):
    """Products 0-3 hold a second (region) vector near product 100+i's image; products 4 and 5
    hold the same region vector (a screenshot template's picture), near no product's image."""
    rng = np.random.default_rng(7)
    vectors = clustered(300, 4)
    regions: list[bytes | None] = [None] * len(vectors)
    for i in range(4):
        regions[i] = to_bytes(normalise((vectors[100 + i] + 0.05 * rng.standard_normal(DIM))[None])[0], "float16")
    template = normalise(rng.standard_normal((1, DIM)))[0]
    regions[4] = regions[5] = to_bytes(template, "float16")
    rows = [(i, to_bytes(v, "float16"), r) for i, (v, r) in enumerate(zip(vectors, regions, strict=True))]
    with_regions = spark.createDataFrame(rows, "id long, embedding binary, region_embedding binary")
    cfg = settings(k=5, cell_size=cell_size, split_factor=2, probes=2)
    found = knn.knn_pairs(with_regions, cfg, DIM, len(rows), 0.3)
    pairs = {(r["id_a"], r["id_b"]): r["cosine"] for r in found.pairs.collect()}
    found.release()
    plain = knn.knn_pairs(frame(spark, vectors), cfg, DIM, len(rows), 0.3)
    without = {(r["id_a"], r["id_b"]) for r in plain.pairs.collect()}
    plain.release()
    assert all((i, 100 + i) in pairs for i in range(4))  # each region found the image it shows
    assert not any((i, 100 + i) in without for i in range(4))
    assert pairs.get((4, 5), 0) < 0.99  # two regions never meet (the same vector: cosine 1)
    assert all(a != b for a, b in pairs)
    if cell_size == 2000:  # one exact cell: every product's whole-image neighbours are unchanged
        assert without <= set(pairs) and len(set(pairs) - without) <= 5 * 6

        def template_pairs(items) -> set[tuple[int, int]]:  # at a floor over the template's nearest (0.39-0.42)
            found = knn.knn_pairs(items, cfg, DIM, len(rows), 0.45)
            return {(r["id_a"], r["id_b"]) for r in found.pairs.collect() if {4, 5} & {r["id_a"], r["id_b"]}}

        assert template_pairs(with_regions) == template_pairs(frame(spark, vectors))  # a region's nearest: at the floor


@pytest.mark.parametrize("split_factor", [4, 1])  # cells searched whole, then split cells' own k-means
def test_the_same_vectors_give_the_same_pairs_in_any_row_order(spark, split_factor):
    """A nightly run must not change its answer because fetch finished in another order: the
    centroids' sample and a split cell's k-means did depend on the rows' order (on the new dev
    set's 16,115 vectors, 6,171 of ~38,950 cosine pairs differed between two orders)."""
    from pyspark.sql import functions as F

    vectors = clustered(1200, seed=3)
    table = settings(k=5, cell_size=100, probes=1, split_factor=split_factor)
    found = []
    for order in (F.col("id"), F.rand(1), F.rand(2)):
        items = frame(spark, vectors).repartition(3).orderBy(order).repartition(4, F.rand(7))
        candidates = knn.knn_pairs(items, table, DIM, len(vectors), 0.3)
        found.append({(r["id_a"], r["id_b"]) for r in candidates.pairs.collect()})
        candidates.release()
    assert len(found[0]) > 1000 and found[0] == found[1] == found[2]
