"""The pairs one job run keeps that another does not, and the other way round, counted per split (of
each pair's first product) as copies of one photo and pairs of two products, each pair of two
products listed with its scores: what a change to the job gained and lost, read before any
grouping. A pair is kept as the job keeps it (:func:`dedup.devkit.calibration.kept`, at each
run's own ``verify`` settings); the two runs need not have the same candidates.

    .venv/bin/python bench/kept_diff.py --before bench-out/r96/job/default --after bench-out/r100/job/default \\
        --set bench-out/dev2/set
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import kept, load_candidates, run_verify
from dedup.photomatch import PhotoRule

SHOWN = ("inliers", "inlier_ratio", "structure", "tile_agreement", "colour_change", "framed_placement")


def kept_pairs(job: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The pairs ``job`` keeps, each with its candidate row (scores as columns)."""
    verify = run_verify(job)
    candidates = load_candidates(job)
    rows = candidates[kept(candidates, PhotoRule.of(verify), verify.min_region_cosine)]
    return {(row["a"], row["b"]): row for row in rows.to_dict("records")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="a job output folder (candidates/)")
    parser.add_argument("--after", required=True, type=Path, help="another run's, on the same set")
    parser.add_argument("--set", required=True, type=Path, help="the bench set both ran on (truth.csv)")
    args = parser.parse_args(argv)
    truth = {row["productId"]: row for row in read_truth(args.set / "truth.csv")}
    before, after = kept_pairs(args.before), kept_pairs(args.after)
    counts: Counter[str] = Counter()
    two_products = []
    for change, pairs, rows in (("gained", after.keys() - before.keys(), after),
                                ("lost", before.keys() - after.keys(), before)):  # fmt: skip
        for a, b in sorted(pairs):
            same = truth[a]["group"] and truth[a]["group"] == truth[b]["group"]
            kind = "copies" if same else "two_products"
            counts[f"{kind}/{truth[a]['split']}/{change}"] += 1
            if not same:
                row = rows[(a, b)]
                two_products.append({"change": change, "a": a, "b": b, "split": truth[a]["split"],
                                     "edits": [truth[a]["transform"], truth[b]["transform"]],
                                     **{k: row.get(k) for k in SHOWN}})  # fmt: skip
    report = {"before": str(args.before), "after": str(args.after), "kept": [len(before), len(after)],
              "counts": dict(sorted(counts.items())), "two_products": two_products}  # fmt: skip
    print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
