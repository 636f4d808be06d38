"""The job's stages as ``jobs/dedup_job.py`` runs them, one function per stage.

Each stage reads the tables of the stages before it and its own settings tables, writes its
tables (through :func:`dedup.outputs.materialise` where a later stage reads them back) and
returns a named result: its tables and its counts. ``counts()`` is what the stage's progress line
shows; ``jobs/manifest.py`` builds ``manifest.json`` from the results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dedup import candidates, cosine, embed, features, fetch, fetchstore, groups, incremental, ingest, knn, outputs
from dedup import verify as verification
from dedup.outputs import materialise
from dedup.rule import Rule
from dedup.settings import (  # the job's settings tables (dedup/settings.py)
    CosineSettings,
    EmbedSettings,
    ExactSettings,
    FeaturesSettings,
    FetchSettings,
    GroupsSettings,
    HashSettings,
    IngestSettings,
    OutputSettings,
)


@dataclass
class IngestResult:
    """The catalog split into products and rejects, with the rejects' counts by reason."""

    ingested: ingest.Ingested
    rejects: DataFrame
    rejected_by_reason: dict[str, int]
    n_valid: int

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def n_rows(self) -> int:
        return self.n_valid + self.n_rejected

    def counts(self) -> dict[str, Any]:
        return {"rows": self.n_rows, "valid": self.n_valid, "rejected": self.n_rejected}


def ingest_stage(spark: SparkSession, catalog: str, settings: IngestSettings, work: str, out: str) -> IngestResult:
    """The rows to ``work``/rows, the rejects to ``out``/rejects."""
    rows = materialise(ingest.validate(ingest.read_catalog(spark, catalog, settings), settings), f"{work}/rows")
    # repeated productIds: found once over two columns, then joined (by broadcast when few) by every
    # reader of the products, so the wide rows are never shuffled
    ingested = ingest.split(rows, materialise(ingest.repeated_lines(rows), f"{work}/repeated"))
    rejects = materialise(ingested.rejects, f"{out}/rejects")
    return IngestResult(ingested, rejects, outputs.counts_by(rejects, "reason"), ingested.products.count())


@dataclass
class FetchResult:
    """Each product's latest fetch outcome (without the bytes), and what this run downloaded."""

    images_path: str
    fetched: DataFrame
    by_status: dict[str, int]
    n_downloaded: int
    n_reused: int
    n_carried: int
    run: fetchstore.FetchRun

    def counts(self) -> dict[str, Any]:
        return {
            "rows": self.n_downloaded,
            "reused": self.n_reused,
            "from_previous": self.n_carried,
            "ok": self.by_status.get("ok", 0),
            "failed": self.by_status.get("failed", 0),
            "files": self.run.files,
            "commit_s": round(self.run.commit_s, 2),
        }


def fetch_stage(
    spark: SparkSession, ingested: IngestResult, settings: FetchSettings, out: str, work: str, previous: str | None
) -> FetchResult:
    """Download what ``out``/images lacks (seeded from ``previous``) and commit it there."""
    products = ingested.ingested.products
    images_path = f"{out}/images"
    n_carried = incremental.seed_images(products, previous, images_path) if previous else 0
    already = fetchstore.read_images(spark, images_path)
    run = fetchstore.fetch_and_commit(products, settings, images_path, f"{work}/todo", already)
    # outcomes without the bytes: ranking them shuffles a few columns, not every image
    fetched = fetch.latest_results(fetchstore.read_images(spark, images_path).drop("image_bytes")).join(
        products.select("productId", "image_url"), ["productId", "image_url"], "left_semi"
    )
    by_status = outputs.counts_by(fetched, "fetch_status")
    return FetchResult(images_path, fetched, by_status, run.rows, ingested.n_valid - run.rows, n_carried, run)


@dataclass
class FeaturesResult:
    """Every ok image's features (hashes, thumbnail, embedding), computed or reused."""

    ok_images: DataFrame
    table: DataFrame
    by_status: dict[str, int]
    dim: int
    made: incremental.Features

    @property
    def n_rows(self) -> int:
        return sum(self.by_status.values())

    def counts(self) -> dict[str, Any]:
        ok, failed = self.by_status.get("ok", 0), self.by_status.get("failed", 0)
        return {"rows": self.n_rows, "ok": ok, "failed": failed, "reused": self.made.reused, "dim": self.dim}


def features_stage(
    spark: SparkSession,
    fetched: FetchResult,
    features_settings: FeaturesSettings,
    embed_settings: EmbedSettings,
    out: str,
    previous: str | None,
) -> FeaturesResult:
    """Features of the ok images to ``out``/features, reused from ``previous`` where its settings match."""
    # An ok image is never fetched twice into one output (the fetch stage skips ok keys), so
    # ok rows and their features are unique per key and need no ranking or dedup shuffle;
    # images of products no longer in the catalog drop out when features meet products.
    ok_images = fetchstore.read_images(spark, fetched.images_path).where(F.col("fetch_status") == "ok")

    def compute(images: DataFrame) -> DataFrame:
        return features.compute_features(images, features_settings, embed.stage_model_files(spark, embed_settings))

    settings = incremental.feature_settings(features_settings, embed_settings)
    made = incremental.reuse_features(ok_images, compute, settings, previous)
    table = materialise(made.table, f"{out}/features")
    by_status = outputs.counts_by(table, "feature_status")
    return FeaturesResult(ok_images, table, by_status, features.embedding_dim(table, embed_settings), made)


@dataclass
class CandidatesResult:
    """The items (products with ok features) and their candidate pairs, with the plans that found them."""

    items: DataFrame
    n_items: int
    pairs_path: str
    n_candidates: int
    rule: Rule
    near_plan: candidates.BandPlan
    skipped_buckets: int
    rows_in_skipped_buckets: int
    cosine_lsh: dict[str, Any] | None

    def counts(self) -> dict[str, Any]:
        return {
            "rows": self.n_items,
            "candidates": self.n_candidates,
            "dhash_distance": self.rule.near_distance,
            "bands": list(self.near_plan.widths),
            "radius": self.near_plan.radius,
            "skipped_buckets": self.skipped_buckets,
            "cosine_lsh": self.cosine_lsh,
        }


def cosine_candidates(
    items: DataFrame, settings: CosineSettings, dim: int, n_items: int, floor: float
) -> knn.KnnCandidates | cosine.CosineCandidates:
    """The cosine candidates of ``cosine.method``: each product's ``k`` nearest neighbours at or
    above ``floor`` (knn), or every pair at or above it (lsh)."""
    knn.check_settings(settings)
    if settings.method == "knn":
        return knn.knn_pairs(items, settings, dim, n_items, floor)
    return cosine.cosine_pairs(items, replace(settings, min_cosine=floor), dim, n_items)


def candidates_stage(
    ingested: IngestResult,
    made: FeaturesResult,
    rule: Rule,
    work: str,
    *,
    hash_settings: HashSettings,
    exact_settings: ExactSettings,
    cosine_settings: CosineSettings,
) -> CandidatesResult:
    """Candidate pairs to ``work``/candidates: exact bytes, near dHash (within ``rule.near_distance``)
    and with embeddings, cosine (at or above ``rule.floor``)."""
    dim = made.dim
    embedding = ["embedding"] if dim else []
    if dim and "region_embedding" in made.table.columns:  # a content region's vector (dedup/content.py)
        embedding.append("region_embedding")
    items = (
        ingested.ingested.products.select(F.col("row_id").alias("id"), "productId", "image_url", "family")
        .join(made.table.where(F.col("feature_status") == "ok"), ["productId", "image_url"])
        .select("id", "productId", "image_url", "family", "sha256", "dhash", "dhash_flip", "thumb", *embedding)
    )
    items = materialise(items, f"{work}/items")
    n_items = items.count()
    near = candidates.near_pairs(items, replace(hash_settings, max_distance=rule.near_distance), n_items)
    skipped = near.skipped_buckets.agg(F.count("*").alias("n"), F.sum("count").alias("rows")).first()
    found = candidates.exact_pairs(items, exact_settings).unionByName(near.pairs)
    if dim:
        similar = cosine_candidates(items, cosine_settings, dim, n_items, rule.floor)
        found = found.unionByName(similar.pairs.select("id_a", "id_b"))
    pairs_path = f"{work}/candidates"
    n_candidates = materialise(found, pairs_path).count()
    cosine_lsh = None
    if dim:
        cosine_lsh = similar.summary() if isinstance(similar, knn.KnnCandidates) else cosine.lsh_summary(similar)
        similar.release()
    return CandidatesResult(
        items, n_items, pairs_path, n_candidates, rule, near.plan, int(skipped["n"]), int(skipped["rows"] or 0),
        cosine_lsh,
    )  # fmt: skip


@dataclass
class VerifyResult:
    """The kept pairs (the groups' edges), with their counts by method."""

    edges: DataFrame
    pairs_by_method: dict[str, int]
    n_family_excluded: int
    n_candidates: int

    @property
    def n_pairs(self) -> int:
        return sum(self.pairs_by_method.values())

    def counts(self) -> dict[str, Any]:
        return {"rows": self.n_candidates, "pairs": self.n_pairs, "family_excluded": self.n_family_excluded}


def verify_stage(found: CandidatesResult, made: FeaturesResult, work: str, out: str) -> VerifyResult:
    """Score every candidate pair (``out``/candidates) and keep those ``found.rule`` accepts (``out``/pairs)."""
    spark = found.items.sparkSession
    photos = found.items.select("id", "productId", "image_url").join(made.ok_images, ["productId", "image_url"])
    photos = photos.select("id", "image_bytes")
    described = None
    if found.rule.photo_checked:
        # the per-image part of the photo check, once per image that is in some candidate pair
        pair_ids = spark.read.parquet(found.pairs_path)
        pair_ids = pair_ids.select(F.col("id_a").alias("id")).union(pair_ids.select(F.col("id_b").alias("id")))
        described = verification.describe_images(photos.join(pair_ids.distinct(), "id", "left_semi"), found.rule)
        described = materialise(described, f"{work}/described")
    scored = verification.score_pairs(spark.read.parquet(found.pairs_path), found.items, found.rule, photos, described)
    scored = materialise(scored, f"{work}/scored")  # the photo check runs once, here
    scored.drop("id_a", "id_b").write.mode("overwrite").parquet(f"{out}/candidates")
    verified = verification.kept_pairs(scored, found.rule)
    edges = materialise(verified.pairs, f"{work}/edges")
    edges.select(*verification.PAIR_COLUMNS).write.mode("overwrite").parquet(f"{out}/pairs")
    pairs_by_method = outputs.counts_by(edges, "method")
    return VerifyResult(edges, pairs_by_method, verified.family_excluded.count(), found.n_candidates)


@dataclass
class GroupsResult:
    """The groups' members (ids kept from ``previous``, ranked to keep one), and what changed."""

    members: DataFrame
    n_members: int
    histogram: dict[str, int]
    largest: int
    n_oversized: int
    resplit_components: int
    bridges_cut: int
    changes_by_kind: dict[str, int]

    def counts(self) -> dict[str, Any]:
        found = {"rows": self.n_members, "groups": sum(self.histogram.values()), "largest": self.largest}
        return found | {"oversized": self.n_oversized} | {k: v for k, v in self.changes_by_kind.items() if v}


def groups_stage(
    spark: SparkSession,
    verified: VerifyResult,
    found: CandidatesResult,
    ingested: IngestResult,
    fetched: FetchResult,
    settings: GroupsSettings,
    work: str,
    out: str,
    previous: str | None,
) -> GroupsResult:
    """Connected components of the edges to ``out``/groups; their changes since ``previous`` to ``out``/changes."""
    built = groups.build_groups(verified.edges, found.items, settings)
    components = materialise(built.members.drop("id"), f"{work}/components")
    before = spark.read.parquet(f"{previous}/groups") if previous else None  # ids kept night to night
    named = groups.stable_ids(components, before)
    ranked = groups.rank_members(named, ingested.ingested.products, spark.read.parquet(fetched.images_path), settings)
    members = materialise(ranked, f"{out}/groups")
    changed = groups.changes(members, before)
    changed.where(F.col("change") != "unchanged").write.mode("overwrite").parquet(f"{out}/changes")
    changes_by_kind = {kind: 0 for kind in groups.CHANGE_KINDS} | outputs.counts_by(changed, "change")
    histogram = outputs.size_histogram(members)
    largest = members.agg(F.max("group_size")).first()[0] or 0
    n_oversized = members.where("oversized").select("group_id").distinct().count()
    return GroupsResult(
        members,
        members.count(),
        histogram,
        largest,
        n_oversized,
        built.resplit_components,
        built.bridges_cut,
        changes_by_kind,
    )


@dataclass
class OutputsResult:
    """Every input row's status (ok, rejected, failed) and the failures by reason."""

    by_status: dict[str, int]
    failures_by_reason: dict[str, int]

    def counts(self) -> dict[str, Any]:
        return {"rows": sum(self.by_status.values()), **self.by_status}


def outputs_stage(
    spark: SparkSession,
    ingested: IngestResult,
    fetched: FetchResult,
    made: FeaturesResult,
    grouped: GroupsResult,
    settings: OutputSettings,
    out: str,
) -> OutputsResult:
    """Each row's status to ``out``/status; ``duplicates.json`` and ``keep.json`` where ``write_json``."""
    status = outputs.row_status(ingested.rejects, ingested.ingested.products, fetched.fetched, made.table)
    status = materialise(status, f"{out}/status")
    by_status = outputs.counts_by(status, "status")
    failures = outputs.counts_by(status.where("status = 'failed'"), "reason")
    if settings.write_json:
        outputs.write_text(spark, f"{out}/duplicates.json", outputs.duplicates_json_pieces(grouped.members))
        outputs.write_text(spark, f"{out}/keep.json", outputs.keep_json_pieces(grouped.members))
    return OutputsResult(by_status, failures)
