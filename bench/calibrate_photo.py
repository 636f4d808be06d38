"""Calibrate the same-photograph check's thresholds on a job's own candidates, one split only.

The job writes every candidate pair with every photo-match score (``candidates/``), so any rule
over those scores can be replayed without re-running the job: a pair is a duplicate when its
images are byte-identical or its scores pass the rule; groups are the connected components of
the duplicates, split by the job's bridge guard at its defaults (:mod:`dedup.bridges`; the job's
oversized-group re-split is not replayed); they are scored pairwise on
the calibration split's listings (:func:`dedup.devkit.metrics.score_groups`). A rule is the run's
own photo thresholds (its manifest's ``verify``) with a grid point's values laid over them, applied
by :meth:`dedup.photomatch.PhotoRule.frame`, the job's own check over columns. The chosen rule is the
one with the highest calibration recall among those whose calibration precision reaches
``--target-precision`` (the most precise rule when none does), ties broken towards stricter
settings. The holdout split is scored too, for the chosen rule only, and reported, never used.
A job compares a pair further only when its keypoint fit reaches the run's ``verify.min_inliers``
and ``min_inlier_ratio``, or its blurred band (``min_blurred_inlier_ratio`` where the images'
sharpness differs by ``min_sharpness_gap``; ``weak_fit`` otherwise), so the grid is cut to rules at
or above those (read from the run's manifest) when any pair was left at ``weak_fit``: run the job
with lower values to calibrate below them. The blurred band is held at the run's own values unless
``--grid`` names its settings.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/calibrate_photo.py --job bench-out/dev/job/default --truth bench-out/dev/set/truth.csv

``--grid KEY=V1,V2`` replaces one setting's values (a narrow sweep, e.g. one threshold around the
defaults with the others held: ``--grid min_inliers=20 --grid min_inlier_ratio=0.6 ...``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import (
    GRID,
    choose,
    components,
    grid_for,
    kept,
    load_candidates,
    rule_of,
    run_verify,
    sweep,
)
from dedup.devkit.metrics import score_groups
from dedup.photomatch import BLURRED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="a job output folder with candidates/")
    parser.add_argument("--truth", required=True)
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--out", help="write the sweep and the choice here as JSON")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="one setting's values instead of GRID's, e.g. max_colour_change=0.1,0.12")  # fmt: skip
    args = parser.parse_args(argv)
    truth = read_truth(Path(args.truth))
    candidates = load_candidates(Path(args.job))
    grid = dict(GRID)
    for item in args.grid:
        key, values = item.split("=", 1)
        if key not in (*GRID, *BLURRED.values()):
            parser.error(f"--grid {key}: not one of {', '.join((*GRID, *BLURRED.values()))}")
        grid[key] = tuple(float(v) for v in values.split(","))
    grid = grid_for(Path(args.job), grid) if candidates["weak_fit"].any() else grid
    verify = run_verify(Path(args.job))
    points = sweep(candidates, truth, "calibration", verify, grid)
    chosen = choose(points, args.target_precision)
    chosen_rule = rule_of(verify, chosen["rule"])
    chosen_pairs = candidates[kept(candidates, chosen_rule, verify.min_region_cosine)]
    holdout = score_groups(components(chosen_pairs), truth, "holdout")
    replayed = {k: holdout[k] for k in ("precision", "recall", "f1", "lookalike_false_pairs", "recall_by_transform",
                                           "recall_by_range")}  # fmt: skip
    result = {"command": " ".join([sys.executable, *sys.argv]), "rules": len(points), "chosen": chosen,
              "holdout_replayed": replayed}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "points": points}, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
