"""Benchmark of the embedders: images/s of each backend bare, and inside the job's features stage.

For each backend in ``--backends`` (sscd, sscd_distilled, vgg16, onnx):

* **bare**: ``dedup.embed.load_embedder`` in this process, every core, over the same images:
  decode (``dedup.features.decoded_features``, which also hashes) + resize + ``embed`` in
  batches of ``--batch``; the model is loaded before the clock starts.
* **spark** (skipped with ``--bare-only``): the job's features stage as ``jobs/dedup_job.py``
  runs it (``features.compute_features`` over a Parquet table of the image bytes, written to
  Parquet, in Spark ``local[N]``), repeated in one session so the Python workers and their
  loaded model are warm after the first round, as on a long job; the first round is reported
  apart (it pays worker start and model load).

Rounds alternate bare and spark so both see the same machine load; medians over ``--repeats``.
VGG16 runs with weights generated here (Keras' random initialisation, saved to a file and
staged like a cluster's weights file): throughput does not depend on the weights' values.

Run from the repository root::

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/embed.py \\
        [--images DIR] [--n 600] [--backends sscd_distilled,sscd,vgg16] [--repeats 3] [--bare-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dedup.embed import embedder_input, load_embedder
from dedup.features import decoded_features
from dedup.settings import EmbedSettings, default_table

REPO = Path(__file__).resolve().parent.parent

DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "fashion-catalog" / "images"


def read_images(folder: Path, n: int) -> list[bytes]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:n]
    return [p.read_bytes() for p in paths]


def bare_round(embedder: Any, blobs: list[bytes], batch: int, denoise_from: float) -> float:
    """Seconds to decode, hash, resize (denoise where noisy) and embed every image in this process."""
    started = time.perf_counter()
    for start in range(0, len(blobs), batch):
        decoded = [decoded_features(b, 50_000_000, embedder.input_size)[1] for b in blobs[start : start + batch]]
        inputs = [embedder_input(p, embedder.input_size, denoise_from) for p in decoded if p is not None]
        embedder.embed(np.stack(inputs))
    return time.perf_counter() - started


def spark_round(spark: Any, source: str, target: str, settings: EmbedSettings) -> float:
    from dedup import features

    started = time.perf_counter()
    images = spark.read.parquet(source)
    made = features.compute_features(images, default_table("features", max_image_pixels=50_000_000), settings)
    made.write.mode("overwrite").parquet(target)
    return time.perf_counter() - started


def vgg16_test_weights(folder: str) -> str:
    import tensorflow as tf

    path = os.path.join(folder, "vgg16-random.weights.h5")
    if not os.path.exists(path):
        tf.keras.applications.VGG16(weights=None).save_weights(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--backends", default="sscd_distilled,sscd,vgg16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--device", default="auto", help="embed.device: auto, cpu or gpu")
    parser.add_argument("--bare-only", action="store_true", help="no Spark (e.g. a GPU machine without Java)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "embed")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    blobs = read_images(args.images, args.n)
    work = tempfile.mkdtemp(prefix="embed-bench-", dir=args.out)
    spark, source = None, f"{work}/images"
    if not args.bare_only:
        from dedup.session import build_session

        spark = build_session({
            "spark.master": args.master, "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(args.batch * 4), "spark.sql.shuffle.partitions": "4",
        })  # fmt: skip
        schema = "productId string, image_url string, image_bytes binary"
        rows = [(str(i), f"u{i}", b) for i, b in enumerate(blobs)]
        spark.createDataFrame(rows, schema).repartition(spark.sparkContext.defaultParallelism * 2).write.parquet(source)

    results: dict[str, Any] = {"images": len(blobs), "master": args.master, "machine": platform.processor(),
                               "cpus": os.cpu_count(), "python": platform.python_version(), "backends": {}}  # fmt: skip
    for backend in args.backends.split(","):
        # the whole-image embedding alone (no content region): what this bench has always timed
        settings = default_table("embed", backend=backend, device=args.device, batch_size=args.batch,
                                 dtype="float16", region=False)  # fmt: skip
        if backend == "vgg16":
            settings = dataclasses.replace(settings, weights=vgg16_test_weights(work))
        embedder = load_embedder(settings)
        bare_round(embedder, blobs[: args.batch], args.batch, settings.denoise_from)  # warm-up: first calls allocate
        record: dict[str, Any] = {"device": getattr(embedder, "providers", getattr(embedder, "device", "?")),
                                  "bare_s": [], "spark_s": []}  # fmt: skip
        if spark is not None:
            from dedup.embed import stage_model_files

            staged = stage_model_files(spark, settings)
            record["spark_first_s"] = spark_round(spark, source, f"{work}/features-{backend}", staged)
        for _ in range(args.repeats):
            record["bare_s"].append(bare_round(embedder, blobs, args.batch, settings.denoise_from))
            if spark is not None:
                record["spark_s"].append(spark_round(spark, source, f"{work}/features-{backend}", staged))
        del embedder
        for key in ("bare", "spark"):
            if record[f"{key}_s"]:
                record[f"{key}_img_s"] = len(blobs) / statistics.median(record[f"{key}_s"])
        if record.get("spark_img_s"):
            record["spark_over_bare"] = record["spark_img_s"] / record["bare_img_s"]
        results["backends"][backend] = record
        print(backend, json.dumps(record), file=sys.stderr, flush=True)

    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{len(blobs)} images, {args.repeats} repeats, {args.master}, medians\n")
    print("| backend | device | bare img/s | in-Spark img/s (warm) | in-Spark / bare | first Spark round s |")
    print("|---|---|---:|---:|---:|---:|")
    for backend, r in results["backends"].items():
        spark_rate = f"{r['spark_img_s']:.1f}" if r.get("spark_img_s") else "-"
        ratio = f"{r['spark_over_bare']:.2f}" if r.get("spark_over_bare") else "-"
        first = f"{r['spark_first_s']:.1f}" if r.get("spark_first_s") else "-"
        print(f"| {backend} | {r['device']} | {r['bare_img_s']:.1f} | {spark_rate} | {ratio} | {first} |")
    if spark is not None:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
