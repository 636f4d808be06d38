"""Which copies the embedder's denoising (``embed.denoise_from``) brings among the candidates.

Reads a finished job's ``features/`` (its whole-image embeddings, made with or without denoising)
and its bench set's images: every image whose noise at the model's input size is at or above
``--denoise-from`` is embedded again through :func:`dedup.embed.embedder_input` (denoised), every
other keeps its stored vector. Then, for both sets of vectors, an exact search: each product's
``--k`` nearest at cosine ``--floor`` or more (whole-image vectors only; the job's IVF search
approximates this). Printed: per split, the copies whose edits include noise and the others, how
many of them are a candidate pair with their original, without and with the denoising.

Run from the repository root, on the output of ``bench/quality.py`` (a job made before the
denoising, e.g. issue 14 phase 11's)::

    .venv/bin/python bench/denoise_candidates.py --job bench-out/r17/job/default --set bench-out/dev2/set
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from PIL import Image

from dedup.devkit.benchset import read_truth
from dedup.embed import embedder_input, load_embedder, resize_square
from dedup.settings import default_table
from dedup.vectors import stack


def candidate_pairs(vectors: np.ndarray, k: int, floor: float) -> set[tuple[int, int]]:
    """Each row's ``k`` nearest other rows at ``floor`` or more, as (low, high) index pairs."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    cosines, hits = index.search(vectors, k + 1)
    pairs = set()
    for i in range(len(vectors)):
        for cosine, j in zip(cosines[i], hits[i], strict=True):
            if j != i and j >= 0 and cosine >= floor:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, type=Path)
    parser.add_argument("--set", required=True, type=Path, help="the bench set the job ran on")
    parser.add_argument("--denoise-from", type=float, default=default_table("embed").denoise_from)
    parser.add_argument("--k", type=int, default=default_table("cosine").k)
    parser.add_argument("--floor", type=float, default=0.5)
    args = parser.parse_args(argv)
    settings = default_table("embed", device="cpu")
    embedder = load_embedder(settings)
    features = pd.read_parquet(args.job / "features", columns=["productId", "embedding"])
    features = features[features["embedding"].notna()].reset_index(drop=True)
    before = stack(list(features["embedding"]), embedder.dim).astype(np.float32)
    after = before.copy()
    truth = read_truth(args.set / "truth.csv")
    image_of = {row["productId"]: row["image"] for row in truth}
    denoised = 0
    for i, product in enumerate(features["productId"]):
        pixels = np.asarray(Image.open(args.set / "images" / image_of[product]).convert("RGB"))
        ready = embedder_input(pixels, embedder.input_size, args.denoise_from)  # its gate decides
        if not np.array_equal(ready, resize_square(pixels, embedder.input_size)):
            after[i] = embedder.embed(ready[None])[0]
            denoised += 1
    found = [candidate_pairs(vectors, args.k, args.floor) for vectors in (before, after)]
    row = {product: i for i, product in enumerate(features["productId"])}
    original = {r["source"]: r["productId"] for r in truth if r["transform"] == "original"}
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for r in truth:
        source = original.get(r["source"])
        if r["transform"] == "original" or r["group"] == "" or r["productId"] not in row or source not in row:
            continue
        pair = tuple(sorted((row[r["productId"]], row[source])))
        key = f"{r['split']}/{'noise' if 'noise' in r['transform'] else 'other'}"
        counts[key][0] += 1
        counts[key][1] += pair in found[0]
        counts[key][2] += pair in found[1]
    fields = ("copies", "candidates_before", "candidates_after")
    copies = {key: dict(zip(fields, value, strict=True)) for key, value in sorted(counts.items())}
    report = {"images": len(features), "denoised": denoised, "denoise_from": args.denoise_from, "k": args.k,
              "floor": args.floor, "copies": copies}  # fmt: skip
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
