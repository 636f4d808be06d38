"""A region embedded squashed or centred on a square, by the region's aspect (issue 14, phase 18).

The model squashes its input to a square. For every image of a bench set given a content region
at the defaults (``dedup/content.py``), this embeds the region both ways: squashed (the crop as it
is) and centred on a square of its outermost pixels' median colour. A copy's region *finds* its
original when the original is among its 5 nearest products by the job's own whole-image
embeddings (``features/`` of a run on the set) at cosine 0.5 or more, as the kNN would take it;
for an original's own region, the highest cosine to another product (a look-alike's way in).
Per edit kind and aspect bucket (the longer side over the shorter), on one split.

    .venv/bin/python bench/region_square.py --job bench-out/r36/job/default --set bench-out/dev2/set \\
        --split calibration --out bench-out/region-square.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dedup import content
from dedup.cosine import decode
from dedup.devkit.benchset import read_truth
from dedup.devkit.metrics import edit_kind
from dedup.embed import cached_embedder, embedder_input
from dedup.imaging import decode_pixels
from dedup.settings import default_table
from dedup.vectors import normalise

KINDS = ("original", "banner", "border", "pad", "stack", "augly")
BUCKETS = (1.5, 2.0)  # aspect buckets: under 1.5, 1.5 to 2, 2 and more
K, FLOOR = 5, 0.5  # as the kNN takes a neighbour: among the k nearest, at the candidate floor


def bucket(aspect: float) -> str:
    if aspect < BUCKETS[0]:
        return f"<{BUCKETS[0]}"
    return f"{BUCKETS[0]}-{BUCKETS[1]}" if aspect < BUCKETS[1] else f">={BUCKETS[1]}"


def job_arguments(doc: str) -> argparse.ArgumentParser:
    """The arguments of a script that reads a finished job on a bench set: --job, --set, --split, --out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a finished job output on the set")
    parser.add_argument("--set", type=Path, required=True)
    parser.add_argument("--split", default="calibration")
    parser.add_argument("--out", type=Path, required=True)
    return parser


def job_vectors(job: Path) -> tuple[np.ndarray, dict[str, int]]:
    """A finished job's whole-image embeddings (``features/``), unit rows, and each product's row."""
    features = pd.read_parquet(job / "features", columns=["productId", "embedding"])
    dim = json.loads((job / "manifest.json").read_text())["embedding"]["dim"]
    vectors = normalise(decode(list(features["embedding"]), dim))  # stored as float16: unit again
    return vectors, {product: i for i, product in enumerate(features["productId"])}


def truth_by_kind(bench_set: Path) -> pd.DataFrame:
    """A bench set's truth rows, with each one's edit ``kind`` (``original`` for an original)."""
    truth = pd.DataFrame(read_truth(bench_set / "truth.csv"))
    truth["kind"] = truth["transform"].map(edit_kind)
    return truth


def main() -> None:
    args = job_arguments(__doc__).parse_args()

    settings = default_table("embed")
    embedder = cached_embedder(settings)
    vectors, row_of = job_vectors(args.job)
    truth = truth_by_kind(args.set)
    original_of = truth[truth["kind"] == "original"].set_index("source")["productId"]

    def embed(pixels: np.ndarray) -> np.ndarray:  # unit length, as the embedder returns it
        return embedder.embed(embedder_input(pixels, embedder.input_size, settings.denoise_from)[None])[0]

    rows = []
    for _, listing in truth[truth["kind"].isin(KINDS) & (truth["split"] == args.split)].iterrows():
        pixels = decode_pixels((args.set / "images" / listing["image"]).read_bytes())
        box = content.content_box(pixels, settings)
        if box is None:
            continue
        region = content.crop(pixels, box)
        aspect = max(region.shape[:2]) / min(region.shape[:2])
        row = {"kind": listing["kind"], "aspect": bucket(aspect)}
        for way, pixels_in in (("squashed", region), ("centred", content.centred(region))):
            cosines = vectors @ embed(pixels_in)
            cosines[row_of[listing["productId"]]] = -2.0  # not itself
            if listing["kind"] == "original":
                row[way] = float(cosines.max())
            else:
                target = row_of[original_of[listing["source"]]]
                row[way] = float((cosines > cosines[target]).sum() < K and cosines[target] >= FLOOR)
        rows.append(row)
    table = (
        pd.DataFrame(rows)
        .groupby(["kind", "aspect"])
        .agg(regions=("squashed", "size"), squashed=("squashed", "mean"), centred=("centred", "mean"))
    )
    print(f"{args.split}: share of copies whose region finds its original (originals: mean highest cosine to another)")
    print(table.round(3).to_string())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table.reset_index().to_json(orient="records", indent=1))


if __name__ == "__main__":
    main()
