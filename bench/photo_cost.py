"""CPU cost of the photo check per candidate and per product: bare (one process) on a job's own
candidates, next to the job's verify stage inside Spark.

Reads a finished job output run with the photo check (``candidates/``: every scored pair with
its ``photo`` scores; ``images/``: the bytes; ``manifest.json``). Bare: a seeded sample of
products and every photo-checked candidate of theirs; each image is described once
(``photomatch.describe_bytes``: decode, downscale, ORB of the image and its mirror), each pair
fitted from the two descriptions (``fit_descriptions``), and the pairs whose fit leaves a
comparison decode both images and compare (``compare_pixels``); process CPU time of each part.
Per candidate = (describe x images / pairs) + fit + compare x compared share; per product =
the same totals over the products, the way the job pays them (each image described once, each
pair once). Inside Spark: the verify stage's seconds x cores / products (joins and writes
included, an upper bound on the photo check's share).

    .venv/bin/python bench/photo_cost.py bench-out/dev-knn/job/default --products 400
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dedup import photomatch  # noqa: E402
from dedup.config import DEFAULTS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    manifest = json.loads((args.job / "manifest.json").read_text())
    scored = pq.read_table(args.job / "candidates", columns=["a", "b", "photo"]).to_pylist()
    checked = [(r["a"], r["b"]) for r in scored if r["photo"] is not None]
    products = sorted({p for pair in checked for p in pair})
    chosen = set(random.Random(args.seed).sample(products, min(args.products, len(products))))
    pairs = [(a, b) for a, b in checked if a in chosen]  # every pair once: by its first side
    needed = {p for pair in pairs for p in pair}
    images = pq.read_table(args.job / "images", columns=["productId", "image_bytes", "fetch_status"]).to_pylist()
    data = {r["productId"]: r["image_bytes"] for r in images if r["fetch_status"] == "ok" and r["productId"] in needed}
    gate = (int(DEFAULTS["verify"]["min_inliers"]), float(DEFAULTS["verify"]["min_inlier_ratio"]))

    started = time.process_time()
    described = {p: photomatch.describe_bytes(data.get(p)) for p in needed}
    describe_s = time.process_time() - started
    started = time.process_time()
    fits = [(a, b, *photomatch.fit_descriptions(described[a], described[b], gate)) for a, b in pairs]
    fit_s = time.process_time() - started
    started = time.process_time()
    compared = 0
    for a, b, scores, matrix in fits:
        if matrix is not None:
            pixels = [photomatch.decode_for_match(data[p]) for p in (a, b)]
            photomatch.compare_pixels(*pixels, scores, matrix)
            compared += 1
    compare_s = time.process_time() - started
    total_ms = 1000 * (describe_s + fit_s + compare_s)
    n_products = len(chosen)
    job_products = int(manifest["products_hashed"])
    verify_s = float(manifest["stage_seconds"]["verify"])
    result = {
        "job": str(args.job), "products_sampled": n_products, "pairs": len(pairs), "images_described": len(needed),
        "compared_pairs": compared, "describe_ms_per_image": 1000 * describe_s / len(needed),
        "fit_ms_per_pair": 1000 * fit_s / max(1, len(pairs)),
        "compare_ms_per_compared_pair": 1000 * compare_s / max(1, compared),
        "bare_ms_per_candidate": total_ms / max(1, len(pairs)),
        "bare_ms_per_product": (1000 * describe_s / len(needed) * job_products
                                + (fit_s + compare_s) * 1000 / max(1, len(pairs)) * len(checked)) / job_products,
        "job_checked_pairs": len(checked), "job_products": job_products, "job_verify_s": verify_s,
        "spark_verify_cpu_ms_per_product": 1000 * verify_s * args.cores / job_products,
        "spark_verify_cpu_ms_per_candidate": 1000 * verify_s * args.cores / max(1, len(checked)),
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
