"""The nearest neighbours under the floor as candidates (issue 14, phase 29): what they add, replayed.

A heavily edited copy (a stack of a rotation and a blur or a quarter turn, a large pad, a banner)
is often nearest to its original at a cosine under the candidate floor (``sscd_distilled``'s
0.5), and so is lost with no candidate. For each point ``R:F`` of ``--grid`` this takes, on top
of a job's candidates, each product's ``R`` nearest products (an exact search over the job's
whole-image embeddings) whose cosine is at least ``F`` and under the floor, and replays the photo
check on them (:func:`dedup.photomatch.match_scores` with the run's fit gate, decided by the
run's rule on the whole images: the pairs added carry no framed-photo view). The groups are the
job's kept pairs with the added pairs the check keeps, scored per split as ``bench/quality.py``
scores a job, with the pairs of two different products the check keeps among those added (the
selection rule of phases 25-28 refuses a point that gains any on a calibration split).

The job searches its cells approximately (IVF, ``cosine.probes``) and with region vectors too,
so a run at ``cosine.nearest`` differs a little from this replay; the replay chooses the point,
a run confirms it (docs/BENCHMARKS.md, phase 29).

``--originals``: no replay; among the set's original photos alone (the real catalog's density,
without the planted copies), the pairs the job's floor makes of each one's ``cosine.k`` nearest
and those each point's nearest under the floor would add.

    .venv/bin/python bench/nearest_candidates.py --job bench-out/r87/job/default \\
        --set bench-out/dev2/set --grid 1:0.4,2:0.4,3:0.4,5:0.4,3:0.35,5:0.35,3:0.3,5:0.3,3:0,2:0,1:0
    .venv/bin/python bench/nearest_candidates.py --job bench-out/r87/job/default --set bench-out/dev2/set --originals
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from lost_copies import stack
from photo_replay import image_bytes
from spread_refit import mapped

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import components, kept, load_candidates, run_verify
from dedup.devkit.metrics import copy_pairs, score_groups

KEYS = ("precision", "recall", "f1", "lookalike_false_pairs")
_WORK: dict[str, Any] = {}  # the worker processes' inputs (set before the pool forks)


Ranked = dict[tuple[str, str], tuple[int, float]]  # a pair (a < b): its better rank, its cosine


def ranked_pairs(job: Path, deepest: int, only: set[str] | None = None) -> tuple[float, Ranked]:
    """The run's floor, and the pairs (a < b) of each product (of ``only``, among themselves) and its
    ``deepest`` nearest products by whole-image cosine (an exact search): (their better rank, cosine)."""
    manifest = json.loads((job / "manifest.json").read_text())
    floor, dim = float(manifest["embedding"]["candidate_cosine"]), int(manifest["embedding"]["dim"])
    import faiss

    features = pd.read_parquet(job / "features", columns=["productId", "embedding"])
    features = features[features["embedding"].notna()]
    if only is not None:
        features = features[features["productId"].isin(only)]
    features = features.reset_index(drop=True)
    vectors = stack(list(features["embedding"]), dim).astype(np.float32)
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    cosines, hits = index.search(vectors, deepest + 1)
    ids = features["productId"].tolist()
    found: Ranked = {}
    for row in range(len(ids)):
        others = [(hit, cosine) for hit, cosine in zip(hits[row], cosines[row], strict=True) if hit != row]
        for rank, (hit, cosine) in enumerate(others[:deepest], start=1):
            pair = (min(ids[row], ids[hit]), max(ids[row], ids[hit]))
            if rank < found.get(pair, (deepest + 1, 0.0))[0]:
                found[pair] = (rank, float(cosine))
    return floor, found


def nearest_under(job: Path, candidates: pd.DataFrame, deepest: int, lowest: float) -> Ranked:
    """:func:`ranked_pairs` from ``lowest`` up to the run's floor that are not already ``candidates``."""
    floor, ranked = ranked_pairs(job, deepest)
    known = {(min(a, b), max(a, b)) for a, b in zip(candidates["a"], candidates["b"], strict=True)}  # any order
    return {pair: found for pair, found in ranked.items() if lowest <= found[1] < floor and pair not in known}


def among_originals(job: Path, truth: list[dict[str, str]], grid: list[tuple[int, float]], k: int) -> dict[str, Any]:
    """``--originals``: the floor's pairs among the original photos' ``k`` nearest, and each point's additions."""
    originals = {row["productId"] for row in truth if row["transform"] == "original"}
    floor, ranked = ranked_pairs(job, max(k, *(r for r, _ in grid)), originals)
    at_floor = {pair for pair, (rank, cosine) in ranked.items() if rank <= k and cosine >= floor}
    added = {f"{r}:{f}": sum(1 for pair, (rank, cosine) in ranked.items()
                             if rank <= r and f <= cosine < floor and pair not in at_floor)
             for r, f in grid}  # fmt: skip
    return {"photos": len(originals), "floor": floor, "k": k, "pairs_at_floor": len(at_floor), "added": added}


def _decided(pair: tuple[str, str]) -> tuple[tuple[str, str], bool | None]:
    """The run's photo check on one pair's images (None: an image that cannot be compared)."""
    data, rule = _WORK["data"], _WORK["rule"]
    pixels = [photomatch.decode_for_match(data.get(product)) for product in pair]
    if any(isinstance(side, str) for side in pixels):
        return pair, None
    return pair, rule.decide(photomatch.match_scores(*pixels, rule.fit_gate()))


def replay(job: Path, truth: list[dict[str, str]], grid: list[tuple[int, float]], workers: int) -> list[dict]:
    """Each grid point's added candidates, those the check keeps, and the groups' scores per split."""
    candidates = load_candidates(job)
    added = nearest_under(job, candidates, max(r for r, _ in grid), min(f for _, f in grid))
    verify = run_verify(job)
    rule = photomatch.PhotoRule.of(verify)
    _WORK.update(rule=rule, data=image_bytes(job, {p for pair in added for p in pair}))
    decided = dict(mapped(_decided, sorted(added), workers))
    base = candidates[kept(candidates, rule, verify.min_region_cosine)][["a", "b", "exact"]]
    split_of = {row["productId"]: row["split"] for row in truth}
    points = []
    for deepest, lowest in grid:
        within = [pair for pair, (rank, cosine) in added.items() if rank <= deepest and cosine >= lowest]
        keeps = [pair for pair in within if decided.get(pair)]
        others = {"calibration": 0, "holdout": 0}
        for (a, _), copy in zip(keeps, copy_pairs(keeps, truth), strict=True):
            others[split_of[a]] += not copy
        extra = pd.DataFrame({"a": [a for a, _ in keeps], "b": [b for _, b in keeps], "exact": False})
        groups = components(pd.concat([base, extra], ignore_index=True))
        point: dict[str, Any] = {"nearest": deepest, "from_cosine": lowest, "added": len(within),
                                 "kept": len(keeps)}  # fmt: skip
        for split in ("calibration", "holdout"):
            scores = score_groups(groups, truth, split)
            point[split] = {key: scores[key] for key in KEYS} | {"other_pairs_kept": others[split]}
        points.append(point)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--set", type=Path, required=True, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--grid", default="0:0.5,1:0,2:0,3:0,5:0", help="comma-separated nearest:from_cosine points")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--originals", action="store_true", help="count among the original photos; no replay")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    grid = [(int(r), float(f)) for r, f in (point.split(":") for point in args.grid.split(","))]
    truth = read_truth(args.set / "truth.csv")
    if args.originals:
        k = int(json.loads((args.job / "manifest.json").read_text())["config"]["cosine"]["k"])
        result = {"job": str(args.job), "originals": among_originals(args.job, truth, grid, k)}
    else:
        result = {"job": str(args.job), "points": replay(args.job, truth, grid, args.workers)}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
