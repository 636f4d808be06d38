"""Cosine candidates with bounded work per product: each product's ``k`` nearest neighbours by
embedding, at or above a cosine floor, found by IVF partitioning in Spark.

Why not pairs above a threshold: on catalog photos (many white-background shots of one cut) the
share of pairs above any useful floor does not shrink as the catalog grows, so pairs above it
grow as N², and so does the photo check after them (docs/BENCHMARKS.md, issue 12). The ``k``
nearest neighbours are at most ``k`` per product at any N, and hold a copy even when an edit
(a quarter turn, a crop) moves its cosine below the old floor.

How (nothing on the driver grows with N but the centroid table, ``cells`` x ``dim``, capped by
``cosine.max_cells``):

1. ``cells = ceil(n / cosine.cell_size)`` centroids, trained with faiss k-means (spherical) on a
   seeded sample of at most ``cosine.train_sample`` vectors, drawn by a seeded hash of the id
   (the same vectors, in the same order, however the rows are partitioned: the same candidates).
2. Each vector is assigned to its ``cosine.probes`` nearest cells (``mapInPandas``; with many
   cells through a faiss IVF index over the centroids, so assigning costs ``O(sqrt(cells))``).
3. Each cell's members meet in one ``applyInPandas`` group: exact top-``k`` by inner product
   (faiss ``IndexFlatIP``). A cell over ``cosine.split_factor x cell_size`` members is split by
   k-means inside the task into sub-cells (each member in its ``probes`` nearest); a sub-cell
   k-means cannot split (near-identical vectors) is searched in seeded blocks of ``cell_size``,
   and its members are counted (``rows_in_blocks``). A cell over ``cosine.max_group_rows`` is
   cut into that many rows per group by a hash of the id before it reaches a task (memory), also
   counted (``rows_in_cut_cells``). Nothing is skipped.
4. Per product: its best ``k`` distinct neighbours over every cell it was in, kept at
   ``cosine >= floor``, and the whole image's nearest ``cosine.nearest`` at any cosine (a heavily
   edited copy's original is often its nearest product, under the floor; a region vector's stay
   at the floor); pairs (id_a < id_b) distinct, with their cosine.

A product with a content region (``region_embedding``, :mod:`dedup.content`: a banner, a
screenshot, a large pad) takes part with both vectors: the region vector is assigned to cells
like any other and finds its own best ``k`` among the whole-image vectors there (step 4 per
vector), and the product's neighbours are the union. Only whole-image vectors are searched, so
every other product's neighbours are what they would be without regions, and two regions never
meet (the same screenshot template's picture is not a copy); a product is never its own
neighbour. Only the few products with a region add up to ``k`` pairs each.

Recall against exact kNN is measured on a sample by ``bench/knn_scale.py`` (docs/BENCHMARKS.md).

>>> from dedup.settings import default_table
>>> plan_cells(10_000, default_table("cosine", cell_size=2000, max_cells=4096))
5
>>> plan_cells(50, default_table("cosine", cell_size=2000, max_cells=4096))
1
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from dedup.cosine import decode
from dedup.settings import CosineSettings

log = logging.getLogger(__name__)
NEIGHBOUR_SCHEMA = "id long, slot int, nbr long, cosine float, blocked long"  # slot 1: the region vector
_IVF_FROM_CELLS = 1024  # above this many cells, assign through a faiss IVF index over the centroids


_DRAW_RANGE = 1 << 30  # the training sample keeps a row whose seeded id hash, modulo this, is under its share of it


def check_settings(settings: CosineSettings) -> None:
    """Refuse ``cosine`` settings that cannot work (ValueError with the reason), before Spark starts."""
    if settings.method not in ("knn", "lsh"):
        raise ValueError(f"cosine.method must be knn or lsh, got {settings.method!r}")
    for key in ("k", "cell_size", "probes", "train_sample", "max_cells", "split_factor", "max_group_rows"):
        if getattr(settings, key) < 1:
            raise ValueError(f"cosine.{key} must be at least 1, got {getattr(settings, key)}")
    if not 0 <= settings.nearest <= settings.k:
        raise ValueError(f"cosine.nearest must be 0 to cosine.k ({settings.k}), got {settings.nearest}")
    if settings.probes > settings.split_factor:  # a split cell's parts would average over the split point
        raise ValueError(f"cosine.probes ({settings.probes}) must be at most cosine.split_factor "
                         f"({settings.split_factor}): a cell is split when over split_factor x cell_size members, "
                         "into parts each member joins probes of")  # fmt: skip


def plan_cells(n_items: int, settings: CosineSettings) -> int:
    """How many cells ``n_items`` vectors are partitioned into: ``ceil(n / cosine.cell_size)``,
    at most ``cosine.max_cells``."""
    return max(1, min(settings.max_cells, math.ceil(n_items / settings.cell_size)))


def unit_rows(blobs: pd.Series, dim: int) -> np.ndarray:
    """Stored embeddings as unit-norm float32 rows (C-contiguous, as faiss wants them)."""
    x = decode(blobs, dim)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=np.float32)


def train_centroids(sample: np.ndarray, cells: int, seed: int, iterations: int = 20) -> np.ndarray:
    """``cells`` unit centroids of ``sample`` rows (faiss spherical k-means, seeded)."""
    import faiss

    cells = max(1, min(cells, len(sample)))
    if cells == 1:
        centroid = sample.mean(axis=0, keepdims=True)
        return (centroid / max(float(np.linalg.norm(centroid)), 1e-12)).astype(np.float32)
    kmeans = faiss.Kmeans(sample.shape[1], cells, niter=iterations, seed=seed, spherical=True,
                          max_points_per_centroid=max(256, math.ceil(len(sample) / cells)), verbose=False)  # fmt: skip
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def nearest_cells(vectors: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """(n, probes) indices of each vector's nearest centroids by inner product: exact (flat)
    up to ``_IVF_FROM_CELLS`` centroids, else through an IVF index over them."""
    import faiss

    probes = min(probes, len(centroids))
    dim = centroids.shape[1]
    if len(centroids) <= _IVF_FROM_CELLS:
        index = faiss.IndexFlatIP(dim)
    else:
        coarse = max(8, int(math.sqrt(len(centroids))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, coarse, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1
        index.train(centroids)
        index.nprobe = max(4, coarse // 8)
    index.add(centroids)
    _, cells = index.search(vectors, probes)
    return cells


def top_k(
    ids: np.ndarray, vectors: np.ndarray, k: int, indexed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-``k`` neighbours (self left out) of every row among the rows (only among those
    where ``indexed`` is true, when given): (id, nbr, cosine)."""
    import faiss

    targets = np.arange(len(ids)) if indexed is None else np.flatnonzero(indexed)
    if len(ids) < 2 or len(targets) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors[targets]))
    sims, at = index.search(vectors, min(k + 1, len(targets)))
    rows = np.repeat(np.arange(len(ids)), at.shape[1])
    cols, sims = at.ravel(), sims.ravel()
    cols = np.where(cols >= 0, targets[np.maximum(cols, 0)], -1)
    keep = (cols >= 0) & (cols != rows)
    return ids[rows[keep]], ids[cols[keep]], sims[keep]


def cell_neighbours(
    ids: np.ndarray,
    vectors: np.ndarray,
    k: int,
    cell_size: int,
    split_at: int,
    probes: int,
    seed: int,
    indexed: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int]:
    """Top-``k`` within one cell (among the ``indexed`` rows, when given), splitting it when over
    ``split_at`` rows (module doc, step 3); returns the neighbour rows and how many members were
    searched in blocks."""
    if indexed is None:
        indexed = np.ones(len(ids), bool)
    if len(ids) <= split_at:
        return top_k(ids, vectors, k, indexed), 0
    parts = train_centroids(vectors, math.ceil(len(ids) / cell_size), seed)
    assigned = nearest_cells(vectors, parts, probes)
    found, blocked = [], 0
    rng = np.random.default_rng(seed)
    for part in range(len(parts)):
        members = np.flatnonzero((assigned == part).any(axis=1))
        if len(members) > split_at:  # k-means could not split it: near-identical vectors
            blocked += len(members)
            members = rng.permutation(members)
            blocks = [members[i : i + cell_size] for i in range(0, len(members), cell_size)]
        else:
            blocks = [members]
        found += [top_k(ids[b], vectors[b], k, indexed[b]) for b in blocks]
    if not found:
        return top_k(ids[:0], vectors[:0], k), blocked
    return tuple(np.concatenate(column) for column in zip(*found, strict=True)), blocked


@dataclass
class KnnCandidates:
    """Pairs (id_a < id_b) among each product's ``k`` nearest neighbours (at ``cosine >= floor``
    but for the ``cosine.nearest`` nearest), and the figures of the partition for the manifest
    (:meth:`summary`)."""

    pairs: DataFrame
    cells: int
    sample: int
    neighbours: DataFrame  # (id, nbr, cosine) before the floor and the top-k cut, persisted
    cell_sizes: DataFrame  # (cell, count)
    settings: CosineSettings

    def summary(self) -> dict[str, Any]:
        """Cells, their sizes, and the members searched in blocks or cut cells (never skipped)."""
        split_at = self.settings.split_factor * self.settings.cell_size
        cut_at = self.settings.max_group_rows
        sizes = self.cell_sizes.agg(
            F.max("count").alias("largest"),
            F.sum(F.when(F.col("count") > split_at, F.col("count")).otherwise(0)).alias("split"),
            F.sum(F.when(F.col("count") > cut_at, F.col("count")).otherwise(0)).alias("cut"),
        ).first()
        blocked = self.neighbours.where("id < 0").agg(F.sum("blocked")).first()[0]
        summary = {"method": "knn", "k": self.settings.k, "nearest": self.settings.nearest, "cells": self.cells,
                   "probes": self.settings.probes, "train_sample": self.sample,
                   "largest_cell": int(sizes["largest"] or 0), "rows_in_split_cells": int(sizes["split"] or 0),
                   "rows_in_blocks": int(blocked or 0), "rows_in_cut_cells": int(sizes["cut"] or 0),
                   "skipped_rows": 0}  # fmt: skip
        if summary["rows_in_blocks"] or summary["rows_in_cut_cells"]:
            log.warning("cosine kNN: %s", summary)
        return summary

    def release(self) -> None:
        self.neighbours.unpersist()


def _one_thread_per_task() -> None:
    """faiss (OpenMP) on one thread: Spark runs a task per core already."""
    import faiss

    faiss.omp_set_num_threads(1)


def _assign(centroids: np.ndarray, dim: int, probes: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def assign(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        _one_thread_per_task()
        for frame in batches:
            cells = nearest_cells(unit_rows(frame["embedding"], dim), centroids, probes)
            yield pd.DataFrame({
                "cell": cells.ravel().astype(np.int64),
                "id": np.repeat(frame["id"].to_numpy(np.int64), cells.shape[1]),
                "slot": np.repeat(frame["slot"].to_numpy(np.int32), cells.shape[1]),
                "embedding": np.repeat(frame["embedding"].to_numpy(object), cells.shape[1]),
            })[lambda f: f["cell"] >= 0]  # fmt: skip

    return assign


def _search(settings: CosineSettings, dim: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    k, cell_size, probes = settings.k, settings.cell_size, settings.probes
    split_at, seed = settings.split_factor * cell_size, settings.seed

    def search(frame: pd.DataFrame) -> pd.DataFrame:
        _one_thread_per_task()
        frame = frame.sort_values(["id", "slot"], ignore_index=True)  # a split cell's k-means: the same in any order
        ids, slots = frame["id"].to_numpy(np.int64), frame["slot"].to_numpy(np.int32)
        rows = np.arange(len(ids), dtype=np.int64)  # searched by row: a product may hold two vectors here
        # every vector asks; only whole-image vectors answer (a region meets no other region: the
        # same screenshot template's picture in two products' regions is not a copy)
        (a, b, cos), blocked = cell_neighbours(rows, unit_rows(frame["embedding"], dim), k, cell_size, split_at,
                                               probes, seed, slots == 0)  # fmt: skip
        other = ids[a] != ids[b]  # a region's own product's whole image is not its neighbour
        found = pd.DataFrame({"id": ids[a][other], "slot": slots[a][other], "nbr": ids[b][other],
                              "cosine": cos[other].astype(np.float32), "blocked": np.int64(0)})  # fmt: skip
        note = pd.DataFrame({"id": [-1], "slot": [np.int32(0)], "nbr": [-1], "cosine": [np.float32(0)],
                             "blocked": [blocked]})  # fmt: skip
        return pd.concat([found, note], ignore_index=True)

    return search


def knn_pairs(items: DataFrame, settings: CosineSettings, dim: int, n_items: int, floor: float) -> KnnCandidates:
    """(id_a, id_b, cosine) for each product of ``items`` (id long, embedding binary, and
    optionally region_embedding binary) and its ``cosine.k`` nearest neighbours at
    ``cosine >= floor``, the ``cosine.nearest`` nearest at any cosine (module doc). Null vectors
    take no part; ``n_items`` sizes the partition."""
    check_settings(settings)
    k = settings.k
    vectors = items.select("id", F.lit(0).alias("slot"), "embedding").where(F.col("embedding").isNotNull())
    if "region_embedding" in items.columns:
        regions = items.select("id", F.lit(1).alias("slot"), F.col("region_embedding").alias("embedding"))
        vectors = vectors.unionByName(regions.where(F.col("embedding").isNotNull()))
    cells = plan_cells(n_items, settings)
    seed = settings.seed
    sample_rows = 0
    if cells > 1:
        limit = settings.train_sample
        # trained on whole-image vectors only: the cells are those a run without regions makes;
        # the sample is the rows of lowest seeded id hash, so it is the same whatever the rows' order
        whole = vectors.where(F.col("slot") == 0).withColumn("drawn", F.xxhash64("id", F.lit(seed)))
        within = F.pmod(F.col("drawn"), F.lit(_DRAW_RANGE)) < int(_DRAW_RANGE * min(1.0, 1.2 * limit / max(1, n_items)))
        rows = whole.where(within).orderBy("drawn", "id").limit(limit).collect()  # bounded: train_sample rows
        sample_rows = len(rows)
        centroids = train_centroids(unit_rows(pd.Series([r["embedding"] for r in rows]), dim), cells, seed)
        cells = len(centroids)
        assigned = vectors.mapInPandas(_assign(centroids, dim, settings.probes),
                                       "cell long, id long, slot int, embedding binary")  # fmt: skip
    else:
        assigned = vectors.select(F.lit(0).cast("long").alias("cell"), "id", "slot", "embedding")
    cell_sizes = assigned.groupBy("cell").count()
    cut_at = settings.max_group_rows
    parts = F.greatest(F.lit(1), F.ceil(F.col("count") / cut_at)).cast("long")
    grouped = assigned.join(F.broadcast(cell_sizes), "cell").withColumn(
        "part", F.pmod(F.xxhash64("id"), parts)
    )  # a cell over max_group_rows is cut into groups a task can hold (counted: rows_in_cut_cells)
    neighbours = grouped.groupBy("cell", "part").applyInPandas(_search(settings, dim), NEIGHBOUR_SCHEMA).persist()
    best = Window.partitionBy("id", "slot").orderBy(F.col("cosine").desc(), F.col("nbr"))
    # under the floor, only a whole image's nearest: a region's (a banner's pasted photo, embedded
    # small) are as often its template's other products or a colour variant (issue 14 phase 29)
    under_floor = (F.col("rank") <= settings.nearest) & (F.col("slot") == 0)
    top = (
        neighbours.where("id >= 0")
        .groupBy("id", "slot", "nbr")  # one row per neighbour: its best vector, over every cell searched
        .agg(F.max("cosine").alias("cosine"))
        .withColumn("rank", F.row_number().over(best))
        .where((F.col("rank") <= k) & ((F.col("cosine") >= floor) | under_floor))
    )
    pairs = (
        top.select(F.least("id", "nbr").alias("id_a"), F.greatest("id", "nbr").alias("id_b"), "cosine")
        .groupBy("id_a", "id_b")
        .agg(F.max("cosine").cast("double").alias("cosine"))
    )
    return KnnCandidates(pairs, cells, sample_rows, neighbours, cell_sizes, settings)
