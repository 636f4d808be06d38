"""``dedup bench-set`` and ``dedup eval``: build a benchmark set, score a job's output against its truth."""

from __future__ import annotations

import argparse
import json
import os
import sys

from pyspark.sql import SparkSession

from dedup.devkit.benchset import build_bench_set
from dedup.devkit.evaluate import evaluate_output, report_table
from dedup.session import run_with_session


def bench_set_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dedup bench-set", description="Build a benchmark set from photos.")
    parser.add_argument("--photos", required=True, help="folder of original product photos")
    parser.add_argument("--out", required=True, help="folder for images/, catalog.csv, truth.csv, meta.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edits", default="v2", choices=["v2", "v1"],
                        help="edit generator: v2 (wide ranges, stacks, augly) or v1 (the first dev set)")  # fmt: skip
    parser.add_argument("--copied-share", type=float, help="share of photos given edited copies (v2 0.35, v1 0.3)")
    parser.add_argument("--augly-share", type=float,
                        help="v2: share of copies edited by augly (default 0.16 when augly is installed)")  # fmt: skip
    parser.add_argument("--holdout-share", type=float, default=0.5, help="share of photos in the holdout split")
    parser.add_argument("--base-url", default="http://127.0.0.1:8799", help="where images/ will be served")
    parser.add_argument("--limit", type=int, help="use a seeded sample of this many photos")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.photos):
        print(f"dedup: photo folder not found: {args.photos}", file=sys.stderr)
        return 2
    try:
        meta = build_bench_set(
            args.photos, args.out, args.seed, args.copied_share, args.holdout_share, args.base_url, args.limit,
            edits=args.edits, augly_share=args.augly_share,
        )  # fmt: skip
    except ValueError as exc:
        print(f"dedup: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(meta, indent=2))
    return 0


def eval_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dedup eval", description="Score a job's output against a truth file.")
    parser.add_argument("--truth", required=True, help="truth.csv of a bench set")
    parser.add_argument("--out", required=True, help="the job's output folder; eval-<split>.json/.md go here")
    parser.add_argument("--split", help="calibration or holdout (default: every listing)")
    parser.add_argument("--sweep-max", type=int, default=10, help="largest dHash distance swept")
    parser.add_argument("--min-precision", type=float, default=0.99)
    parser.add_argument("--config", help="TOML profile (Spark settings, the rule swept)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    for path in (args.truth, os.path.join(args.out, "groups"), os.path.join(args.out, "features")):
        if not os.path.exists(path):
            print(f"dedup: not found: {path}", file=sys.stderr)
            return 2

    def work(spark: SparkSession, cfg: dict) -> int:
        report = evaluate_output(
            spark, args.out, os.path.abspath(args.truth), cfg, args.split, args.sweep_max, args.min_precision
        )
        name = f"eval-{args.split or 'all'}"
        with open(os.path.join(args.out, f"{name}.json"), "w") as handle:
            json.dump(report, handle, indent=2)
        table = report_table(report)
        with open(os.path.join(args.out, f"{name}.md"), "w") as handle:
            handle.write(table)
        print(table, end="")
        return 0

    return run_with_session(args.config, args.overrides, work)
