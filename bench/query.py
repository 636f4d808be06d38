"""``dedup query`` on real photos: latency per image for a batch of 100, and the held-back copies.

Steps (one run, one machine):

1. An index of about 20k listings: ``dedup.devkit.benchset.build_bench_set`` over the fashion-catalog
   photos with ``--copied-share`` (0.6: 9,462 photos, 60% of them with 1-3 edited copies) served
   on loopback, then ``dedup run`` (the command, default settings: the embedder, cosine candidates
   and the photo check) into ``WORK/index``. Kept between runs: a second run reuses it.
2. Held-back copies: 20 photos of the index (seeded), each edited once, 4 per kind: crop, pad,
   colour (hue, saturation, brightness, contrast), overlay (text, logo) and rotation. None is in
   the index. Each is queried with ``dedup query`` (the command, one call for the 20); a copy is
   found when the listing of its photo is among its matches. Also with the hash rule
   (``--set embed.backend=none``: what ``dedup query`` did before issue 15) for comparison.
3. Latency: 100 query images (50 listings' own images, 50 fresh edited copies of other index
   photos) in one call: the command's wall time (Spark start and model load included), then in one
   warm session ``dedup.query.run_query`` on the 100 images ``--repeats`` times (median), and on one
   image. The figures go to ``WORK/results.json`` and stdout.

Run from the repository root::

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python bench/query.py [--photos DIR] [--work bench-out/query]
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from dedup.devkit.benchset import build_bench_set, edit, read_truth
from dedup.devkit.imageserver import ImageServer

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "fashion-catalog" / "images"
DEDUP = [sys.executable, "-m", "jobs.cli"]
SPARK = ["--set", "spark.master=local[2]", "--set", "spark.ui.enabled=false"]
HELD_BACK_KINDS = {
    "crop": ["crop"] * 4,
    "pad": ["pad"] * 4,
    "colour": ["hue", "saturation", "brightness", "contrast"],
    "overlay": ["text", "logo", "text", "logo"],
    "rotate": ["rotate"] * 4,
}


def say(message: str) -> None:
    print(f"bench query: {message}", file=sys.stderr, flush=True)


def build_index(photos: Path, work: Path, seed: int, copied_share: float, memory: str) -> dict[str, Any]:
    """The bench set and the job's output over it (``WORK/set``, ``WORK/index``), built unless there."""
    set_dir, index = work / "set", work / "index"
    if (index / "manifest.json").exists():
        return json.loads((index / "manifest.json").read_text())
    (set_dir / "images").mkdir(parents=True, exist_ok=True)
    with ImageServer(set_dir / "images") as server:
        say(f"building the set in {set_dir} (photos {photos}, copied share {copied_share})")
        build_bench_set(photos, set_dir, seed=seed, copied_share=copied_share, base_url=server.base_url)
        command = [*DEDUP, "run", "--catalog", str(set_dir / "catalog.csv"), "--out", str(index), *SPARK,
                   "--set", "fetch.allowed_hosts=127.0.0.1", "--set", f"spark.driver.memory={memory}"]  # fmt: skip
        say(shlex.join(command))
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True)
        say(f"index built in {time.perf_counter() - started:.0f} s")
    return json.loads((index / "manifest.json").read_text())


def photo_of(set_dir: Path, row: dict[str, str]) -> Image.Image:
    with Image.open(set_dir / "images" / row["image"]) as opened:
        return ImageOps.exif_transpose(opened).convert("RGB")


def make_queries(work: Path, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The held-back copies (20) and the latency batch (100): each a file, its kind and the listing it copies."""
    set_dir = work / "set"
    truth = read_truth(set_dir / "truth.csv")
    originals = sorted((t for t in truth if t["transform"] == "original"), key=lambda t: t["productId"])
    rng = random.Random(seed)
    picked = rng.sample(originals, 20 + 50 + 50)
    folder = work / "queries"
    folder.mkdir(exist_ok=True)
    held_back, batch = [], []
    transforms = [(kind, name) for kind, names in HELD_BACK_KINDS.items() for name in names]
    for n, ((kind, name), row) in enumerate(zip(transforms, picked[:20], strict=True)):
        path = folder / f"held-{n:02d}-{name}.jpg"
        path.write_bytes(edit(photo_of(set_dir, row), name, random.Random(seed * 1000 + n)))
        held_back.append({"file": str(path), "kind": kind, "transform": name, "listing": row["productId"]})
    for row in picked[20:70]:  # listings' own images: byte-identical to the index's
        batch.append({"file": str(set_dir / "images" / row["image"]), "kind": "in_index", "listing": row["productId"]})
    names = [name for names in HELD_BACK_KINDS.values() for name in names]
    for n, row in enumerate(picked[70:]):
        path = folder / f"batch-{n:02d}.jpg"
        name = names[n % len(names)]
        path.write_bytes(edit(photo_of(set_dir, row), name, random.Random(seed * 7000 + n)))
        batch.append({"file": str(path), "kind": f"copy:{name}", "listing": row["productId"]})
    return held_back, batch


def query_command(index: Path, files: list[str], extra: list[str] = ()) -> tuple[dict[str, Any], float]:
    """``dedup query`` run as a command: its JSON answer and wall seconds."""
    command = [*DEDUP, "query", "--index", str(index), *SPARK, *extra, *files]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"dedup query failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout), seconds


def found(answer: dict[str, Any], queries: list[dict[str, str]]) -> list[bool]:
    """Per query: is the listing it copies among its matches?"""
    return [
        q["listing"] in {m["productId"] for m in result["matches"]}
        for q, result in zip(queries, answer["results"], strict=True)
    ]


def warm_latency(index: Path, files: list[str], repeats: int) -> dict[str, Any]:
    """``run_query`` in one session: the batch ``repeats`` times and one image ``repeats`` times."""
    from dedup.config import load_config
    from dedup.query import run_query
    from dedup.session import build_session

    cfg = load_config(None, ["spark.master=local[2]", "spark.ui.enabled=false", "spark.driver.memory=2g"])
    spark = build_session(cfg["spark"])
    try:
        run_query(spark, str(index), files[:2])  # loads the model in the workers, warms the reader
        batch, single = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            run_query(spark, str(index), files)
            batch.append(time.perf_counter() - started)
            started = time.perf_counter()
            run_query(spark, str(index), files[:1])
            single.append(time.perf_counter() - started)
    finally:
        spark.stop()
    return {
        "batch_seconds": batch,
        "batch_median_s": statistics.median(batch),
        "per_image_ms": 1000 * statistics.median(batch) / len(files),
        "single_image_seconds": single,
        "single_image_median_s": statistics.median(single),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options = [("--photos", str(DEFAULT_PHOTOS), str), ("--work", str(REPO / "bench-out" / "query"), str),
               ("--seed", 0, int), ("--copied-share", 0.6, float), ("--repeats", 3, int),
               ("--driver-memory", "3g", str)]  # fmt: skip
    for flag, default, kind in options:
        parser.add_argument(flag, default=default, type=kind)
    parser.add_argument("--build-only", action="store_true", help="build the index and stop")
    args = parser.parse_args(argv)
    work = Path(args.work)
    manifest = build_index(Path(args.photos), work, args.seed, args.copied_share, args.driver_memory)
    if args.build_only:
        return 0
    index = work / "index"
    held_back, batch = make_queries(work, args.seed)
    results: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "index": {"listings": manifest["rows_read"], "ok": manifest["rows_ok"], "groups": manifest["groups"],
                  "embedder": manifest["embedding"]["backend"], "build_stage_seconds": manifest["stage_seconds"]},
    }  # fmt: skip

    files = [q["file"] for q in held_back]
    for name, extra in (("job_rule", []), ("hash_rule", ["--set", "embed.backend=none"])):
        answer, seconds = query_command(index, files, extra)
        hits = found(answer, held_back)
        results[f"held_back_{name}"] = {
            "found": sum(hits),
            "of": len(hits),
            "seconds": seconds,
            "missed": [{k: q[k] for k in ("file", "transform", "listing")}
                       for q, hit in zip(held_back, hits, strict=True) if not hit],
            "by_kind": {kind: sum(h for q, h in zip(held_back, hits, strict=True) if q["kind"] == kind)
                        for kind in HELD_BACK_KINDS},
        }  # fmt: skip
        say(f"held-back copies, {name}: {sum(hits)} of {len(hits)} found ({seconds:.1f} s)")

    answer, seconds = query_command(index, [q["file"] for q in batch])
    hits = found(answer, batch)
    results["batch_command"] = {
        "images": len(batch),
        "seconds": seconds,
        "per_image_ms": 1000 * seconds / len(batch),
        "found_in_index": sum(h for q, h in zip(batch, hits, strict=True) if q["kind"] == "in_index"),
        "found_copies": sum(h for q, h in zip(batch, hits, strict=True) if q["kind"] != "in_index"),
    }
    say(f"batch of {len(batch)} through the command: {seconds:.1f} s")
    results["batch_warm_session"] = warm_latency(index, [q["file"] for q in batch], args.repeats)
    say(f"warm session: {json.dumps(results['batch_warm_session'])}")
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
