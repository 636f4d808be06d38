"""Calibrate ``verify.min_region_cosine`` on a job's own candidates, on the calibration split only.

Where both images of a pair frame a smaller photo (each has a content region, ``dedup/content.py``:
a screenshot, a banner), the job records the two regions' cosine (``region_cosine`` in
``candidates/``) and refuses a pair under ``verify.min_region_cosine`` whatever else decided it:
two products pasted into the same template fit and compare as one photograph on the frame. This
replays the run's own decisions (its manifest's photo thresholds, :func:`dedup.devkit.calibration.kept`)
at each value of the threshold, scores the groups on the calibration split
(:func:`dedup.devkit.metrics.score_groups`) and chooses the value with the highest calibration F1
(the lower value on ties: fewer pairs refused). The holdout is scored at the chosen value and with
the rule off (-1), reported, never used. Per value it also counts the compared pairs the photo
check kept that the threshold refuses, true and false, on each split (pair level), and the false
pairs the holdout's groups imply by cause (two augly screenshots, two originals, others).

Run from the repository root, on the output of ``bench/quality.py`` (a run of this version: older
runs recorded no ``region_cosine``)::

    .venv/bin/python bench/region_rule.py --job bench-out/dev2/job/default --truth bench-out/dev2/set/truth.csv
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import components, kept, load_candidates, rule_of, run_verify
from dedup.devkit.metrics import score_groups

VALUES = (-1.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")


def refused_pairs(
    candidates: pd.DataFrame, photo_kept: pd.Series, value: float, rows: dict[str, dict[str, str]]
) -> dict[str, dict[str, int]]:
    """The photo check's kept pairs (not byte-identical) that ``value`` refuses, on each split:
    how many are true (one group's listings), how many false."""
    refused = candidates[photo_kept & ~candidates["exact"] & (candidates["region_cosine"] < value)]
    out = {split: {"true": 0, "false": 0} for split in ("calibration", "holdout")}
    for a, b in zip(refused["a"], refused["b"], strict=True):
        row_a, row_b = rows.get(a), rows.get(b)
        if row_a and row_b and row_a["split"] == row_b["split"]:
            same = bool(row_a["group"]) and row_a["group"] == row_b["group"]
            out[row_a["split"]]["true" if same else "false"] += 1
    return out


def false_pairs_by_cause(groups: list[list[str]], rows: dict[str, dict[str, str]], split: str) -> dict[str, int]:
    """The false pairs the groups imply on ``split``, by the two listings' edit kinds: a pair of
    augly screenshots, a pair of originals (two photos), or any other."""
    causes: Counter[str] = Counter()
    for group in groups:
        members = [rows[p] for p in group if p in rows and rows[p]["split"] == split]
        for x, y in itertools.combinations(members, 2):
            if x["group"] and x["group"] == y["group"]:
                continue
            kinds = {x["transform"], y["transform"]}
            causes["screenshots" if kinds == {"augly:screenshot"} else "originals" if kinds == {"original"} else
                   "others"] += 1  # fmt: skip
    return dict(sorted(causes.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a job output folder with candidates/")
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--values", default=",".join(str(v) for v in VALUES), help="thresholds to try")
    parser.add_argument("--out", type=Path, help="write the sweep and the choice here as JSON")
    args = parser.parse_args(argv)
    truth = read_truth(args.truth)
    rows = {t["productId"]: t for t in truth}
    candidates = load_candidates(args.job)
    if candidates["region_cosine"].isna().all():
        parser.error(f"{args.job}/candidates has no region_cosine: run the job with this version")
    verify = run_verify(args.job)
    photo = rule_of(verify, {})
    photo_kept = kept(candidates, photo, -1.0)
    points: list[dict[str, Any]] = []
    for value in (float(v) for v in args.values.split(",")):
        groups = components(candidates[kept(candidates, photo, value)])
        scores = {split: score_groups(groups, truth, split) for split in ("calibration", "holdout")}
        points.append({
            "min_region_cosine": value,
            "calibration": {k: scores["calibration"][k] for k in KEYS},
            "holdout": {k: scores["holdout"][k] for k in KEYS},
            "holdout_recall_by_transform": scores["holdout"]["recall_by_transform"],
            "holdout_false_pairs": false_pairs_by_cause(groups, rows, "holdout"),
            "refused_kept_pairs": refused_pairs(candidates, photo_kept, value, rows),
        })  # fmt: skip
    chosen = max(points, key=lambda p: (p["calibration"]["f1"], -p["min_region_cosine"]))
    both_framed = candidates["region_cosine"].notna()
    result = {
        "command": " ".join([sys.executable, *sys.argv]),
        "run_min_region_cosine": verify.min_region_cosine,
        "candidates": len(candidates),
        "candidates_both_framed": int(both_framed.sum()),
        "kept_by_photo_both_framed": int((photo_kept & both_framed & ~candidates["exact"]).sum()),
        "chosen": chosen["min_region_cosine"],
        "table": [{k: p[k] for k in ("min_region_cosine", "calibration", "holdout", "refused_kept_pairs",
                                     "holdout_false_pairs")}
                  for p in points],
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps({**result, "points": points}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
