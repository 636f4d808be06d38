"""Why a job lost the copies it lost: each copy of a split not grouped with its original, counted
by what stopped the pair of the two (a diagnosis for the next change, not a score).

A lost copy's cause is the first of these that holds for the (copy, original) pair:
``no_candidate`` (the pair is not among the job's candidates), ``unchecked`` (a candidate the photo
check did not compare), the photo check's ``reason`` (``weak_fit``, ``no_fit``, ...), then the first
bound of the run's own rule that its scores fail (``inlier_ratio`` with its blurred band, as
:meth:`dedup.photomatch.FitGate.passes` reads it, ``structure``, ``tile_agreement``,
``colour_change``), then ``region_cosine`` (framed photos that disagree). ``kept`` is a kept pair
whose copy still ended in another group (the oversized re-split). Per cause, the edit kinds.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/lost_copies.py --job bench-out/r08/job/default --set bench-out/dev2/set
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import pandas as pd

from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import load_candidates, run_verify
from dedup.photomatch import PhotoRule


def cause_of(row: pd.Series | None, rule: PhotoRule, min_region_cosine: float) -> str:
    """What stopped one candidate pair (a row of :func:`load_candidates` with its ``reason``), or ``kept``."""
    if row is None:
        return "no_candidate"
    if row["reason"] is not None:
        return row["reason"]
    gap = None if pd.isna(row["sharpness_gap"]) else float(row["sharpness_gap"])
    if not rule.fit_gate().passes(int(row["inliers"]), float(row["inlier_ratio"]), gap):
        return "inlier_ratio"
    for field, least in rule.at_least:
        if field not in ("inliers", "inlier_ratio") and not row[field] >= least:
            return field
    for field, most in rule.at_most:
        if row[field] > most:
            return field
    if not pd.isna(row["region_cosine"]) and row["region_cosine"] < min_region_cosine:
        return "region_cosine"
    return "kept"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, type=Path, help="a job output folder (candidates/, groups/)")
    parser.add_argument("--set", required=True, type=Path, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--split", default="holdout")
    args = parser.parse_args(argv)
    truth = read_truth(args.set / "truth.csv")
    verify = run_verify(args.job)
    rule = PhotoRule.of(verify)
    candidates = load_candidates(args.job)
    photo = pd.read_parquet(args.job / "candidates", columns=["photo"])["photo"]
    candidates["reason"] = [("unchecked" if p is None else p["reason"]) for p in photo]
    candidates.loc[candidates["exact"], "reason"] = None
    index = {pair: i for i, pair in enumerate(zip(candidates["a"], candidates["b"], strict=True))}
    group = pd.read_parquet(args.job / "groups", columns=["productId", "group_id"])
    group_of = dict(zip(group["productId"], group["group_id"], strict=True))
    original = {row["source"]: row["productId"] for row in truth if row["transform"] == "original"}
    causes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in truth:
        source = original.get(row["source"])
        if row["split"] != args.split or row["group"] == "" or row["transform"] == "original" or source is None:
            continue
        copy = row["productId"]
        if group_of.get(copy) is not None and group_of.get(copy) == group_of.get(source):
            continue  # found
        at = index.get((copy, source), index.get((source, copy)))
        pair = None if at is None else candidates.iloc[at]
        causes[cause_of(pair, rule, verify.min_region_cosine)][row["transform"].split(":")[0]] += 1
    ranked = sorted(causes.items(), key=lambda item: -sum(item[1].values()))
    result = {cause: {"copies": sum(kinds.values()), "kinds": dict(kinds.most_common())} for cause, kinds in ranked}
    print(json.dumps({"job": str(args.job), "split": args.split, "lost": result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
