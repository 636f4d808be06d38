"""The blurred colour bound (``max_blurred_colour_change``, ``min_blurred_colour_inliers``), chosen on a job's scores.

A blurred, resized or recompressed copy is compared with its original blurred to its detail, yet
the colour map still misses along the edges the two blurs leave apart (a silhouette, JPEG's
chroma), and such a copy reads a colour change of 0.1-0.2 (issue 14, phase 37). Look-alikes shot
alike are about as sharp. The bound lets a pair whose images' sharpness differs by
``min_sharpness_gap`` (the blurred band's gap), with a strong fit, reach a larger colour change.

The job stores every compared pair's scores, so each point of the grid is the run's own rule with
the bound laid over it (:meth:`dedup.photomatch.PhotoRule.frame`), no pair compared again. A run
recorded before the bound decided without it (:data:`dedup.config.AS_BEFORE`): its groups are the
baseline. For each point: the calibration and holdout pairs kept or dropped against the run
(copies of one photo and pairs of two products apart, :func:`dedup.devkit.calibration.decisions_changed`)
and the groups' scores. The chosen point gains the most calibration copy pairs, on this set and on
a second set's calibration split (``--guard-job``, ``--guard-set``: the old dev set), among those
that gain no pair of two products on either calibration split; the holdouts are reported, never used.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/blurred_colour.py --job bench-out/r126/job/default --set bench-out/dev2/set \\
        --guard-job bench-out/r127/job/default --guard-set bench-out/dev1/set
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import components, decisions_changed, kept, load_candidates, rule_of, run_verify
from dedup.devkit.metrics import score_groups

COLOUR = (0.15, 0.2, 0.25, 0.3)  # max_blurred_colour_change
INLIERS = (75, 100, 125, 150)  # min_blurred_colour_inliers
KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")
KINDS = ("stack", "text", "banner", "blur", "jpeg")  # the kinds whose recall each point reports


def sweep(job: Path, bench_set: Path) -> list[dict[str, Any]]:
    """Each grid point's decisions changed against the run and its groups' scores on both splits."""
    truth = read_truth(bench_set / "truth.csv")
    candidates, verify = load_candidates(job), run_verify(job)
    before = kept(candidates, rule_of(verify, {}), verify.min_region_cosine)
    points = []
    for colour, inliers in itertools.product(COLOUR, INLIERS):
        rule = {"max_blurred_colour_change": colour, "min_blurred_colour_inliers": inliers}
        after = kept(candidates, rule_of(verify, rule), verify.min_region_cosine)
        groups = components(candidates[after])
        point: dict[str, Any] = {"rule": rule, "changed": decisions_changed(before, after, candidates, truth)}
        for split in ("calibration", "holdout"):
            graded = score_groups(groups, truth, split)
            point[split] = {**{k: graded[k] for k in KEYS},
                            **{k: graded["recall_by_transform"].get(k, {}).get("recall") for k in KINDS}}  # fmt: skip
        points.append(point)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a job output folder (candidates/)")
    parser.add_argument("--set", type=Path, required=True, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--guard-job", type=Path, help="a second set's job: its calibration must gain no two products")
    parser.add_argument("--guard-set", type=Path, help="the bench set --guard-job ran on")
    args = parser.parse_args(argv)
    points = sweep(args.job, args.set)
    guards = sweep(args.guard_job, args.guard_set) if args.guard_job and args.guard_set else [None] * len(points)

    def gained(point: dict[str, Any] | None, field: str) -> int:
        return 0 if point is None else point["changed"]["calibration"][field]

    for point, guard in zip(points, guards, strict=True):
        if guard is not None:
            point["guard"] = {"changed": guard["changed"], "calibration": guard["calibration"],
                              "holdout": guard["holdout"]}  # fmt: skip
    eligible = [(gained(p, "copies_gained") + gained(g, "copies_gained"),  # ties: the stricter bound
                 -p["rule"]["max_blurred_colour_change"], p["rule"]["min_blurred_colour_inliers"], p)
                for p, g in zip(points, guards, strict=True)
                if gained(p, "others_gained") == 0 and gained(g, "others_gained") == 0]  # fmt: skip
    chosen = max(eligible, key=lambda item: item[:3])[3] if eligible else None
    print(json.dumps({"command": " ".join([sys.executable, *sys.argv]), "points": points, "chosen": chosen}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
