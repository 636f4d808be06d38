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

import numpy as np
import pandas as pd

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import kept, load_candidates, run_verify
from dedup.settings import default_table


def refused_by_frames(candidates: pd.DataFrame, rule: photomatch.PhotoRule, min_region_cosine: float) -> pd.Series:
    """The ``candidates`` (:func:`dedup.devkit.calibration.load_candidates`) whose images pass while
    both frame a photo, and which the job's rule refuses with no placement read: their framed
    photos' fit or cosine refuses them."""
    images_pass = rule.frame(candidates.assign(region_view=None))  # the framed-photo view left out
    both = candidates["scored"] & candidates["reason"].isna() & candidates["region_view"].eq("both")
    unplaced = candidates.assign(framed_placement=np.nan)
    return both & images_pass & ~kept(unplaced, rule, min_region_cosine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, type=Path, help="a job output folder (candidates/)")
    parser.add_argument("--set", required=True, type=Path, help="the bench set the job ran on (truth.csv, images/)")
    parser.add_argument("--out", type=Path, help="write the report here (JSON); else print it")
    args = parser.parse_args(argv)
    truth = {row["productId"]: row for row in read_truth(args.set / "truth.csv")}
    verify = run_verify(args.job)
    rule = photomatch.PhotoRule.of(verify)
    candidates = load_candidates(args.job)
    refused = candidates[refused_by_frames(candidates, rule, verify.min_region_cosine)]
    find_box = photomatch.box_finder(default_table("embed"))
    described: dict[str, tuple[bytes, photomatch.Described]] = {}  # an image in many pairs is described once

    def side(product: str) -> tuple[bytes, photomatch.Described]:
        if product not in described:
            data = (args.set / "images" / truth[product]["image"]).read_bytes()
            described[product] = (data, photomatch.describe_bytes(data, find_box))
        return described[product]

    rescored = []
    for a, b in zip(refused["a"], refused["b"], strict=True):
        (data_a, described_a), (data_b, described_b) = side(a), side(b)
        rescored.append(photomatch.score_described(described_a, described_b, data_a, data_b, rule.fit_gate()))
    names = [name for name, _ in photomatch.SCORE_FIELDS]
    frame = pd.DataFrame(rescored, columns=names, index=refused.index).assign(
        exact=False, scored=True, region_cosine=refused["region_cosine"]
    )
    now_kept = kept(frame.astype({"framed_placement": float}), rule, verify.min_region_cosine)
    pairs, counts, lowest = [], Counter(), {}
    for (a, b, cosine), scores, keep in zip(refused[["a", "b", "region_cosine"]].itertuples(index=False), rescored,
                                            now_kept, strict=True):  # fmt: skip
        placement = scores.get("framed_placement")
        kind = "copies" if truth[a]["group"] and truth[a]["group"] == truth[b]["group"] else "two_products"
        split = truth[a]["split"]
        counts[f"{kind}/{split}/refused"] += 1
        counts[f"{kind}/{split}/kept"] += int(keep)
        if kind == "two_products" and placement is not None:
            lowest[split] = min(lowest.get(split, 1.0), placement)
        edits = [truth[a]["transform"], truth[b]["transform"]]
        pairs.append({"a": a, "b": b, "kind": kind, "split": split, "edits": edits, "placement": placement,
                      "inliers": scores.get("inliers"), "region_cosine": None if pd.isna(cosine) else float(cosine),
                      "kept": bool(keep)})  # fmt: skip
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
