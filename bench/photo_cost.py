"""CPU cost of the photo check per candidate and per product: bare (one process) on a job's own
candidates, next to the job's verify stage inside Spark.

Reads a finished job output run with the photo check (``candidates/``: every scored pair with
its ``photo`` scores; ``images/``: the bytes; ``manifest.json``). Bare: a seeded sample of
products and every photo-checked candidate of theirs; each image is described once
(``photomatch.describe_bytes``: decode, downscale, ORB of the image and its mirror, and of the
photo it frames), each pair scored from the two descriptions as the job scores it
(``score_described``: the fit, and where it leaves a comparison, the pixels decoded and
compared; a framed photo's view too); process CPU time of each part. Per candidate = (describe
x images / pairs) + the pair; per product = the same totals over the products, the way the job
pays them (each image described once, each pair once). ``--against FILE``: another version's
photomatch.py measured on the same pairs in the same process, and whether every pair's scores
are the same (over the fields both record). Inside Spark: the verify stage's seconds x cores /
products (joins and writes included, an upper bound on the photo check's share).

    .venv/bin/python bench/photo_cost.py bench-out/dev-knn/job/default --products 400
    git show 64ad9b5~1:dedup/photomatch.py > /tmp/photomatch-before.py
    .venv/bin/python bench/photo_cost.py bench-out/dev-knn/job/default --against /tmp/photomatch-before.py
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.parquet as pq

from dedup import photomatch
from dedup.devkit.calibration import load_module
from dedup.settings import default_table

REPO = Path(__file__).resolve().parent.parent


def measure(pm: ModuleType, pairs: list[tuple[str, str]], needed: set[str], data: dict, gate: tuple) -> dict[str, Any]:
    """Process CPU seconds of each part of the photo check of ``pm`` (a photomatch module) on
    ``pairs``, as the job runs it: each image described once (with the photo it frames, where
    ``pm`` compares framed photos: ``box_finder`` at the defaults' ``embed`` table), each pair
    fitted and, where the fit leaves a comparison, compared (``score_described``: the framed
    photo's view too; a weak fit's second keypoints through ``dense_cache``, where ``pm`` has it);
    the pairs compared, those with a framed view, and every pair's scores."""
    find = pm.box_finder(default_table("embed")) if hasattr(pm, "box_finder") else None
    started = time.process_time()
    described = {p: pm.describe_bytes(data.get(p), *([find] if find else [])) for p in needed}
    describe_s = time.process_time() - started
    started = time.process_time()
    cache = pm.PixelCache()
    dense = [pm.dense_cache(cache)] if hasattr(pm, "dense_cache") else []  # a weak fit's second keypoints, as pair_udf
    scores = [pm.score_described(described[a], described[b], data.get(a), data.get(b), gate, cache, *dense)
              for a, b in pairs]  # fmt: skip
    pairs_s = time.process_time() - started
    compared = sum(s["reason"] is None for s in scores)
    framed = sum(s.get("region_view") is not None for s in scores)
    return {"describe_s": describe_s, "pairs_s": pairs_s, "compared": compared, "framed": framed, "scores": scores}


def figures(parts: dict[str, Any], n_images: int, n_pairs: int, pairs_per_product: float) -> dict[str, float]:
    """CPU ms of each part, per pair and per product (each image described once, each pair once)."""
    describe_ms = 1000 * parts["describe_s"] / n_images
    pair_ms = 1000 * parts["pairs_s"] / max(1, n_pairs)
    return {
        "compared_pairs": parts["compared"], "pairs_with_a_framed_view": parts["framed"],
        "describe_ms_per_image": describe_ms, "ms_per_pair": pair_ms,
        "bare_ms_per_candidate": describe_ms * n_images / max(1, n_pairs) + pair_ms,
        "bare_ms_per_product": describe_ms + pair_ms * pairs_per_product,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--against", type=Path,
                        help="another photomatch.py, measured on the same pairs (every score compared)")  # fmt: skip
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
    gate = photomatch.DEFAULT_RULE.fit_gate()  # the job's gate at the defaults, its blurred band too

    parts = measure(photomatch, pairs, needed, data, gate)
    job_products = int(manifest["products_hashed"])
    verify_s = float(manifest["stage_seconds"]["verify"])
    result = {
        "job": str(args.job), "products_sampled": len(chosen), "pairs": len(pairs), "images_described": len(needed),
        **figures(parts, len(needed), len(pairs), len(checked) / job_products),
        "job_checked_pairs": len(checked), "job_products": job_products, "job_verify_s": verify_s,
        "spark_verify_cpu_ms_per_product": 1000 * verify_s * args.cores / job_products,
        "spark_verify_cpu_ms_per_candidate": 1000 * verify_s * args.cores / max(1, len(checked)),
    }  # fmt: skip
    if args.against:
        against = load_module(args.against)
        other = measure(against, pairs, needed, data, gate)
        result["against"] = {
            "module": str(args.against), **figures(other, len(needed), len(pairs), len(checked) / job_products),
            "pairs_with_equal_scores": sum(all(x.get(k) == v for k, v in y.items())  # the fields both record
                                           for x, y in zip(parts["scores"], other["scores"], strict=True)),
            "kept": sum(map(photomatch.decide, parts["scores"])),
            "kept_against": sum(map(against.decide, other["scores"])),  # by that version's own rule
        }  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
