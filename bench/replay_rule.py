"""Replay the duplicate rule (``dedup.rule.Rule``) over a finished run's scored candidates, and
check that it makes the run's decisions, pair by pair, and the run's holdout figures.

A run writes every candidate with every signal and the method that decided it (``candidates/``).
This rebuilds the rule from the run's recorded settings (its ``manifest.json``) with this
checkout's code and compares, over every candidate:

* ``Rule.decision()``, the Spark column the verify stage decides with, to the recorded ``method``;
* ``PhotoRule.decide`` (Python, one pair's scores) and ``PhotoRule.frame`` (pandas, the
  calibration replay's), each where the framed photos' embeddings agree (``Rule.regions_agree``),
  to the recorded ``photo`` decisions;
* ``Rule.photo_gate()`` to which pairs the run photo-checked (non-null ``photo``).

With ``--truth``, the replayed groups (components of the replayed duplicates, split by the run's
bridge guard, :mod:`dedup.bridges`; same-family pairs left out as the run left them out) are
scored on both splits next to the run's own ``groups/`` (``dedup.devkit.metrics.score_groups``;
the run's oversized-group re-split is not replayed).

    .venv/bin/python bench/replay_rule.py --job bench-out/dev1-final/job/default \\
        --truth bench-out/dev1-final/set/truth.csv [--out replay.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from dedup.config import job_settings_of
from dedup.devkit.benchrun import put_result, run_meta
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import regions_agree
from dedup.devkit.metrics import edge_components, score_groups
from dedup.photomatch import SCORE_FIELDS
from dedup.rule import Rule
from dedup.session import build_session
from dedup.settings import Settings, typed

SPARK = {"spark.master": "local[1]", "spark.driver.memory": "2g", "spark.ui.enabled": "false",
         "spark.sql.shuffle.partitions": "4", "spark.ui.showConsoleProgress": "false"}  # fmt: skip


def replay(job: Path, manifest: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], pd.DataFrame]:
    """Mismatch counts of the rule's three forms and its gate against the run's decisions, and
    the candidates with the replayed ``method`` (a, b, same_family, replayed); ``manifest`` and
    ``settings``: the run's (its ``manifest.json``, its settings as recorded there)."""
    rule = Rule.of(settings, int(manifest["embedding"]["dim"] or 0))
    spark = build_session(SPARK)
    try:
        scored = spark.read.parquet(str(job / "candidates"))
        replayed = scored.withColumn("replayed", rule.decision())
        counts = replayed.agg(
            F.count("*").alias("candidates"),
            F.sum((~F.col("method").eqNullSafe(F.col("replayed"))).cast("long")).alias("decision_mismatches"),
            F.sum(((F.col("method").isNull() | (F.col("method") != "exact"))
                   & (rule.photo_gate() != F.col("photo").isNotNull())).cast("long")).alias("gate_mismatches"),
        ).first().asDict()  # fmt: skip
        by_method = {r["replayed"]: r["count"] for r in replayed.groupBy("replayed").count().collect()}
        frame = replayed.select("a", "b", "method", "same_family", "replayed", "photo", "region_cosine").toPandas()
    finally:
        spark.stop()
    photo_rows = frame[frame["photo"].notna()]
    recorded = photo_rows["method"].eq("photo").to_numpy()
    scores = [dict(row) for row in photo_rows["photo"]]
    columns = pd.DataFrame(scores, columns=[name for name, _ in SCORE_FIELDS])  # a missing score: NaN
    # the photo check decides where the framed photos' embeddings agree (Rule.regions_agree)
    agree = regions_agree(photo_rows["region_cosine"].reset_index(drop=True), rule.min_region_cosine,
                          columns["framed_placement"], columns["region_view"].ne("both")).to_numpy()  # fmt: skip
    python = np.array([rule.photo.decide(one) for one in scores]) & agree
    vectorised = rule.photo.frame(columns).to_numpy() & agree
    counts.update(
        photo_checked=len(photo_rows),
        python_mismatches=int((recorded != python).sum()),
        pandas_mismatches=int((recorded != vectorised).sum()),
        replayed_by_method={str(k): v for k, v in sorted(by_method.items(), key=lambda kv: str(kv[0]))},
        recorded_pairs_by_method=manifest["pairs_by_method"],
    )
    return counts, frame.drop(columns="photo")


def run_groups(job: Path) -> list[list[str]]:
    """The run's own groups (oversized left out, as in duplicates.json)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for row in pq.read_table(job / "groups", columns=["productId", "group_id", "oversized"]).to_pylist():
        if not row["oversized"]:
            groups[row["group_id"]].append(row["productId"])
    return list(groups.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a finished job output (candidates/, manifest.json)")
    parser.add_argument("--truth", type=Path, help="the bench set's truth.csv: score the replayed groups")
    parser.add_argument("--out", type=Path, help="write the result here as JSON")
    args = parser.parse_args(argv)
    manifest = json.loads((args.job / "manifest.json").read_text())
    settings = typed(job_settings_of(manifest["config"]))
    counts, frame = replay(args.job, manifest, settings)
    result: dict[str, Any] = {"meta": run_meta(), "job": str(args.job), "replay": counts}
    if args.truth:
        truth = read_truth(args.truth)
        kept = frame[frame["replayed"].notna() & ~frame["same_family"]]
        grouping = settings.groups
        exact = kept["replayed"].eq("exact")
        replayed_groups = edge_components(kept["a"], kept["b"], exact, grouping.bridge_min_side, grouping.max_size)
        keys = ("precision", "recall", "f1", "lookalike_false_pairs")
        for split in ("calibration", "holdout"):
            replayed, recorded = (
                score_groups(replayed_groups, truth, split),
                score_groups(run_groups(args.job), truth, split),
            )
            result[split] = {"replayed": {k: replayed[k] for k in keys}, "run": {k: recorded[k] for k in keys}}
    return put_result(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
