"""A learned second chance for the photo check, measured (issue 14 phase 16; not built into the job):
a gradient-boosted classifier over a compared pair's photo scores, trained on the calibration
split's compared pairs of one finished run, lets through a pair the run's rule refused when its
probability reaches a threshold. For each threshold, the group scores of the run's kept pairs plus
those, on the calibration split (scored out of fold: five folds by original photo, so no photo
is scored by a model that saw it) and on the holdout; ``--other`` runs the same model over a
second set's run (the old set: another edit generator, never trained on).

``--features``: ``sameness`` (the scores that say how alike the two images are: the fit's inliers,
matches and ratio, structure, tiles, colour change and residual) or ``edits`` (those, plus the
fit's scale, rotation and overlap, the sharpness gap and the SSCD cosine: scores that describe
the edit, which a dev set whose look-alikes are never edited rewards for the wrong reason).

Needs scikit-learn, which the job does not (``.venv/bin/pip install scikit-learn``)::

    .venv/bin/python bench/learned_rule.py --job bench-out/r28/job/default --truth bench-out/dev2/set/truth.csv \\
        --other bench-out/r29/job/default bench-out/dev1/set/truth.csv --features sameness
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dedup.devkit.benchrun import put_result
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import components
from dedup.devkit.metrics import score_groups

SAMENESS = ("inliers", "matches", "inlier_ratio", "structure", "tile_agreement", "colour_change", "colour_residual")
EDITS = (*SAMENESS, "scale", "rotation", "overlap", "sharpness_gap", "cosine")
THRESHOLDS = (0.95, 0.98, 0.99, 0.995)
MODEL = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 15, "random_state": 0}
FOLDS = 5


def labelled_pairs(job: Path, truth: list[dict[str, str]]) -> pd.DataFrame:
    """The run's candidate pairs: ``a``, ``b``, the run's decision (``kept``), whether the photo
    check compared them (``compared``), the truth (``copy``: one original's), their split
    (``cross`` when the two are in different splits), the photo of ``a`` (``source``), and every score."""
    frame = pd.read_parquet(job / "candidates", columns=["a", "b", "method", "cosine", "photo", "duplicate"])
    scores = pd.DataFrame([p if p is not None else {} for p in frame["photo"]], index=frame.index)
    rows = {t["productId"]: t for t in truth}
    group = {side: frame[side].map(lambda pid: rows.get(pid, {}).get("group", "")) for side in ("a", "b")}
    split = {side: frame[side].map(lambda pid: rows.get(pid, {}).get("split")) for side in ("a", "b")}
    out = pd.DataFrame({
        "a": frame["a"], "b": frame["b"], "exact": frame["method"] == "exact", "kept": frame["duplicate"].fillna(False),
        "copy": (group["a"] != "") & (group["a"] == group["b"]),
        "split": np.where(split["a"] == split["b"], split["a"], "cross"),
        "source": frame["a"].map(lambda pid: rows.get(pid, {}).get("source", pid)),
        "cosine": frame["cosine"].astype(float),
    })  # fmt: skip
    for field in EDITS[:-1]:
        out[field] = scores[field].astype(float) if field in scores else np.nan
    out["compared"] = ~out["exact"] & scores["reason"].isna() & frame["photo"].notna()
    return out


def scores_at(
    pairs: pd.DataFrame, truth: list[dict[str, str]], probability: np.ndarray, split: str
) -> list[dict[str, Any]]:
    """Group scores on ``split`` of the run's kept pairs, and of those plus the pairs at each threshold."""
    points = []
    for threshold in (None, *THRESHOLDS):
        extra = pairs["compared"].to_numpy() & (probability >= (np.inf if threshold is None else threshold))
        scores = score_groups(components(pairs[pairs["kept"].to_numpy() | extra]), truth, split)
        added = extra & ~pairs["kept"]
        points.append({
            "threshold": threshold,
            "added_copy_pairs": int((added & pairs["copy"]).sum()),
            "added_other_pairs": int((added & ~pairs["copy"]).sum()),
            **{k: round(scores[k], 4) for k in ("precision", "recall", "f1")},
            "lookalikes": scores["lookalike_false_pairs"],
        })  # fmt: skip
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", type=Path, required=True, help="a bench/quality.py run to train on")
    parser.add_argument("--truth", type=Path, required=True, help="that set's truth.csv")
    parser.add_argument("--other", nargs=2, type=Path, metavar=("JOB", "TRUTH"), help="a second set's run, scored only")
    parser.add_argument("--features", choices=("sameness", "edits"), default="sameness")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import GroupKFold
    except ImportError:
        sys.exit("bench/learned_rule.py needs scikit-learn: .venv/bin/pip install scikit-learn")
    features = list(SAMENESS if args.features == "sameness" else EDITS)
    truth = read_truth(args.truth)
    pairs = labelled_pairs(args.job, truth)
    train = pairs["compared"] & (pairs["split"] == "calibration")
    x, y = pairs.loc[train, features], pairs.loc[train, "copy"]
    out_of_fold = np.zeros(len(pairs))
    for fit, held in GroupKFold(FOLDS).split(x, y, pairs.loc[train, "source"]):
        model = HistGradientBoostingClassifier(**MODEL).fit(x.iloc[fit], y.iloc[fit])
        out_of_fold[np.flatnonzero(train)[held]] = model.predict_proba(x.iloc[held])[:, 1]
    model = HistGradientBoostingClassifier(**MODEL).fit(x, y)
    whole = model.predict_proba(pairs[features])[:, 1]
    result: dict[str, Any] = {
        "job": str(args.job), "features": features, "model": MODEL,
        "trained_on": {"copies": int(y.sum()), "others": int((~y).sum())},
        "calibration": scores_at(pairs, truth, out_of_fold, "calibration"),
        "holdout": scores_at(pairs, truth, whole, "holdout"),
    }  # fmt: skip
    if args.other:
        other_truth = read_truth(args.other[1])
        other = labelled_pairs(args.other[0], other_truth)
        probability = model.predict_proba(other[features])[:, 1]
        splits = {split: scores_at(other, other_truth, probability, split) for split in ("calibration", "holdout")}
        result["other"] = {"job": str(args.other[0]), **splits}
    return put_result(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
