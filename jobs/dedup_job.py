"""The dedup job: catalog dump in, duplicate groups out. Wires the stages of ``dedup``.

Run it with ``dedup run --catalog PATH --out DIR`` (local mode) or through ``spark-submit.sh``
(this file is the application spark-submit runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import PIL
import pyarrow
import pyspark
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import dedup
from dedup import (
    candidates,
    cosine,
    embed,
    features,
    fetch,
    fetchstore,
    groups,
    incremental,
    ingest,
    knn,
    outputs,
    verify,
)
from dedup.config import load_config
from dedup.progress import StageClock
from dedup.session import build_session


def ingest_stage(
    spark: SparkSession, catalog: str, settings: dict[str, Any], work: str, out: str
) -> tuple[ingest.Ingested, DataFrame, dict[str, int], int]:
    """The ingest stage: the rows to ``work``/rows, the rejects to ``out``/rejects; returns the
    split (read back), the rejects, their counts by reason and the number of valid products."""
    rows = ingest.validate(ingest.read_catalog(spark, catalog, settings), settings)
    rows.write.mode("overwrite").parquet(f"{work}/rows")
    rows = spark.read.parquet(f"{work}/rows")
    # repeated productIds: found once over two columns, then joined (by broadcast when few) by every
    # reader of the products, so the wide rows are never shuffled
    ingest.repeated_lines(rows).write.mode("overwrite").parquet(f"{work}/repeated")
    ingested = ingest.split(rows, spark.read.parquet(f"{work}/repeated"))
    ingested.rejects.write.mode("overwrite").parquet(f"{out}/rejects")
    rejects = spark.read.parquet(f"{out}/rejects")
    return ingested, rejects, outputs.counts_by(rejects, "reason"), ingested.products.count()


def cosine_candidates(
    items: DataFrame, settings: dict[str, Any], dim: int, n_items: int, floor: float
) -> knn.KnnCandidates | cosine.CosineCandidates:
    """The cosine candidates of ``cosine.method``: each product's ``k`` nearest neighbours at or
    above ``floor`` (knn), or every pair at or above it (lsh)."""
    knn.check_settings(settings)
    if settings.get("method", "knn") == "knn":
        return knn.knn_pairs(items, settings, dim, n_items, floor)
    return cosine.cosine_pairs(items, {**settings, "min_cosine": floor}, dim, n_items)


def run_job(
    spark: SparkSession, cfg: dict[str, Any], catalog: str, out: str, echo: bool = True, previous: str | None = None
) -> dict[str, Any]:
    """Run every stage; write the outputs under ``out``; return the manifest. ``previous``: an
    earlier run's output whose downloads and features are reused (dedup/incremental.py)."""
    clock = StageClock(echo=echo)
    started = time.time()
    work = f"{out}/_work"
    spark.sparkContext.setCheckpointDir(f"{work}/checkpoints")
    # manifest.json marks a finished run whose outputs all belong together: it goes first and
    # comes back last, so a reader never takes a half-rewritten output folder for a result
    outputs.remove_tree(spark, f"{out}/manifest.json")

    with clock.stage("ingest") as note:
        ingested, rejects, rejected_by_reason, n_valid = ingest_stage(spark, catalog, cfg["ingest"], work, out)
        n_rejected = sum(rejected_by_reason.values())
        note(rows=n_valid + n_rejected, valid=n_valid, rejected=n_rejected)

    with clock.stage("fetch") as note:
        images_path = f"{out}/images"
        n_carried = incremental.seed_images(ingested.products, previous, images_path) if previous else 0
        already = fetchstore.read_images(spark, images_path)
        fetch_run = fetchstore.fetch_and_commit(ingested.products, cfg["fetch"], images_path, f"{work}/todo", already)
        n_downloaded = fetch_run.rows
        # outcomes without the bytes: ranking them shuffles a few columns, not every image
        fetched = fetch.latest_results(fetchstore.read_images(spark, images_path).drop("image_bytes")).join(
            ingested.products.select("productId", "image_url"), ["productId", "image_url"], "left_semi"
        )
        by_status = outputs.counts_by(fetched, "fetch_status")
        note(
            rows=n_downloaded,
            reused=n_valid - n_downloaded,
            from_previous=n_carried,
            ok=by_status.get("ok", 0),
            failed=by_status.get("failed", 0),
            files=fetch_run.files,
            commit_s=round(fetch_run.commit_s, 2),
        )

    with clock.stage("features") as note:
        # An ok image is never fetched twice into one output (the fetch stage skips ok keys), so
        # ok rows and their features are unique per key and need no ranking or dedup shuffle;
        # images of products no longer in the catalog drop out when features meet products.
        ok_images = fetchstore.read_images(spark, images_path).where(F.col("fetch_status") == "ok")

        def compute(images: DataFrame) -> DataFrame:
            embed_cfg = embed.stage_model_files(spark, cfg["embed"]) if features.embedding_on(cfg["embed"]) else None
            return features.compute_features(images, cfg["features"], embed_cfg)

        made = incremental.reuse_features(ok_images, compute, cfg, previous)
        made.table.write.mode("overwrite").parquet(f"{out}/features")
        feats = spark.read.parquet(f"{out}/features")
        by_status = outputs.counts_by(feats, "feature_status")
        n_features = sum(by_status.values())
        dim = features.embedding_dim(feats, cfg["embed"])
        note(rows=n_features, ok=by_status.get("ok", 0), failed=by_status.get("failed", 0), reused=made.reused, dim=dim)

    with clock.stage("candidates") as note:
        items = (
            ingested.products.select(F.col("row_id").alias("id"), "productId", "image_url", "family")
            .join(feats.where(F.col("feature_status") == "ok"), ["productId", "image_url"])
            .select(
                "id",
                "productId",
                "image_url",
                "family",
                "sha256",
                "dhash",
                "dhash_flip",
                "thumb",
                *(["embedding"] if dim else []),
            )
        )
        items.write.mode("overwrite").parquet(f"{work}/items")
        items = spark.read.parquet(f"{work}/items")
        n_items = items.count()
        photo_checked = verify.photo_checked(cfg["verify"], embedded=bool(dim))
        near_distance = verify.near_candidate_distance(cfg["hash"], cfg["verify"], photo_checked)
        near = candidates.near_pairs(items, {**cfg["hash"], "max_distance": near_distance}, n_items)
        skipped = near.skipped_buckets.agg(F.count("*").alias("n"), F.sum("count").alias("rows")).first()
        found = candidates.exact_pairs(items, cfg["exact"]).unionByName(near.pairs)
        floor, decide = embed.cosine_thresholds(cfg["embed"], cfg) if dim else (None, None)
        cosine_cfg = {"dim": dim, "min_cosine": decide, "floor": floor} if dim else None
        if cosine_cfg:
            similar = cosine_candidates(items, cfg["cosine"], dim, n_items, floor)
            found = found.unionByName(similar.pairs.select("id_a", "id_b"))
        found.write.mode("overwrite").parquet(f"{work}/candidates")
        n_candidates = spark.read.parquet(f"{work}/candidates").count()
        cosine_lsh = None
        if cosine_cfg:
            cosine_lsh = similar.summary() if isinstance(similar, knn.KnnCandidates) else cosine.lsh_summary(similar)
            similar.release()
        note(rows=n_items, candidates=n_candidates, dhash_distance=near_distance, bands=list(near.plan.widths),
             radius=near.plan.radius, skipped_buckets=int(skipped["n"]), cosine_lsh=cosine_lsh)  # fmt: skip

    with clock.stage("verify") as note:
        photos = items.select("id", "productId", "image_url").join(ok_images, ["productId", "image_url"])
        photos = photos.select("id", "image_bytes")
        described = None
        if verify.photo_checked(cfg["verify"], embedded=bool(dim)):
            # the per-image part of the photo check, once per image that is in some candidate pair
            pair_ids = spark.read.parquet(f"{work}/candidates")
            pair_ids = pair_ids.select(F.col("id_a").alias("id")).union(pair_ids.select(F.col("id_b").alias("id")))
            verify.describe_images(photos.join(pair_ids.distinct(), "id", "left_semi")).write.mode("overwrite").parquet(
                f"{work}/described"
            )
            described = spark.read.parquet(f"{work}/described")
        scored = verify.score_pairs(
            spark.read.parquet(f"{work}/candidates"), items, cfg["hash"], cfg["verify"], cosine_cfg, photos, described
        )
        scored.write.mode("overwrite").parquet(f"{work}/scored")  # the photo check runs once, here
        scored = spark.read.parquet(f"{work}/scored")
        scored.drop("id_a", "id_b").write.mode("overwrite").parquet(f"{out}/candidates")
        verified = verify.kept_pairs(scored, cfg["verify"])
        verified.pairs.write.mode("overwrite").parquet(f"{work}/edges")
        edges = spark.read.parquet(f"{work}/edges")
        edges.select(*verify.PAIR_COLUMNS).write.mode("overwrite").parquet(f"{out}/pairs")
        pairs_by_method = outputs.counts_by(edges, "method")
        n_family = verified.family_excluded.count()
        note(rows=n_candidates, pairs=sum(pairs_by_method.values()), family_excluded=n_family)

    with clock.stage("groups") as note:
        built = groups.build_groups(edges, items, cfg["groups"])
        built.members.drop("id").write.mode("overwrite").parquet(f"{out}/groups")
        members = spark.read.parquet(f"{out}/groups")
        histogram = outputs.size_histogram(members)
        largest = members.agg(F.max("group_size")).first()[0] or 0
        n_oversized = members.where("oversized").select("group_id").distinct().count()
        note(rows=members.count(), groups=sum(histogram.values()), largest=largest, oversized=n_oversized)

    with clock.stage("outputs") as note:
        status = outputs.row_status(rejects, ingested.products, fetched, feats)
        status.write.mode("overwrite").parquet(f"{out}/status")
        status = spark.read.parquet(f"{out}/status")
        by_status = outputs.counts_by(status, "status")
        failures = outputs.counts_by(status.where("status = 'failed'"), "reason")
        if cfg["output"]["write_json"]:
            outputs.write_text(spark, f"{out}/duplicates.json", outputs.duplicates_json_pieces(members))
        note(rows=sum(by_status.values()), **by_status)

    manifest = {
        "catalog": catalog,
        "out": out,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows_read": n_valid + n_rejected,
        "rows_ok": by_status.get("ok", 0),
        "rows_rejected": by_status.get("rejected", 0),
        "rows_failed": by_status.get("failed", 0),
        "rejected_by_reason": rejected_by_reason,
        "failures_by_reason": failures,
        "images_downloaded": n_downloaded,
        "images_reused": n_valid - n_downloaded,
        "previous": previous,
        "images_from_previous": n_carried,
        "features_reused": made.reused,
        "features_computed": n_features - made.reused,
        "feature_settings_match": made.settings_match,
        "products_hashed": n_items,
        "candidates": n_candidates,
        "pairs": sum(pairs_by_method.values()),
        "pairs_by_method": pairs_by_method,
        "pairs_excluded_same_family": n_family,
        "lsh": {"band_widths": list(near.plan.widths), "probe_radius": near.plan.radius,
                "skipped_buckets": int(skipped["n"]), "rows_in_skipped_buckets": int(skipped["rows"] or 0)},
        "embedding": {"backend": cfg["embed"]["backend"], "dim": dim,
                      "candidate_cosine": floor, "min_cosine": decide, "cosine_lsh": cosine_lsh},
        "groups": sum(histogram.values()),
        "products_in_groups": clock.notes["groups"]["rows"],
        "group_sizes": histogram,
        "largest_group": largest,
        "groups_resplit": built.resplit_components,
        "groups_oversized": n_oversized,
        "stage_seconds": clock.seconds,
        "config": cfg,
        "versions": {
            "dedup": dedup.__version__, "python": platform.python_version(), "spark": spark.version,
            "pyspark": pyspark.__version__, "pyarrow": pyarrow.__version__, "pillow": PIL.__version__,
        },
    }  # fmt: skip
    reconciles = manifest["rows_read"] == manifest["rows_ok"] + manifest["rows_rejected"] + manifest["rows_failed"]
    manifest["reconciles"] = reconciles
    outputs.write_text(spark, f"{out}/manifest.json", [outputs.manifest_json(manifest)])
    clock.say(
        f"done: {manifest['rows_read']} rows, {manifest['rows_ok']} ok, {manifest['rows_rejected']} rejected, "
        f"{manifest['rows_failed']} failed; {manifest['pairs']} pairs in {manifest['groups']} groups -> {out}"
    )
    if not reconciles:
        raise RuntimeError(f"row counts do not reconcile; see {out}/manifest.json")
    outputs.remove_tree(spark, work)  # intermediate tables; images/ stays for the next run
    return manifest


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", required=True, help="catalog dump: CSV (or JSON lines), file or folder")
    parser.add_argument("--out", required=True, help="output folder (local, HDFS or object store)")
    parser.add_argument("--config", help="TOML profile, e.g. conf/local.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. fetch.allowed_hosts=127.0.0.1 (repeatable)")  # fmt: skip
    parser.add_argument("--previous", metavar="DIR",
                        help="an earlier run's output: reuse its images and features, fetch what changed")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dedup run", description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    config = args.config
    if config and not os.path.exists(config) and os.path.exists(os.path.basename(config)):
        config = os.path.basename(config)  # shipped with --files to a driver in cluster deploy mode
    try:
        cfg = load_config(config, args.overrides)
        embed.check_settings(cfg)
        knn.check_settings(cfg["cosine"])
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        print(f"dedup: bad configuration: {exc}", file=sys.stderr)
        return 2
    spark = build_session(cfg["spark"])
    try:
        if not outputs.path_exists(spark, args.catalog):
            print(f"dedup: catalog not found: {args.catalog}", file=sys.stderr)
            return 2
        unusable = args.previous and incremental.check_previous(spark, args.previous, args.out)
        if unusable:
            print(f"dedup: {unusable}", file=sys.stderr)
            return 2
        run_job(spark, cfg, args.catalog, args.out, previous=args.previous)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
