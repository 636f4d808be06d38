"""The blurred band's inlier bound (``verify.min_blurred_inliers``), replayed on a job's own weak fits.

ORB finds fewer repeatable keypoints on a blurred copy: its fit falls short of the ratio (phase 8's
band, ``bench/blur_gate.py``) and of the inlier count. The job stores every candidate's fit
(inliers, ratio, ``sharpness_gap``), the weak ones too, so no new job run is needed to see what a
lower count in the band would keep: this refits the weak fits in the band (a ratio of at least
``min_blurred_inlier_ratio``, images apart in sharpness by ``min_sharpness_gap``, and at least the
lowest bound tried) from the job's ``images/`` (:func:`dedup.photomatch.fit_descriptions` without
a gate: the job's own fit), compares their pixels, and, for each bound, keeps those that then
pass the run's rule with that bound; a pair's framed views are not refitted. The bound is chosen
on calibration splits only (:func:`dedup.devkit.calibration.choose`: the highest calibration
recall at ``--target-precision``, the stricter bound on ties), among the bounds at which a second
set's calibration split (``--guard-job``, ``--guard-set``: the old dev set) gains no look-alike
false pair; the holdout is scored for it and for the band without a lower count (the bound at
``min_inliers``), reported, never used.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/blurred_inliers.py --job bench-out/r51/job/default --set bench-out/dev2/set \\
        --guard-job bench-out/r52/job/default --guard-set bench-out/dev1/set
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from photo_replay import image_bytes, recompare, refit, replaced

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import choose, kept, load_candidates, rule_of, run_verify, score_split
from dedup.devkit.metrics import copy_pairs

BOUNDS = (10, 12, 14, 16, 18)  # besides the run's min_inliers (the band without a lower count)
KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")


def band_of(candidates: pd.DataFrame, verify: Any, lowest: int) -> pd.DataFrame:
    """The weak fits a blurred band with an inlier bound of ``lowest`` would compare further."""
    weak = candidates["reason"] == "weak_fit"
    blurred = (candidates["inlier_ratio"] >= verify.min_blurred_inlier_ratio) & (
        candidates["sharpness_gap"] >= verify.min_sharpness_gap
    )
    return candidates[weak & blurred & candidates["inliers"].between(lowest, verify.min_inliers, "left")]


def sweep_bounds(job: Path, bench_set: Path) -> tuple[list[dict[str, Any]], list[pd.Series], pd.DataFrame, list]:
    """Each bound's calibration scores (and the band pairs it adds) on ``job``'s candidates with the
    band compared; its kept mask over them; those candidates; the set's truth."""
    truth = read_truth(bench_set / "truth.csv")
    candidates, verify = load_candidates(job), run_verify(job)
    band = band_of(candidates, verify, min(BOUNDS))
    pairs = list(zip(band["a"], band["b"], strict=True))
    data = image_bytes(job, {p for pair in pairs for p in pair})
    scores, _ = recompare(photomatch, refit(photomatch, pairs, data, None), data)  # no gate: the job's own fits
    replay = replaced(candidates, scores)  # pairs whose images no longer fit at all keep their stored scores
    points, masks = [], []
    for bound in (*BOUNDS, verify.min_inliers):
        mask = kept(replay, rule_of(verify, {"min_blurred_inliers": bound}), verify.min_region_cosine)
        added = replay[mask & replay.index.isin(band.index)]
        true = sum(copy_pairs(zip(added["a"], added["b"], strict=True), truth))
        graded = score_split(replay[mask], truth, "calibration")
        points.append({"rule": {"min_blurred_inliers": bound}, **{k: graded[k] for k in KEYS},
                       "compared_more": int((band["inliers"] >= bound).sum()),
                       "added_pairs": {"true": int(true), "false": len(added) - int(true)}})  # fmt: skip
        masks.append(mask)
    return points, masks, replay, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a job output folder (candidates/, images/)")
    parser.add_argument("--set", type=Path, required=True, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--guard-job", type=Path, help="a second set's job: its calibration look-alikes must not grow")
    parser.add_argument("--guard-set", type=Path, help="the bench set --guard-job ran on")
    parser.add_argument("--target-precision", type=float, default=0.99)
    args = parser.parse_args(argv)
    points, masks, replay, truth = sweep_bounds(args.job, args.set)
    eligible = points
    if args.guard_job and args.guard_set:
        guard = sweep_bounds(args.guard_job, args.guard_set)[0]
        for point, guarded in zip(points, guard, strict=True):
            point["guard_calibration"] = {k: guarded[k] for k in KEYS}
        most = guard[-1]["lookalike_false_pairs"]  # the band without a count of its own
        eligible = [p for p, g in zip(points, guard, strict=True) if g["lookalike_false_pairs"] <= most]
    chosen = choose(eligible, args.target_precision)

    def holdout(mask: pd.Series) -> dict[str, Any]:
        graded = score_split(replay[mask], truth, "holdout")
        return {**{k: graded[k] for k in KEYS}, "blur": graded["recall_by_transform"].get("blur", {}).get("recall")}

    result = {
        "command": " ".join([sys.executable, *sys.argv]),
        "points": points,
        "chosen": {**chosen, "holdout": holdout(masks[points.index(chosen)])},
        "without_a_lower_count": {**points[-1], "holdout": holdout(masks[-1])},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
