"""The second fit for blurred copies (``photomatch.refit_blurred``), replayed on a job run without it.

A weak fit of two images apart in sharpness (``verify.min_sharpness_gap``) is fitted again with
the sharper image blurred to the other's sharpness. The job stores every candidate's fit, the weak
ones too, so a run made before the second fit existed shows what it adds: this refits those weak
fits from the run's ``images/`` (their stored descriptions' keypoints for the blurrier side), holds
each refit to a gate, compares the pairs that reach it, and scores both splits with the run's rule
(each split's own pairs, :func:`dedup.devkit.calibration.score_split`). Two gates are replayed: the
plain one (``min_inliers`` at ``min_inlier_ratio``, the default: the blur is matched, so the
blurred band does not apply twice) and the blurred band's (``min_blurred_inliers`` at
``min_blurred_inlier_ratio``). Framed photos' views are not refitted.

Run from the repository root, on outputs of ``bench/quality.py`` made before the second fit
(phase 20's ``bench-out/r55`` and ``r56``)::

    .venv/bin/python bench/blurred_refit.py --job bench-out/r55/job/default --set bench-out/dev2/set
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from photo_replay import image_bytes, replaced

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import kept, load_candidates, rule_of, run_verify, score_split
from dedup.devkit.metrics import copy_pairs
from dedup.settings import VerifySettings

KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")


def refitted(
    job: Path, candidates: pd.DataFrame, verify: VerifySettings, gates: dict[str, photomatch.FitGate]
) -> tuple[dict[str, dict], int]:
    """Per gate, the scores of the band's weak fits (of ``job``'s ``candidates``) whose second fit
    reaches it (compared); how many weak fits were refitted."""
    band = candidates[(candidates["reason"] == "weak_fit") & (candidates["sharpness_gap"] >= verify.min_sharpness_gap)]
    pairs = list(zip(band["a"], band["b"], strict=True))
    data = image_bytes(job, {p for pair in pairs for p in pair})
    described = {p: photomatch.describe_bytes(data.get(p)) for p in {p for pair in pairs for p in pair}}
    out: dict[str, dict] = {name: {} for name in gates}
    for a, b in pairs:
        side_a, side_b = described[a], described[b]
        if isinstance(side_a, str) or isinstance(side_b, str):
            continue
        pixels = photomatch.decode_for_match(data[a]), photomatch.decode_for_match(data[b])
        for name, gate in gates.items():
            scores, maps = photomatch.refit_described(side_a, side_b, *pixels, gate)
            if maps is not None:
                out[name][(a, b)] = photomatch.compare_pixels(*pixels, scores, maps)
    return out, len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a job output folder made without the second fit")
    parser.add_argument("--set", type=Path, required=True, help="the bench set the job ran on (truth.csv)")
    args = parser.parse_args(argv)
    candidates, verify = load_candidates(args.job), run_verify(args.job)
    gates = {
        "plain (default)": photomatch.FitGate(verify.min_inliers, verify.min_inlier_ratio),
        "blurred band": photomatch.FitGate(verify.min_blurred_inliers, verify.min_blurred_inlier_ratio),
    }
    scores, weak = refitted(args.job, candidates, verify, gates)
    truth = read_truth(args.set / "truth.csv")
    rule = rule_of(verify, {})
    before = kept(candidates, rule, verify.min_region_cosine)
    result: dict[str, Any] = {"command": " ".join([sys.executable, *sys.argv]), "weak_fits_refitted": weak}
    for name, frame in [("without", candidates), *((name, replaced(candidates, s)) for name, s in scores.items())]:
        mask = kept(frame, rule, verify.min_region_cosine)
        added = frame[mask & ~before]
        true = sum(copy_pairs(zip(added["a"], added["b"], strict=True), truth))
        splits = {split: score_split(frame[mask], truth, split) for split in ("calibration", "holdout")}
        result[name] = {
            "reach_the_gate": len(scores.get(name, {})),
            "kept_more": {"copies": int(true), "not": len(added) - int(true)},
            **{split: {**{k: graded[k] for k in KEYS},
                       "blur": graded["recall_by_transform"].get("blur", {}).get("recall")}
               for split, graded in splits.items()},
        }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
