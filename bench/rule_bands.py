"""The rule's bands over the stored scores (issue 14 phase 37), each chosen on a job's calibration splits.

Two bands let a pair pass one bound where its other scores say it is the same photograph:

- ``blurred_colour`` (``verify.max_blurred_colour_change``, ``min_blurred_colour_inliers``): a
  blurred, resized or recompressed copy is compared with its original blurred to its detail, yet
  the colour map still misses along the edges the two blurs leave apart (a silhouette, JPEG's
  chroma), and such a copy reads a colour change of 0.1-0.2. Look-alikes shot alike are about as
  sharp. The band lets a pair whose images' sharpness differs by ``min_sharpness_gap`` (the fit's
  blurred band's gap), with a strong fit, reach a larger colour change.
- ``untiled`` (``verify.min_untiled_structure``, ``max_untiled_colour_change``): a small product's
  interior falls back to the whole overlap, and the tiles along its edge read what lies past it (a
  border's or a pad's edge, the warp's seam) where the original is flat. A pair whose structure
  and colours agree all but exactly needs no tile agreement.

The job stores every compared pair's scores, so each point of a band's grid is the run's own rule
with the point laid over it (:meth:`dedup.photomatch.PhotoRule.frame`), no pair compared again. A
run recorded before a band decided without it (:data:`dedup.config.AS_BEFORE`): its groups are
the baseline. For each point: the calibration and holdout pairs kept or dropped against the run
(copies of one photo and pairs of two products apart, :func:`dedup.devkit.calibration.decisions_changed`)
and the groups' scores. The chosen point gains the most calibration copy pairs, on this set and on
a second set's calibration split (``--guard-job``, ``--guard-set``: the old dev set), among those
that gain no pair of two products on either calibration split (ties: the stricter point); the
holdouts are reported, never used.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/rule_bands.py --band untiled --job bench-out/r128/job/default --set bench-out/dev2/set \\
        --guard-job bench-out/r129/job/default --guard-set bench-out/dev1/set
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

BANDS: dict[str, dict[str, tuple[float, ...]]] = {  # each band's grid, its strictest values first
    "blurred_colour": {"max_blurred_colour_change": (0.15, 0.2, 0.25, 0.3),
                       "min_blurred_colour_inliers": (150, 125, 100, 75)},
    "untiled": {"min_untiled_structure": (0.99, 0.98, 0.97, 0.96, 0.95),
                "max_untiled_colour_change": (0.01, 0.02, 0.03, 0.05)},
}  # fmt: skip
KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")
KINDS = ("stack", "text", "banner", "blur", "jpeg")  # the kinds whose recall each point reports


def sweep(job: Path, bench_set: Path, band: str) -> list[dict[str, Any]]:
    """Each point of ``band``'s grid: its decisions changed against the run and its groups' scores
    on both splits, the points from the strictest."""
    truth = read_truth(bench_set / "truth.csv")
    candidates, verify = load_candidates(job), run_verify(job)
    before = kept(candidates, rule_of(verify, {}), verify.min_region_cosine)
    points = []
    grid = BANDS[band]
    for values in itertools.product(*grid.values()):
        rule = dict(zip(grid, values, strict=True))
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
    parser.add_argument("--band", choices=sorted(BANDS), required=True)
    parser.add_argument("--job", type=Path, required=True, help="a job output folder (candidates/)")
    parser.add_argument("--set", type=Path, required=True, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--guard-job", type=Path, help="a second set's job: its calibration must gain no two products")
    parser.add_argument("--guard-set", type=Path, help="the bench set --guard-job ran on")
    args = parser.parse_args(argv)
    points = sweep(args.job, args.set, args.band)
    guarded = args.guard_job and args.guard_set
    guards = sweep(args.guard_job, args.guard_set, args.band) if guarded else [None] * len(points)

    def gained(point: dict[str, Any] | None, field: str) -> int:
        return 0 if point is None else point["changed"]["calibration"][field]

    for point, guard in zip(points, guards, strict=True):
        if guard is not None:
            point["guard"] = {key: value for key, value in guard.items() if key != "rule"}  # the same rule
    eligible = [(gained(p, "copies_gained") + gained(g, "copies_gained"), -i, p)  # ties: the stricter point
                for i, (p, g) in enumerate(zip(points, guards, strict=True))
                if gained(p, "others_gained") == 0 and gained(g, "others_gained") == 0]  # fmt: skip
    chosen = max(eligible, key=lambda item: item[:2])[2] if eligible else None
    print(json.dumps({"command": " ".join([sys.executable, *sys.argv]), "points": points, "chosen": chosen}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
