"""Recall of the job's cosine LSH on real embeddings: its candidates against exact search.

Reads a finished job output (``features/`` with embeddings, ``candidates/`` with each scored
pair's cosine, ``manifest.json`` with the candidate floor), finds every pair at or above the
floor by exact search (blockwise matrix products in numpy: a benchmark on a dev set, not
product code, which never holds all vectors in one place) and reports the share the job found,
overall and per cosine band.

    .venv/bin/python bench/lsh_recall.py bench-out/quality/job/default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dedup.vectors import stack

REPO = Path(__file__).resolve().parent.parent


def exact_pairs(vectors: np.ndarray, floor: float, block: int = 2048) -> set[tuple[int, int]]:
    """Every (i, j), i < j, whose cosine is at least ``floor``."""
    found: set[tuple[int, int]] = set()
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block] @ vectors.T
        rows, cols = np.nonzero(sims >= floor)
        found.update((start + r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True) if start + r < c)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a finished job output folder run with an embedder")
    args = parser.parse_args(argv)
    manifest = json.loads((args.out / "manifest.json").read_text())
    floor, dim = manifest["embedding"]["candidate_cosine"], manifest["embedding"]["dim"]
    features = pq.read_table(args.out / "features", columns=["productId", "embedding"]).to_pylist()
    features = [f for f in features if f["embedding"] is not None]
    ids = [f["productId"] for f in features]
    vectors = stack([f["embedding"] for f in features], dim)
    truth = {(ids[i], ids[j]) if ids[i] < ids[j] else (ids[j], ids[i]) for i, j in exact_pairs(vectors, floor)}
    scored = pq.read_table(args.out / "candidates", columns=["a", "b", "cosine"]).to_pylist()
    found = {(r["a"], r["b"]) if r["a"] < r["b"] else (r["b"], r["a"]) for r in scored if (r["cosine"] or 0) >= floor}
    cos = {key: float(vectors[ids.index(key[0])] @ vectors[ids.index(key[1])]) for key in list(truth - found)[:2000]}
    result = {
        "out": str(args.out), "products": len(ids), "floor": floor, "lsh": manifest["embedding"]["cosine_lsh"],
        "exact_pairs": len(truth), "found": len(truth & found), "recall": len(truth & found) / max(1, len(truth)),
        "missed_cosines": sorted(round(c, 3) for c in cos.values())[-20:],
        "candidates_share_of_all_pairs": len(scored) / (len(ids) * (len(ids) - 1) / 2),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
