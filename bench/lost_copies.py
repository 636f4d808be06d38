"""Why a job lost the copies it lost: each copy of a split not grouped with its original, counted
by what stopped the pair of the two (a diagnosis for the next change, not a score).

A lost copy's cause is the first of these that holds for the (copy, original) pair:
``no_candidate`` (the pair is not among the job's candidates), ``unchecked`` (a candidate the photo
check did not compare), the photo check's ``reason`` (``weak_fit``, ``no_fit``, ...), then the first
bound of the run's own rule that its scores fail (``inlier_ratio`` with its blurred band, as
:meth:`dedup.photomatch.PhotoRule.failing` reads it, ``structure``, ``tile_agreement``,
``colour_change``), ``framed_photos`` (the images pass, and the fit of the photos both frame
refuses them), then ``region_cosine`` (framed photos whose embeddings disagree). A pair the rule
keeps through a framed photo's view is not lost to the images' own scores. ``kept`` is a kept pair
whose copy still ended in another group (the oversized re-split). Per cause, the edit kinds.

``--list``: each lost copy too, with its cause, edit and the pair's scores (the rule's and the
framed-photo view's), the first thing to read before drawing a pair.

``--ranks``: for the ``no_candidate`` copies, where an exact search would have put the pair (the
job's kNN is approximate: IVF cells, ``cosine.k`` neighbours at or above its floor): the rank of
the other product among each one's nearest products by cosine (over both products' whole-image
and region vectors, the better side), bucketed, and how many of them reach the run's floor.

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/lost_copies.py --job bench-out/r08/job/default --set bench-out/dev2/set
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import RULE_FIELDS, VIEW_FIELDS, load_candidates, run_verify
from dedup.devkit.metrics import edit_kind
from dedup.photomatch import PhotoRule
from dedup.vectors import stack

RANK_BUCKETS = (5, 10, 20, 50)  # the upper ends of the rank buckets --ranks counts in
SCORE_COLUMNS = (*RULE_FIELDS, *VIEW_FIELDS, "reason", "region_view", "region_reason")  # what the rule reads


def cause_of(row: pd.Series | None, rule: PhotoRule, min_region_cosine: float) -> str:
    """What stopped one candidate pair (a row of :func:`load_candidates` with its ``reason``), or ``kept``."""
    if row is None:
        return "no_candidate"
    if row["reason"] == "unchecked":
        return "unchecked"
    scores = scores_of(row)
    if not row["exact"] and not rule.decide(scores):
        if row["reason"] is not None:
            return row["reason"]
        failed = rule.failing(scores)
        return failed[0] if failed else "framed_photos"  # the images pass; their framed photos' fit refuses
    if not pd.isna(row["region_cosine"]) and row["region_cosine"] < min_region_cosine:
        return "region_cosine"
    return "kept"


def scores_of(row: pd.Series) -> dict[str, float | str | None]:
    """A candidate pair's scores (:data:`SCORE_COLUMNS`) as JSON values: None where not recorded."""
    return {field: None if pd.isna(row[field]) else row[field] for field in SCORE_COLUMNS}


def exact_ranks(job: Path, pairs: list[tuple[str, str]], deepest: int = RANK_BUCKETS[-1]) -> list[tuple[int, float]]:
    """(rank, cosine) of each pair's nearer side in an exact search over the job's embeddings
    (``features/``: whole-image and region vectors, each product once among a vector's neighbours);
    rank ``deepest + 1`` and NaN where neither side has the other among its ``deepest`` nearest."""
    import faiss

    features = pd.read_parquet(job / "features", columns=["productId", "embedding", "region_embedding"])
    features = features[features["embedding"].notna()].reset_index(drop=True)
    dim = int(json.loads((job / "manifest.json").read_text())["embedding"]["dim"])
    framed = np.flatnonzero(features["region_embedding"].notna().to_numpy())
    whole, regions = (
        stack(list(column), dim) for column in (features["embedding"], features["region_embedding"].iloc[framed])
    )
    vectors = np.concatenate([whole, regions]).astype(np.float32)
    owner = np.concatenate([np.arange(len(features)), framed])
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    row_of = {product: i for i, product in enumerate(features["productId"])}
    region_of = {int(row): len(features) + i for i, row in enumerate(framed)}
    found = []
    for pair in pairs:
        best = (deepest + 1, float("nan"))
        for x, y in (pair, pair[::-1]):
            if x not in row_of or y not in row_of:
                continue
            for v in [row_of[x], *([region_of[row_of[x]]] if row_of[x] in region_of else [])]:
                cosines, hits = index.search(vectors[v : v + 1], deepest + 8)
                ranked: list[int] = []
                for hit, cosine in zip(owner[hits[0]], cosines[0], strict=True):
                    if hit != row_of[x] and hit not in ranked:
                        ranked.append(int(hit))
                        if hit == row_of[y] and len(ranked) < best[0]:
                            best = (len(ranked), float(cosine))
        found.append(best)
    return found


def rank_table(ranks: list[tuple[int, float]], floor: float) -> dict[str, dict[str, int]]:
    """Counts per rank bucket, and how many reach ``floor``."""
    table: dict[str, dict[str, int]] = {}
    for rank, cosine in ranks:
        upper = next((b for b in RANK_BUCKETS if rank <= b), None)
        name = f"<={upper}" if upper else f">{RANK_BUCKETS[-1]}"
        entry = table.setdefault(name, {"copies": 0, "at_floor": 0})
        entry["copies"] += 1
        entry["at_floor"] += int(cosine >= floor)
    return dict(sorted(table.items(), key=lambda item: int(item[0].strip("<=>")) + (item[0][0] == ">")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, type=Path, help="a job output folder (candidates/, groups/)")
    parser.add_argument("--set", required=True, type=Path, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--split", default="holdout")
    parser.add_argument("--ranks", action="store_true", help="an exact search's rank of the no-candidate pairs")
    parser.add_argument("--list", action="store_true", help="each lost copy, its cause, edit and scores")
    args = parser.parse_args(argv)
    truth = read_truth(args.set / "truth.csv")
    verify = run_verify(args.job)
    rule = PhotoRule.of(verify)
    candidates = load_candidates(args.job)
    candidates.loc[~candidates["scored"], "reason"] = "unchecked"
    candidates.loc[candidates["exact"], "reason"] = None
    index = {pair: i for i, pair in enumerate(zip(candidates["a"], candidates["b"], strict=True))}
    group = pd.read_parquet(args.job / "groups", columns=["productId", "group_id"])
    group_of = dict(zip(group["productId"], group["group_id"], strict=True))
    original = {row["source"]: row["productId"] for row in truth if row["transform"] == "original"}
    causes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    missing: list[tuple[str, str]] = []
    listed: list[dict] = []
    for row in truth:
        source = original.get(row["source"])
        if row["split"] != args.split or row["group"] == "" or row["transform"] == "original" or source is None:
            continue
        copy = row["productId"]
        if group_of.get(copy) is not None and group_of.get(copy) == group_of.get(source):
            continue  # found
        at = index.get((copy, source), index.get((source, copy)))
        pair = None if at is None else candidates.iloc[at]
        cause = cause_of(pair, rule, verify.min_region_cosine)
        causes[cause][edit_kind(row["transform"])] += 1
        if args.list:
            listed.append({"cause": cause, "copy": copy, "original": source, "transform": row["transform"],
                           **({} if pair is None else scores_of(pair))})  # fmt: skip
        if cause == "no_candidate":
            missing.append((copy, source))
    ranked = sorted(causes.items(), key=lambda item: -sum(item[1].values()))
    result = {cause: {"copies": sum(kinds.values()), "kinds": dict(kinds.most_common())} for cause, kinds in ranked}
    out: dict = {"job": str(args.job), "split": args.split, "lost": result}
    if args.list:
        out["copies"] = sorted(listed, key=lambda item: (item["cause"], item["transform"]))
    if args.ranks:
        floor = float(json.loads((args.job / "manifest.json").read_text())["embedding"]["candidate_cosine"])
        out["no_candidate_ranks"] = {"floor": floor, "by_rank": rank_table(exact_ranks(args.job, missing), floor)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
