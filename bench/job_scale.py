"""The whole default job on real photos at two catalog sizes, side by side with fastdup in one run:
candidates per product as the catalog grows, and the job's seconds against fastdup's.

The set (built here, not by ``dedup bench-set``): every photo of ``--photos`` (the 9,583 shared
fashion photos) plus one edited copy of each (``dedup.devkit.benchset.edit``, the transforms and
combinations of the dev set in turn, seeded): 19,166 listings; the small catalog is a seeded
quarter of the photos with their copies (4,792 listings, the size issue 12 measured first).
Each catalog is served on loopback (an ephemeral port) and run through ``jobs.dedup_job.run_job``
at the defaults (ingest, fetch, features with the default embedder, candidates, verify, groups,
outputs), Spark ``local[2]``, a fresh output each time. fastdup (``make fastdup-venv``) then runs
on the large catalog's image folder with its defaults, 2 threads (``bench/_fastdup_peer.py``).

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/job_scale.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from dedup.config import load_config
from dedup.devkit.benchrun import run_meta
from dedup.devkit.benchset import COMBINABLE, TRANSFORMS, edit
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import image_url_str, write_catalog_csv
from dedup.session import build_session
from jobs.dedup_job import run_job

REPO = Path(__file__).resolve().parent.parent

DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "fashion-catalog" / "images"
FASTDUP_PYTHON = REPO / ".venv-fastdup" / "bin" / "python"


def build_images(photos: Path, folder: Path, seed: int) -> list[dict[str, str]]:
    """Each photo and one edited copy of it into ``folder``: (name, photo, transform) per listing."""
    folder.mkdir(parents=True, exist_ok=True)
    listings, rng = [], random.Random(seed)
    kinds = [*TRANSFORMS, "combo"]
    for index, path in enumerate(sorted(p for p in photos.iterdir() if p.suffix.lower() == ".jpg")):
        transform = kinds[index % len(kinds)]
        if transform == "combo":
            transform = "combo:" + "+".join(rng.sample(COMBINABLE, rng.choice([2, 3])))
        with Image.open(path) as opened:
            copy = edit(ImageOps.exif_transpose(opened).convert("RGB"), transform, rng)
        for data, kind, tag in ((path.read_bytes(), "original", "o"), (copy, transform, "c")):
            stem = f"{hashlib.sha256(data).hexdigest()[:16]}x{index}"
            served = f"{stem}-200x200-{tag}.jpg"  # the name the catalog's 200x200 URL asks for
            (folder / served).write_bytes(data)
            listings.append({"name": f"{stem}-{tag}", "photo": path.stem, "transform": kind, "file": served})
    return listings


def write_catalog(listings: list[dict[str, str]], base_url: str, path: Path) -> None:
    rows = [{"productId": f"L{i:06d}", "title": f"Listing of photo {x['photo']}",
             "imageUrlStr": image_url_str(base_url, x["name"] + ".jpg"), "categories": "Apparels>Benchmark"}
            for i, x in enumerate(listings)]  # fmt: skip
    write_catalog_csv(rows, path)


def run_fastdup(images: Path, work: Path) -> dict[str, Any]:
    if not FASTDUP_PYTHON.exists():
        return {"status": "skipped", "reason": f"no interpreter at {FASTDUP_PYTHON} (make fastdup-venv)"}
    command = [str(FASTDUP_PYTHON), str(REPO / "bench" / "_fastdup_peer.py"), "--images", str(images),
               "--work", str(work)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"status": "failed", "reason": done.stderr[-1500:], "wall_s": time.perf_counter() - started}
    return {**json.loads(lines[-1]), "wall_s": time.perf_counter() - started, "command": shlex.join(command)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "job-scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small-share", type=float, default=0.25)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-fastdup", action="store_true")
    args = parser.parse_args(argv)
    images = args.out / "images"
    listing_file = args.out / "listings.json"
    if not listing_file.exists():
        listing_file.parent.mkdir(parents=True, exist_ok=True)
        listing_file.write_text(json.dumps(build_images(args.photos, images, args.seed)))
    listings = json.loads(listing_file.read_text())
    photos = sorted({x["photo"] for x in listings})
    small = set(random.Random(args.seed).sample(photos, round(args.small_share * len(photos))))
    sizes = {"small": [x for x in listings if x["photo"] in small], "large": listings}
    results: dict[str, Any] = {"meta": run_meta(), "runs": {}}
    cfg = load_config(None, ["fetch.allowed_hosts=127.0.0.1", "spark.master=local[2]", "spark.ui.enabled=false",
                             *args.overrides])  # fmt: skip
    spark = build_session(cfg["spark"])
    try:
        with ImageServer(images, port=0) as server:
            for name, chosen in sizes.items():
                catalog = args.out / f"catalog-{name}.csv"
                write_catalog(chosen, server.base_url, catalog)
                started = time.perf_counter()
                manifest = run_job(spark, cfg, str(catalog), str(args.out / f"job-{name}"))
                seconds = time.perf_counter() - started
                results["runs"][name] = {
                    "listings": len(chosen), "seconds": seconds, "stage_seconds": manifest["stage_seconds"],
                    "candidates": manifest["candidates"], "pairs": manifest["pairs"],
                    "candidates_per_product": 2 * manifest["candidates"] / manifest["products_hashed"],
                    "cosine": manifest["embedding"]["cosine_lsh"], "groups": manifest["groups"],
                    "rows_ok": manifest["rows_ok"],
                }  # fmt: skip
                print(json.dumps(results["runs"][name]), file=sys.stderr, flush=True)
                (args.out / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        spark.stop()
    if not args.skip_fastdup:
        results["fastdup"] = run_fastdup(images, args.out / "fastdup-work")
        print(json.dumps(results["fastdup"]), file=sys.stderr)
    runs = results["runs"]
    results["candidates_per_product_growth"] = (
        runs["large"]["candidates_per_product"] / runs["small"]["candidates_per_product"]
    )
    if results.get("fastdup", {}).get("status") == "ok":
        results["job_over_fastdup"] = runs["large"]["seconds"] / results["fastdup"]["seconds"]
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "meta"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
