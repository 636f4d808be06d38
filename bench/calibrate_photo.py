"""Calibrate the same-photograph check's thresholds on a job's own candidates, one split only.

The job writes every candidate pair with every photo-match score (``candidates/``), so any rule
over those scores can be replayed without re-running the job: a pair is a duplicate when its
images are byte-identical or its scores pass the rule; groups are the connected components of
the duplicates (the job's oversized-group re-split is not replayed); they are scored pairwise on
the calibration split's listings (:func:`dedup.devkit.metrics.score_groups`). A rule is the run's
own photo thresholds (its manifest's ``verify``) with a grid point's values laid over them, applied
by :meth:`dedup.photomatch.PhotoRule.frame`, the job's own check over columns. The chosen rule is the
one with the highest calibration recall among those whose calibration precision reaches
``--target-precision`` (the most precise rule when none does), ties broken towards stricter
settings. The holdout split is scored too, for the chosen rule only, and reported, never used.
A job compares a pair further only when its keypoint fit reaches the run's ``verify.min_inliers``
and ``min_inlier_ratio`` (``weak_fit`` otherwise), so the grid is cut to rules at or above those
(read from the run's manifest) when any pair was left at ``weak_fit``: run the job with lower
values to calibrate below them.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/calibrate_photo.py --job bench-out/dev/job/default --truth bench-out/dev/set/truth.csv

``--grid KEY=V1,V2`` replaces one setting's values (a narrow sweep, e.g. one threshold around the
defaults with the others held: ``--grid min_inliers=20 --grid min_inlier_ratio=0.6 ...``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dedup.config import job_settings_of
from dedup.devkit.benchset import read_truth
from dedup.devkit.metrics import edge_components, score_groups
from dedup.photomatch import AT_LEAST, AT_MOST, PhotoRule

GRID: dict[str, tuple[float, ...]] = {
    "min_inliers": (20, 30, 40, 60),
    "min_inlier_ratio": (0.4, 0.5, 0.6, 0.7),
    "min_structure": (0.7, 0.8, 0.9),
    "min_tile_agreement": (0.3, 0.5, 0.7, 0.9),
    "max_colour_change": (0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 1.0),
}
SCORE_OF = {key: field for field, key in {**AT_LEAST, **AT_MOST}.items()}


def load_candidates(job: Path) -> pd.DataFrame:
    """Candidate pairs (a, b, exact) and their photo scores, one column per score."""
    frame = pd.read_parquet(job / "candidates", columns=["a", "b", "method", "photo"])
    scores = pd.DataFrame([p if p is not None else {} for p in frame["photo"]], index=frame.index)
    out = pd.DataFrame({"a": frame["a"], "b": frame["b"], "exact": frame["method"] == "exact"})
    for field in SCORE_OF.values():
        out[field] = scores[field].astype(float) if field in scores else np.nan
    out["checked"] = scores["reason"].isna() & frame["photo"].notna() if "reason" in scores else False
    out["weak_fit"] = scores["reason"].eq("weak_fit") if "reason" in scores else False
    return out


def components(pairs: pd.DataFrame) -> list[list[str]]:
    """Connected components (two or more members) of the ``a``-``b`` edges."""
    return edge_components(pairs["a"], pairs["b"])


def kept(candidates: pd.DataFrame, rule: PhotoRule) -> pd.Series:
    """Byte-identical pairs, and checked pairs whose scores pass ``rule`` (the job's photo check
    over columns: a missing score fails an at-least bound and passes no at-most bound)."""
    return candidates["exact"] | (candidates["checked"] & rule.frame(candidates))


def run_verify(job: Path) -> dict[str, Any]:
    """The ``verify`` table the run at ``job`` decided with (its manifest's, over the defaults)."""
    return job_settings_of(json.loads((job / "manifest.json").read_text())["config"])["verify"]


def rule_of(verify: Mapping[str, Any], point: Mapping[str, float]) -> PhotoRule:
    """The photo check of ``verify`` with a grid point's thresholds laid over it."""
    return PhotoRule.of({**verify, **point})


def grid_for(job: Path, grid: dict[str, tuple[float, ...]] = GRID) -> dict[str, tuple[float, ...]]:
    """``grid`` without the fit thresholds below those the run at ``job`` compared pairs at."""
    verify = run_verify(job)
    floor = {key: float(verify[key]) for key in ("min_inliers", "min_inlier_ratio")}
    return {key: tuple(v for v in values if v >= floor.get(key, v)) for key, values in grid.items()}


def sweep(
    candidates: pd.DataFrame,
    truth: list[dict[str, str]],
    split: str,
    verify: Mapping[str, Any],
    grid: dict[str, tuple[float, ...]] = GRID,
) -> list[dict[str, Any]]:
    """Group-level scores on ``split`` of every rule of ``grid`` (over the run's ``verify`` table)."""
    ids = {t["productId"] for t in truth if t["split"] == split}
    local = candidates[candidates["a"].isin(ids) & candidates["b"].isin(ids)]
    points = []
    for values in itertools.product(*grid.values()):
        rule = dict(zip(grid, values, strict=True))
        scores = score_groups(components(local[kept(local, rule_of(verify, rule))]), truth, split)
        points.append({"rule": rule, **{k: scores[k] for k in ("precision", "recall", "f1")}})
    return points


def choose(points: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Highest recall at ``target`` precision (stricter settings first on ties); else most precise."""
    eligible = [p for p in points if p["precision"] >= target]
    if not eligible:
        return max(points, key=lambda p: (p["precision"], p["recall"]))

    def strictness(p: dict[str, Any]) -> tuple[float, ...]:
        return tuple(-v if k.startswith("min_") else v for k, v in p["rule"].items())

    return min(eligible, key=lambda p: (-p["recall"], strictness(p)))


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
        if key not in GRID:
            parser.error(f"--grid {key}: not one of {', '.join(GRID)}")
        grid[key] = tuple(float(v) for v in values.split(","))
    grid = grid_for(Path(args.job), grid) if candidates["weak_fit"].any() else grid
    verify = run_verify(Path(args.job))
    points = sweep(candidates, truth, "calibration", verify, grid)
    chosen = choose(points, args.target_precision)
    holdout = score_groups(components(candidates[kept(candidates, rule_of(verify, chosen["rule"]))]), truth, "holdout")
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
