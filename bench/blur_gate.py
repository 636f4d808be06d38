"""A fit gate that knows a pair is blurred, replayed on a job's own candidates (the study behind phase 8's band).

Phase 6's job compared a pair further only when its keypoint fit reached ``verify.min_inlier_ratio``
(0.6): ORB finds fewer repeatable keypoints on a blurred image, so blurred copies fall short of it
(``weak_fit``), while lowering the ratio for every pair lets in look-alikes (docs/BENCHMARKS.md,
issue 14 phase 7). This replays a two-level gate over a run made with the gate lowered
(``--set verify.min_inlier_ratio=0.4``): a pair is kept by phase 6's rule (the defaults with the
band off: ``min_blurred_inlier_ratio`` 1; "landed" below), or, where its
ratio reaches a lower ``floor`` and the two images differ in sharpness by at least ``gap`` (the
:func:`dedup.photomatch.sharpness`, the median over each whole image of the log ratio of fine to
coarse detail that the comparison's blur matching uses), by the same rule with the ratio bound
at ``floor``. The job has this gate since phase 8, at a floor of 0.4 and a gap of 0.2. The grid
point is chosen on the calibration split only
(:func:`dedup.devkit.calibration.choose`: the highest calibration recall at ``--target-precision``,
the stricter point on ties, the most precise when none reaches it); the holdout is scored for it
and for the landed rule, reported, never used. Only the band's images are decoded.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/blur_gate.py --job bench-out/r05/job/default --set bench-out/dev2/set
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import choose, kept, load_candidates, run_verify, score_split
from dedup.devkit.metrics import copy_pairs
from dedup.photomatch import DEFAULT_RULE

FLOORS = (0.4, 0.5)
GAPS = (0.1, 0.15, 0.2, 0.3, 0.4)
KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")
PHASE_6 = DEFAULT_RULE.with_thresholds({"min_blurred_inlier_ratio": 1.0})  # the rule this study started from
KINDS = ("blur", "banner", "augly", "stack", "text", "down_up", "noise")


def sharpness(path: Path) -> float:
    """:func:`dedup.photomatch.sharpness` of an image as the photo check prepares it; NaN where it
    cannot be decoded or has too little detail to tell."""
    pixels = photomatch.decode_for_match(path.read_bytes())
    if isinstance(pixels, str):
        return float("nan")
    return photomatch.sharpness(photomatch._grey(photomatch.prepare(pixels)))


def scores(pairs: pd.DataFrame, truth: list[dict[str, str]], split: str) -> dict[str, Any]:
    """Group scores of the kept ``pairs`` on ``split``'s own listings, with recall for a few kinds."""
    graded = score_split(pairs, truth, split)
    kinds = {k: round(v["recall"], 3) for k, v in graded["recall_by_transform"].items() if k in KINDS}
    return {**{k: graded[k] for k in KEYS}, "recall_by_kind": kinds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="a job output folder with candidates/, run at a lowered ratio")
    parser.add_argument("--set", required=True, help="the bench set the job ran on (truth.csv, images/)")
    parser.add_argument("--target-precision", type=float, default=0.98909)
    args = parser.parse_args(argv)
    job, bench_set = Path(args.job), Path(args.set)
    truth = read_truth(bench_set / "truth.csv")
    candidates, verify = load_candidates(job), run_verify(job)
    if verify.min_inlier_ratio > min(FLOORS):
        parser.error(f"{job} compared pairs only from a ratio of {verify.min_inlier_ratio}: run it at {min(FLOORS)}")

    def kept_at(floor: float | None) -> pd.Series:  # phase 6's rule (the band off), its ratio bound at ``floor``
        rule = PHASE_6 if floor is None else PHASE_6.with_thresholds({"min_inlier_ratio": floor})
        return kept(candidates, rule, verify.min_region_cosine)

    landed, lowest = kept_at(None), kept_at(min(FLOORS))
    band = candidates[lowest & ~landed]
    # the pairs such a gate would compare further (its cost): enough inliers, a ratio in [floor, now)
    least = dict(PHASE_6.at_least)
    fitted = candidates["checked"] & (candidates["inliers"] >= least["inliers"])
    gated = candidates[fitted & candidates["inlier_ratio"].between(min(FLOORS), least["inlier_ratio"], "left")]
    image_of = {row["productId"]: bench_set / "images" / row["image"] for row in truth}
    sharp = {p: sharpness(image_of[p]) for p in set(gated["a"]) | set(gated["b"])}
    gap = pd.Series(np.nan, index=candidates.index)
    gap[gated.index] = [abs(sharp[a] - sharp[b]) for a, b in zip(gated["a"], gated["b"], strict=True)]
    points, masks = [], []
    for floor in FLOORS:
        lower = kept_at(floor)
        for least_gap in GAPS:
            mask = landed | (lower & (gap >= least_gap))
            compared = int(((candidates["inlier_ratio"] >= floor) & (gap >= least_gap)).sum())
            calibration = scores(candidates[mask], truth, "calibration")
            points.append({"rule": {"min_inlier_ratio": floor, "min_sharpness_gap": least_gap}, **calibration,
                           "added_pairs": int((mask & ~landed).sum()), "compared_more": compared})  # fmt: skip
            masks.append(mask)
    chosen = choose(points, args.target_precision)
    same = copy_pairs(zip(band["a"], band["b"], strict=True), truth)
    result = {
        "command": " ".join([sys.executable, *sys.argv]),
        "band_pairs": {"true": int(sum(same)), "false": len(same) - int(sum(same))},
        "compared_now": int((fitted & (candidates["inlier_ratio"] >= least["inlier_ratio"])).sum()),
        "landed": {split: scores(candidates[landed], truth, split) for split in ("calibration", "holdout")},
        "points": points,
        "chosen": {**chosen, "holdout": scores(candidates[masks[points.index(chosen)]], truth, "holdout")},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
