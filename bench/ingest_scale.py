"""Benchmark of ingest at the dump's real size against a bare Spark CSV scan of the same file.

Writes once (reused when present) a dump of ``--rows`` lines in the 32-column layout, about
1.25 kB a line (4 M lines: about 5 GB), with dirty lines spread through it: stray commas, text in
productId, repeated productIds (some whose first line is itself bad), missing imageUrlStr and
invalid UTF-8. Then, in one Spark session (``local[2]``), rounds that interleave:

* ``bare_count``: ``spark.read.csv(path, header=True).count()`` (Spark skips parsing the columns),
* ``bare_parquet``: ``spark.read.csv`` with the 32-column schema written to Parquet (every column
  parsed and written: the floor of any ingest that keeps the rows),
* ``ingest``: the job's ingest stage as ``jobs/dedup_job.py`` runs it (``jobs.stages.ingest_stage``):
  read, validate, write the rows, split, write the rejects, count by reason,

checks the rejects against the reasons the generator wrote, and prints medians and ratios. Run
from the repository root::

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/ingest_scale.py \\
        [--rows 4000000] [--repeats 3] [--out bench-out/ingest-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from dedup.config import load_config
from dedup.devkit.synth import dump_line
from dedup.schema import CATALOG_COLUMNS, CATALOG_SCHEMA
from dedup.session import build_session
from jobs.stages import ingest_stage

_TEXT = (
    "cotton slim fit casual shirt women men printed solid blue red round neck sleeve pack of regular comfortable "
    "stylish premium quality fabric wash care machine"
)
WORDS = tuple(_TEXT.split(" "))
DIRTY_EVERY = 400  # one line in 400 is dirty (0.25%)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _pools(rng: random.Random) -> dict[str, list[str]]:
    """Pre-built field values (CSV-quoted): lines vary by productId and by pick from these pools."""

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randrange(lo, hi)))

    return {
        "title": [_quoted(words(4, 9)) for _ in range(500)],
        "description": [_quoted(", ".join(words(6, 14) for _ in range(rng.randrange(4, 8)))) for _ in range(500)],
        "specs": [_quoted(", ".join(f"{w}: {words(1, 4)}" for w in rng.choices(WORDS, k=7))) for _ in range(500)],
        "category": [_quoted(c) for c in ("Apparels>Women>Western Wear>Tops", "Apparels>Men>T-Shirts",
                                          "Footwear>Women>Heels", "Bags>Handbags", "Apparels>Women>Dresses")],
    }  # fmt: skip


def _good(pid: str, index: int, rng: random.Random, pools: dict[str, list[str]]) -> str:
    stem = f"http://img.example.com/image/{index % 997}/{index % 89}/{pid.lower()}-tok"
    urls = ";".join([f"{stem}.jpeg", *(f"{stem[:-4]}-{s}-tok.jpeg" for s in ("200x200", "400x400", "800x800"))])
    price = rng.randrange(199, 4999)
    return dump_line(
        pid, rng.choice(pools["title"]), rng.choice(pools["description"]), urls, str(price + 200), str(price),
        str(price - 50), f"http://shop.example.com/product/{pid.lower()}?pid={pid}", rng.choice(pools["category"]),
        "Acme", _quoted(f"{pid},PRD{index + 1:013d}"), "true", "true", "", "10", "0", "3-5 days", "M", "Blue", "",
        "", "", rng.choice(pools["specs"]), rng.choice(pools["specs"]), rng.choice(pools["specs"]), "SellerA",
        "4.1", "1203", "250", "Half Sleeve", "Round Neck", "Women",
    )  # fmt: skip


def _dirty(kind: str, index: int, seen: list[str], good: str) -> tuple[bytes, list[str]]:
    """One dirty line (or two for a repeat of a bad line) and the reasons ingest owes them."""
    pid = f"PRD{index:013d}"
    if kind == "stray_commas":  # an unquoted title with commas: 34 to 40 fields
        commas = ", and" * (2 + index % 7)
        return dump_line(pid, f"a title{commas}", "desc", "http://img.example.com/a-200x200-t.jpeg").encode(), [
            "malformed_line"
        ]
    if kind == "short":
        return f"{pid},a title,desc".encode(), ["malformed_line"]
    if kind == "text_id":
        return good.replace(pid, '"Great product, buy now"', 1).encode(), ["invalid_product_id"]
    if kind == "repeat":  # an earlier good productId listed again: the first line wins
        return good.replace(pid, seen[index % len(seen)]).encode(), ["duplicate_product_id"]
    if kind == "bad_then_good":  # the first line of this productId is bad, the second one wins
        bad = dump_line(pid, "no image here", "desc", "").encode()
        return bad + b"\n" + good.encode(), ["missing_image_url"]
    if kind == "missing_url":
        return dump_line(pid, "a title", "desc", "").encode(), ["missing_image_url"]
    # invalid UTF-8: a Latin-1 byte in the title
    return dump_line(pid, "caf\xe9 au lait", "desc").encode("latin-1"), ["invalid_utf8"]


DIRTY_KINDS = ("stray_commas", "short", "text_id", "repeat", "bad_then_good", "missing_url", "invalid_utf8")


def write_dump(path: Path, rows: int, seed: int = 1) -> dict:
    """Write the dump (header + ``rows`` lines, ``bad_then_good`` adds one more each); return counts."""
    rng = random.Random(seed)
    pools = _pools(rng)
    expected: Counter[str] = Counter()
    lines = valid = 0
    seen: list[str] = []
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb", buffering=1 << 22) as handle:
        handle.write((",".join(CATALOG_COLUMNS) + "\n").encode())
        chunk: list[bytes] = []
        for index in range(rows):
            pid = f"PRD{index:013d}"
            good = _good(pid, index, rng, pools)
            if index % DIRTY_EVERY == DIRTY_EVERY // 2 and seen:
                kind = DIRTY_KINDS[(index // DIRTY_EVERY) % len(DIRTY_KINDS)]
                line, reasons = _dirty(kind, index, seen, good)
                expected.update(reasons)
                lines += len(reasons) + (kind == "bad_then_good")
                valid += kind == "bad_then_good"
                chunk.append(line)
            else:
                chunk.append(good.encode())
                lines += 1
                valid += 1
                if index % 1000 == 0:
                    seen.append(pid)
            if len(chunk) >= 10_000:
                handle.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            handle.write(b"\n".join(chunk) + b"\n")
    tmp.rename(path)
    return {"lines": lines, "valid": valid, "rejected": dict(sorted(expected.items()))}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(mode: str, spark, dump: str, out: Path, cfg: dict) -> dict:
    target = out / mode
    shutil.rmtree(target, ignore_errors=True)
    if mode == "bare_count":
        return {"rows": spark.read.csv(dump, header=True).count()}
    if mode == "bare_parquet":
        spark.read.csv(dump, header=True, schema=CATALOG_SCHEMA).write.parquet(str(target / "rows"))
        return {}
    ingested = ingest_stage(spark, dump, cfg["ingest"], str(target / "_work"), str(target))
    return {"valid": ingested.n_valid, "rejected": ingested.rejected_by_reason}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-out/ingest-scale"))
    parser.add_argument("--modes", default="bare_count,bare_parquet,ingest")
    parser.add_argument("--generate-only", action="store_true", help="write the dump and stop")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    dump = out / f"dump-{args.rows}.csv"
    counts_file = dump.with_suffix(".json")
    if not (dump.exists() and counts_file.exists()):
        started = time.perf_counter()
        counts_file.write_text(json.dumps(write_dump(dump, args.rows)))
        print(f"wrote {dump} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.generate_only:
        return 0
    expected = json.loads(counts_file.read_text())
    size_gb = dump.stat().st_size / 1e9

    cfg = load_config(None, ["spark.master=local[2]", "spark.ui.enabled=false", "spark.driver.memory=2g"])
    spark = build_session(cfg["spark"])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    modes = args.modes.split(",")
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}  # the JVM's CPU seconds: less swayed by other load
    jvm_pid = int(spark._jvm.java.lang.ProcessHandle.current().pid())
    detail: dict[str, dict] = {}
    try:
        spark.read.csv(str(dump), header=True).limit(10).count()  # warm-up: JVM classes, file listing
        for round_ in range(args.repeats):
            for mode in modes[round_ % len(modes) :] + modes[: round_ % len(modes)]:  # rotate the order
                started, cpu_started = time.perf_counter(), _cpu_seconds(jvm_pid)
                detail[mode] = _run(mode, spark, str(dump), out, cfg)
                seconds[mode].append(time.perf_counter() - started)
                cpu[mode].append(_cpu_seconds(jvm_pid) - cpu_started)
                print(f"round {round_}: {mode}: {seconds[mode][-1]:.1f} s, JVM CPU {cpu[mode][-1]:.1f} s "
                      f"{detail[mode]}", file=sys.stderr)  # fmt: skip
        partitions = spark.read.csv(str(dump), header=True).rdd.getNumPartitions()
    finally:
        spark.stop()
    if "ingest" in detail:
        got = detail["ingest"]
        ok = got["valid"] == expected["valid"] and got["rejected"] == expected["rejected"]
        print(f"rejects match the generator's reasons: {ok} (expected {expected}, got {got})", file=sys.stderr)
        if not ok:
            return 1
    medians = {m: statistics.median(s) for m, s in seconds.items()}
    cpu_medians = {m: statistics.median(s) for m, s in cpu.items()}
    results = {
        "command": shlex.join([sys.executable, *sys.argv]), "commit": commit, "date": time.strftime("%Y-%m-%d"),
        "dump_gb": size_gb, "expected": expected, "tasks": partitions, "seconds": seconds, "medians": medians,
        "cpu_seconds": cpu, "cpu_medians": cpu_medians, "load_average": os.getloadavg(),
    }  # fmt: skip
    (out / f"results-{args.rows}.json").write_text(json.dumps(results, indent=2))
    print(f"dump: {size_gb:.2f} GB, {expected['lines']:,} lines, {partitions} tasks, commit {commit}")
    print("| mode | median s | runs (s) | lines/s | MB/s | x bare_count | x bare_parquet | JVM CPU s (median) "
          "| CPU x bare_parquet |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for mode, median in medians.items():
        ratios = [f"{median / medians[b]:.2f}" if b in medians else "" for b in ("bare_count", "bare_parquet")]
        runs = ", ".join(f"{s:.1f}" for s in seconds[mode])
        cpu_ratio = f"{cpu_medians[mode] / cpu_medians['bare_parquet']:.2f}" if "bare_parquet" in cpu else ""
        print(f"| {mode} | {median:.1f} | {runs} | {expected['lines'] / median:,.0f} | {size_gb * 1e3 / median:,.0f} "
              f"| {' | '.join(ratios)} | {cpu_medians[mode]:.1f} | {cpu_ratio} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sys.exit(main())
