"""Benchmark of ingest: a synthetic dump in the 32-column layout, read line by line or multiLine.

Writes a dump of ``--rows`` rows (descriptions of a few hundred characters, a share of them with
quoted newlines, and some dirty lines), then times, in one Spark session (``local[2]``):

* a bare ``spark.read.csv(...).count()`` of the file (the floor any reader pays),
* ``dedup.ingest`` validate + write to Parquet with ``ingest.multiline=false`` (the default),
* the same with ``ingest.multiline=true``,

and reports rows/s, tasks used and how many rows each mode rejects. Run from the repository root::

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/ingest.py \\
        [--rows 400000] [--newline-share 0.01] [--repeats 3] [--out bench-out/ingest]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

from dedup.config import load_config
from dedup.ingest import read_catalog, split, validate
from dedup.schema import CATALOG_COLUMNS
from dedup.session import build_session
from dedup.settings import typed

WORDS = [
    "cotton",
    "slim",
    "fit",
    "casual",
    "shirt",
    "women",
    "men",
    "printed",
    "solid",
    "blue",
    "red",
    "round",
    "neck",
    "sleeve",
    "pack",
    "of",
]


def write_dump(path: Path, rows: int, newline_share: float, seed: int = 1) -> dict[str, int]:
    """A dump like the real one: long text fields, some quoted newlines, about 0.5% dirty lines."""
    rng = random.Random(seed)
    counts = {"rows": 0, "with_newline": 0, "dirty": 0}
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CATALOG_COLUMNS)
        for index in range(rows):
            if rng.random() < 0.005:
                handle.write(f"DIRTY{index:011d}," + ",".join(["x"] * rng.randrange(33, 84)) + "\n")
                counts["dirty"] += 1
                continue
            description = " ".join(rng.choices(WORDS, k=rng.randrange(20, 80)))
            if rng.random() < newline_share:
                description = description.replace(" ", "\n", 1)
                counts["with_newline"] += 1
            pid = f"PRD{index:013d}"
            url = ";".join(
                [f"http://img.example/{pid.lower()}-tok.jpeg"]
                + [f"http://img.example/{pid.lower()}-{s}-tok.jpeg" for s in ("200x200", "400x400", "800x800")]
            )
            row = {c: "" for c in CATALOG_COLUMNS}
            row.update(
                productId=pid, title=" ".join(rng.choices(WORDS, k=6)), description=description, imageUrlStr=url,
                mrp=str(rng.randrange(199, 4999)), categories="Apparels>Women>Western Wear>Tops",
                productFamily=f"{pid},PRD{index + 1:013d}", sellerName="Seller", keySpecsStr=description[:120],
            )  # fmt: skip
            writer.writerow([row[c] for c in CATALOG_COLUMNS])
            counts["rows"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--newline-share", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out/ingest"))
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    dump = out / "dump.csv"
    counts = write_dump(dump, args.rows, args.newline_share)
    size_mb = dump.stat().st_size / 1e6

    cfg = load_config(
        None, ["spark.master=local[2]", "spark.ui.enabled=false", "spark.sql.files.maxPartitionBytes=32m"]
    )
    spark = build_session(cfg["spark"])
    results: dict = {"command": shlex.join([sys.executable, *sys.argv]), "dump": counts, "dump_mb": size_mb}
    modes = {}
    try:
        spark.read.csv(str(dump), header=True).count()  # warm-up
        for mode in ("bare_scan", "ingest_lines", "ingest_multiline"):
            seconds, detail = [], {}
            for _ in range(args.repeats):
                started = time.perf_counter()
                if mode == "bare_scan":
                    frame = spark.read.csv(str(dump), header=True, multiLine=False)
                    detail = {"rows": frame.count(), "tasks": frame.rdd.getNumPartitions()}
                else:
                    settings = dataclasses.replace(typed(cfg).ingest, multiline=mode == "ingest_multiline")
                    target = out / f"{mode}.parquet"
                    shutil.rmtree(target, ignore_errors=True)
                    raw = read_catalog(spark, str(dump), settings)
                    validate(raw, settings).write.mode("overwrite").parquet(str(target))
                    parts = split(spark.read.parquet(str(target)))
                    detail = {
                        "tasks": raw.rdd.getNumPartitions(),
                        "valid": parts.products.count(),
                        "rejected": parts.rejects.count(),
                    }
                seconds.append(time.perf_counter() - started)
            median = statistics.median(seconds)
            modes[mode] = {"seconds": seconds, "median_seconds": median, "rows_per_s": args.rows / median, **detail}
            print(f"ingest: {mode}: {median:.1f} s median, {args.rows / median:,.0f} rows/s, {detail}", file=sys.stderr)
    finally:
        spark.stop()
    results["modes"] = modes
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("| mode | tasks | median s | rows/s | valid | rejected |\n|---|---|---|---|---|---|")
    for mode, r in modes.items():
        print(f"| {mode} | {r['tasks']} | {r['median_seconds']:.1f} | {r['rows_per_s']:,.0f} | {r.get('valid', '')} "
              f"| {r.get('rejected', '')} |")  # fmt: skip
    print(f"dump: {size_mb:.0f} MB, {counts}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sys.exit(main())
