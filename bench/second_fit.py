"""Simulate a second fit of the weak fits from two job runs that differ only in their fit.

Two runs on the same set share their candidates (the candidates stage does not read the photo
check). ``--base`` is the check as it is; ``--refit`` is a run whose every pair was fitted the
other way (``photomatch.ORB_FEATURES`` = 1000, issue 14 phase 26). A second fit of the base's
weak fits with at least ``floor`` inliers gives each of them about what the other run gave it:
so for each ``--floor`` the base's candidates are taken, its weak fits over the floor take the
other run's scores, and the groups are scored as the job scores them (byte-identical pairs and
the pairs the run's rule keeps, their connected components: ``dedup.devkit.calibration``), per
split, with the pairs of two different products the second fit adds, pair by pair (the
selection rule counts them on calibration before any grouping).

    .venv/bin/python bench/second_fit.py --base bench-out/r71/job/default \\
        --refit bench-out/r73/job/default --set bench-out/dev2/set --floor 0,6,10,15,20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import components, decisions_changed, kept, load_candidates, run_verify
from dedup.devkit.metrics import score_groups
from dedup.photomatch import PhotoRule

KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")


def sorted_candidates(job: Path) -> pd.DataFrame:
    """:func:`load_candidates` of ``job`` in (a, b) order, so that two runs' rows line up."""
    return load_candidates(job).sort_values(["a", "b"]).reset_index(drop=True)


def simulate(base: pd.DataFrame, refit: pd.DataFrame, floor: float, rule: PhotoRule, min_region_cosine: float,
             truth: list[dict[str, str]]) -> dict[str, Any]:  # fmt: skip
    """The scores of ``base`` with its weak fits of ``floor`` inliers or more taking ``refit``'s."""
    again = (base["reason"] == "weak_fit") & (base["inliers"].fillna(0) >= floor)
    out = base.copy()
    out.loc[again] = refit.loc[again]
    keeps = kept(out, rule, min_region_cosine)
    groups = components(out[keeps])
    changed = decisions_changed(kept(base, rule, min_region_cosine), keeps, out, truth)
    result: dict[str, Any] = {"floor": floor, "fitted_again": int(again.sum()),
                              "compared_now": int((again & refit["checked"]).sum())}  # fmt: skip
    for split in ("calibration", "holdout"):
        scores = score_groups(groups, truth, split)
        result[split] = {key: scores[key] for key in KEYS} | {"other_pairs_gained": changed[split]["others_gained"]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, type=Path, help="a job output: the check as it is")
    parser.add_argument("--refit", required=True, type=Path, help="a job output on the same set, fitted the other way")
    parser.add_argument("--set", required=True, type=Path, help="the bench set both ran on (truth.csv)")
    parser.add_argument("--floor", default="0,10,15,20", help="comma-separated inlier floors")
    args = parser.parse_args(argv)
    truth = read_truth(args.set / "truth.csv")
    base, refit = sorted_candidates(args.base), sorted_candidates(args.refit)
    if not (base["a"].equals(refit["a"]) and base["b"].equals(refit["b"])):
        parser.error("the two runs' candidates differ: not runs of one set at the same candidate settings")
    verify = run_verify(args.base)
    rule = PhotoRule.of(verify)
    points = [simulate(base, refit, float(floor), rule, verify.min_region_cosine, truth)
              for floor in args.floor.split(",")]  # fmt: skip
    print(json.dumps({"base": str(args.base), "refit": str(args.refit), "points": points}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
