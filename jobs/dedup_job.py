"""The dedup job: catalog dump in, duplicate groups out. Wires the stages of ``dedup``.

Run it with ``dedup run --catalog PATH --out DIR`` (local mode) or through ``spark-submit.sh``
(this file is the application spark-submit runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from pyspark.sql import SparkSession

from dedup import groups, incremental, outputs, rule
from dedup.config import load_config
from dedup.progress import StageClock
from dedup.rule import Rule
from dedup.session import build_session
from dedup.settings import typed
from jobs import stages
from jobs.manifest import Run, build_manifest


def run_job(
    spark: SparkSession, cfg: dict[str, Any], catalog: str, out: str, echo: bool = True, previous: str | None = None
) -> dict[str, Any]:
    """Run every stage (jobs/stages.py) at the settings ``cfg`` (a merged config, typed here once:
    dedup/settings.py); write the outputs under ``out``; return the manifest.
    ``previous``: an earlier run's output whose downloads and features are reused (dedup/incremental.py)."""
    settings = typed(cfg)
    clock = StageClock(echo=echo)
    started = time.time()
    work = f"{out}/_work"  # intermediate tables, removed at the end
    spark.sparkContext.setCheckpointDir(f"{work}/checkpoints")
    # manifest.json marks a finished run whose outputs all belong together: it goes first and
    # comes back last, so a reader never takes a half-rewritten output folder for a result
    outputs.remove_tree(spark, f"{out}/manifest.json")

    with clock.stage("ingest") as note:
        ingested = stages.ingest_stage(spark, catalog, settings.ingest, work, out)
        note(**ingested.counts())
    with clock.stage("fetch") as note:
        fetched = stages.fetch_stage(spark, ingested, settings.fetch, out, work, previous)
        note(**fetched.counts())
    with clock.stage("features") as note:
        made = stages.features_stage(spark, fetched, settings.features, settings.embed, out, previous)
        note(**made.counts())
    with clock.stage("candidates") as note:
        duplicate_rule = Rule.of(settings, made.dim)  # the rule, once: dedup/rule.py
        found = stages.candidates_stage(
            ingested, made, duplicate_rule, work, hash_settings=settings.hash, exact_settings=settings.exact,
            cosine_settings=settings.cosine,
        )  # fmt: skip
        note(**found.counts())
    with clock.stage("verify") as note:
        verified = stages.verify_stage(found, made, work, out)
        note(**verified.counts())
    with clock.stage("groups") as note:
        grouped = stages.groups_stage(spark, verified, found, ingested, fetched, settings.groups, work, out, previous)
        note(**grouped.counts())
    with clock.stage("outputs") as note:
        statuses = stages.outputs_stage(spark, ingested, fetched, made, grouped, settings.output, out)
        note(**statuses.counts())

    run = Run(catalog, out, previous, cfg, started, ingested, fetched, made, found, verified, grouped, statuses)
    manifest = build_manifest(run, clock.seconds, spark.version)
    outputs.write_text(spark, f"{out}/manifest.json", [outputs.manifest_json(manifest)])
    clock.say(
        f"done: {manifest['rows_read']} rows, {manifest['rows_ok']} ok, {manifest['rows_rejected']} rejected, "
        f"{manifest['rows_failed']} failed; {manifest['pairs']} pairs in {manifest['groups']} groups -> {out}"
    )
    if not manifest["reconciles"]:
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
        settings = typed(cfg)
        rule.check_settings(settings)
        groups.parse_keep_rule(settings.groups.keep_rule)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        print(f"dedup: bad configuration: {exc}", file=sys.stderr)
        return 2
    spark = build_session(settings.spark)
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
