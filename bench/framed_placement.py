"""Framed photos in different places (issue 14, phase 31): the candidate pairs of a job whose images
pass the photo check while both frame a photo that refuses them (the framed photos' fit
contradicts the images', or their cosine is under ``verify.min_region_cosine``), scored again
with the working tree's photo check for :func:`dedup.photomatch.framed_placement`, and counted
by copies of one photo and pairs of two products, per split (the first product's): how many the
working tree's rule keeps (the placement under :data:`dedup.photomatch.FRAMED_APART`), and the
lowest placement of a pair of two products.

    .venv/bin/python bench/framed_placement.py --set bench-out/dev2/set --job bench-out/r96/job/default \\
        --out bench-out/framed-placement-dev2.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import run_verify
from dedup.settings import default_table


def refused_by_frames(scores: dict[str, Any], region_cosine: float | None, rule: photomatch.PhotoRule,
                      min_region_cosine: float) -> bool:  # fmt: skip
    """Whether the images pass and, with no placement read, the two framed photos refuse the pair."""
    if scores.get("region_view") != "both" or scores.get("reason") is not None or rule.failing(scores):
        return False
    unplaced = {**scores, "framed_placement": None}
    return not rule.decide(unplaced) or (region_cosine is not None and region_cosine < min_region_cosine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, type=Path, help="a job output folder (candidates/)")
    parser.add_argument("--set", required=True, type=Path, help="the bench set the job ran on (truth.csv, images/)")
    parser.add_argument("--out", type=Path, help="write the report here (JSON); else print it")
    args = parser.parse_args(argv)
    truth = {row["productId"]: row for row in read_truth(args.set / "truth.csv")}
    verify = run_verify(args.job)
    rule = photomatch.PhotoRule.of(verify)
    candidates = pd.read_parquet(args.job / "candidates", columns=["a", "b", "region_cosine", "photo"])
    find_box = photomatch.box_finder(default_table("embed"))
    pairs, counts, lowest = [], Counter(), {}
    for a, b, region_cosine, photo in candidates.itertuples(index=False):
        cosine = None if pd.isna(region_cosine) else float(region_cosine)
        if photo is None or not refused_by_frames(photo, cosine, rule, verify.min_region_cosine):
            continue
        data = [(args.set / "images" / truth[side]["image"]).read_bytes() for side in (a, b)]
        described = [photomatch.describe_bytes(side, find_box) for side in data]
        scores = photomatch.score_described(*described, *data, rule.fit_gate())
        placement = scores.get("framed_placement")
        apart = photomatch.framed_apart(scores)
        kept = rule.decide(scores) and (cosine is None or cosine >= verify.min_region_cosine or apart)
        kind = "copies" if truth[a]["group"] and truth[a]["group"] == truth[b]["group"] else "two_products"
        split = truth[a]["split"]
        counts[f"{kind}/{split}/refused"] += 1
        counts[f"{kind}/{split}/kept"] += int(kept)
        if kind == "two_products" and placement is not None:
            lowest[split] = min(lowest.get(split, 1.0), placement)
        edits = [truth[a]["transform"], truth[b]["transform"]]
        pairs.append({"a": a, "b": b, "kind": kind, "split": split, "edits": edits, "placement": placement,
                      "inliers": scores.get("inliers"), "region_cosine": cosine, "kept": kept})  # fmt: skip
    report = {"job": str(args.job), "apart_under": photomatch.FRAMED_APART,
              "placing_inliers": photomatch.FRAMED_PLACING_INLIERS, "counts": dict(sorted(counts.items())),
              "lowest_two_products_placement": lowest, "pairs": pairs}  # fmt: skip
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
