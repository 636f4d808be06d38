"""How many nearest neighbours hold the true copies: candidate recall of a bench set's true pairs
against ``cosine.k`` and the cosine floor, on real embeddings; and the cosines real edits produce.

Reads a job output's ``features/`` (embeddings, sha256, dHashes) and the set's ``truth.csv``;
finds every product's exact top-k in numpy (a benchmark over one dev set, not product code) and
counts, for each (k, floor), the true pairs that are candidates as the job makes them: one is
among the other's k nearest at cosine >= floor, or byte-identical, or dHash distance 0 (direct or
mirrored: ``verify.photo_max_distance``), and the candidates per product (2 x pairs / products).
Also writes the cosine of every original-to-copy pair by transform (the planted copies of
``bench/scale.py`` are drawn from these).

    .venv/bin/python bench/knn_recall.py bench-out/dev/job/default bench-out/dev/set/truth.csv \\
        --split calibration --out bench-out/knn-recall.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dedup.devkit.benchset import read_truth
from dedup.devkit.metrics import edit_kind
from dedup.vectors import normalise, stack

REPO = Path(__file__).resolve().parent.parent

KS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
FLOORS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)


def top_neighbours(vectors: np.ndarray, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) indices and cosines of each row's k nearest other rows, best first."""
    idx, sims_out = [], []
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block] @ vectors.T
        sims[np.arange(len(sims)), start + np.arange(len(sims))] = -2.0
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        part = np.take_along_axis(part, order, 1)
        idx.append(part)
        sims_out.append(np.take_along_axis(sims, part, 1))
    return np.concatenate(idx), np.concatenate(sims_out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path, help="a finished job output run with an embedder")
    parser.add_argument("truth", type=Path)
    parser.add_argument("--split", default="", help="calibration or holdout (default: every listing)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    columns = ["productId", "embedding", "sha256", "dhash", "dhash_flip"]
    rows = [r for r in pq.read_table(args.job / "features", columns=columns).to_pylist() if r["embedding"]]
    truth = {t["productId"]: t for t in read_truth(args.truth) if not args.split or t["split"] == args.split}
    rows = [r for r in rows if r["productId"] in truth]  # a split is searched on its own, as a catalog
    dim = len(rows[0]["embedding"]) // 2
    vectors = normalise(stack([r["embedding"] for r in rows], dim))
    at = {r["productId"]: i for i, r in enumerate(rows)}
    groups = defaultdict(list)
    for pid, t in truth.items():
        if t["group"] and pid in at:
            groups[t["group"]].append(at[pid])
    true_pairs = {tuple(sorted(p)) for members in groups.values() for p in combinations(members, 2)}
    original = {g: at[p] for p, t in truth.items() if t["transform"] == "original" and t["group"] and p in at
                for g in [t["group"]]}  # fmt: skip
    direct_pairs = {tuple(sorted((original[truth[rows[i]["productId"]]["group"]], i))) for members in groups.values()
                    for i in members if truth[rows[i]["productId"]]["transform"] != "original"}  # fmt: skip
    sha = [r["sha256"] for r in rows]
    dh = [(r["dhash"], r["dhash_flip"]) for r in rows]

    def hash_candidate(i: int, j: int) -> bool:
        return sha[i] == sha[j] or dh[i][0] == dh[j][0] or dh[i][1] == dh[j][0] or dh[i][0] == dh[j][1]

    by_hash = {p for p in true_pairs if hash_candidate(*p)}
    idx, sims = top_neighbours(vectors, max(KS))
    n = len(rows)
    table = []
    for floor in FLOORS:
        for k in KS:
            ok = sims[:, :k] >= floor
            rows_at, cols_at = np.nonzero(ok)
            chosen = idx[:, :k][rows_at, cols_at]
            pairs = set(zip(np.minimum(rows_at, chosen).tolist(), np.maximum(rows_at, chosen).tolist(), strict=True))
            found = (pairs & true_pairs) | by_hash
            table.append({"k": k, "floor": floor, "recall": len(found) / len(true_pairs),
                          "recall_original_to_copy": len((pairs & direct_pairs) | (by_hash & direct_pairs))
                          / len(direct_pairs), "missed": len(true_pairs - found),
                          "knn_candidates_per_product": 2 * len(pairs) / n})  # fmt: skip
    cosines = defaultdict(list)
    for a, b in direct_pairs:
        copy = b if truth[rows[b]["productId"]]["transform"] != "original" else a
        kind = edit_kind(truth[rows[copy]["productId"]]["transform"])
        cosines[kind].append(float(vectors[a] @ vectors[b]))
    allc = np.concatenate([np.array(v) for v in cosines.values()])
    result = {"job": str(args.job), "split": args.split or "all", "products": n, "true_pairs": len(true_pairs),
              "original_to_copy_pairs": len(direct_pairs), "hash_candidates_among_true": len(by_hash),
              "table": table, "copy_cosine_quantiles": {str(q): float(np.quantile(allc, q))
                                                        for q in (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9)},
              "copy_cosines": {k: sorted(v) for k, v in cosines.items()}}  # fmt: skip
    for line in table:
        print(f"floor {line['floor']:.1f} k {line['k']:>2}: recall {line['recall']:.4f} (orig-copy "
              f"{line['recall_original_to_copy']:.4f}, missed {line['missed']}), kNN candidates/product "
              f"{line['knn_candidates_per_product']:.2f}")  # fmt: skip
    print(json.dumps(result["copy_cosine_quantiles"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
