"""Benchmark of the hash path: how many images per second the dedup job hashes, next to imagededup.

What it measures, on one image set built from the fashion-catalog photos (originals plus seeded
near-duplicate variants: JPEG re-encode, resize to 160/300 px, brightness 0.9/1.1, mirror):

* the real job (``jobs.dedup_job.run_job``) in-process in Spark ``local[2]``, images served on
  loopback by ``dedup.devkit.imageserver.ImageServer`` from a catalog CSV in the dump layout with about 1%
  broken links (404, 500, HTML soft-404) and 50 dirty lines; each repeat writes to a fresh output
  folder, so every repeat downloads every image again. Per run: wall seconds of ``run_job`` (the
  session is started once, before, and timed apart), stage seconds, images hashed
  (``products_hashed``), end-to-end, fetch-stage and features-stage images/s (all three are
  ``products_hashed`` over the seconds), and the row reconciliation, which must hold;
* ``dedup.features.hash_features`` alone, one process, over the bytes of every image (read first,
  not timed);
* imagededup's PHash and DHash under the peer interpreter (``bench/_imagededup_peer.py``):
  ``encode_images(image_dir=...)`` and ``find_duplicates(encoding_map=..., max_distance_threshold=10)``
  timed apart, with imagededup's defaults (a multiprocessing pool over every core).

Medians over ``--repeats`` are reported in a markdown table and, with every run, the machine and the
command line, in ``<out>/results.json``.

Run it from the repository root (``make bench`` does the same with the defaults)::

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/hash_path.py \\
        [--images DIR] [--n 20000] [--repeats 3] [--out bench-out/hash_path] [--peer-python /tmp/venvbench/bin/python]

The image folder (default ``<out>/images``) holds exactly the N JPEGs the peers read, flat; it is
reused when it already holds those N images, else rebuilt. With N below the number of originals,
half the images are originals and half variants, so a small run still exercises every edit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image, ImageEnhance, ImageOps

from dedup.devkit.synth import jpeg_bytes

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = str(REPO.parent / "shared" / "data" / "fashion-catalog" / "images")
DEFAULT_OUT = REPO / "bench-out" / "hash_path"
DEFAULT_PEER_PYTHON = str(REPO / ".venv-bench" / "bin" / "python")  # make bench-venv
PEER_SCRIPT = Path(__file__).resolve().parent / "_imagededup_peer.py"
PEER_METHODS = ("phash", "dhash")
PEER_TIMEOUT_S = 3 * 3600
MAX_PIXELS = 50_000_000
FAULT_SHARE = 0.01
FAULT_KINDS = ("status/404", "status/500", "html")
JOB_OVERRIDES = [
    "fetch.allowed_hosts=127.0.0.1",
    "fetch.max_attempts=2",
    "fetch.backoff_base_s=0.05",
    "spark.master=local[2]",
    "spark.ui.enabled=false",
]
NAME_RE = re.compile(r"^p(\d{6,})-x-[0-9a-f]{10}\.jpg$")


def _resize(image: Image.Image, side: int) -> Image.Image:
    return image.resize((side, side), Image.Resampling.LANCZOS)


VARIANTS: dict[str, Callable[[Image.Image], bytes]] = {
    "reencode_q60": lambda im: jpeg_bytes(im, 60),
    "reencode_q80": lambda im: jpeg_bytes(im, 80),
    "resize_160": lambda im: jpeg_bytes(_resize(im, 160)),
    "resize_300": lambda im: jpeg_bytes(_resize(im, 300)),
    "brightness_0.9": lambda im: jpeg_bytes(ImageEnhance.Brightness(im).enhance(0.9)),
    "brightness_1.1": lambda im: jpeg_bytes(ImageEnhance.Brightness(im).enhance(1.1)),
    "mirror": lambda im: jpeg_bytes(ImageOps.mirror(im)),
}


def image_name(index: int, data: bytes) -> str:
    """``p<index>-x-<token>.jpg``: splits into stem and token the way ``dedup.devkit.synth.image_names`` wants."""
    return f"p{index:06d}-x-{hashlib.sha1(data).hexdigest()[:10]}.jpg"


def sidecar_path(folder: Path) -> Path:
    """Build notes live next to the folder, so the folder holds nothing but the images."""
    return folder.with_name(folder.name + ".build.json")


def folder_holds(folder: Path, n: int) -> bool:
    """True where ``folder`` holds exactly the images ``p000000`` .. ``p<n-1>`` and nothing else."""
    if not folder.is_dir():
        return False
    indices = []
    for entry in folder.iterdir():
        match = NAME_RE.match(entry.name)
        if not match or not entry.is_file():
            return False
        indices.append(int(match.group(1)))
    return sorted(indices) == list(range(n))


def build_images(source: Path, folder: Path, n: int, seed: int) -> dict[str, Any]:
    """Fill ``folder`` with ``n`` JPEGs (or reuse it); return what it holds."""
    sidecar = sidecar_path(folder)
    notes = json.loads(sidecar.read_text()) if sidecar.is_file() else None
    if folder_holds(folder, n) and (notes is None or (notes.get("n") == n and notes.get("seed") == seed)):
        return {**(notes or {"n": n, "note": "folder found without build notes"}), "reused": True, "build_seconds": 0}

    started = time.perf_counter()
    if folder.exists():
        foreign = [entry.name for entry in folder.iterdir() if not NAME_RE.match(entry.name) or not entry.is_file()]
        if foreign:
            raise SystemExit(f"hash_path: {folder} holds other files ({foreign[:3]}...); choose another --images")
        for entry in folder.iterdir():
            entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    originals = sorted(source.glob("*.jpg"))
    if not originals:
        raise SystemExit(f"hash_path: no *.jpg under {source}")
    n_originals = len(originals) if n >= len(originals) else (n + 1) // 2
    rng = random.Random(seed)
    items: list[list[str]] = []
    for index in range(n):
        if index < n_originals:
            src, variant = originals[index], "original"
            data = src.read_bytes()
        else:
            src, variant = originals[rng.randrange(n_originals)], rng.choice(sorted(VARIANTS))
            with Image.open(src) as image:
                data = VARIANTS[variant](image.convert("RGB"))
        name = image_name(index, data)
        (folder / name).write_bytes(data)
        items.append([name, src.name, variant])
    notes = {
        "n": n,
        "seed": seed,
        "source": str(source),
        "source_images": len(originals),
        "originals": n_originals,
        "variants": dict(sorted(Counter(item[2] for item in items if item[2] != "original").items())),
        "items": items,
    }
    sidecar.write_text(json.dumps(notes))
    return {**notes, "reused": False, "build_seconds": time.perf_counter() - started}


def load_images(folder: Path) -> dict[str, bytes]:
    """File name -> bytes, in name order."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def write_catalog(path: Path, names: list[str], base_url: str) -> dict[str, int]:
    """One row per image, ~1% rows with broken links, 50 dirty lines; return the expected counts."""
    from dedup.devkit.synth import dump_line, image_names, image_url_str, write_catalog_csv

    brands, sellers = ["Acme", "Zed", "Mio"], ["SellerA", "SellerB", "SellerC"]
    rows = [
        {
            "productId": f"BENCH{index:011d}",
            "title": f"Bench item {index}",
            "imageUrlStr": image_url_str(base_url, name),
            "categories": "Apparels>Women>Western Wear>Tops",
            "productBrand": brands[index % 3],
            "sellingPrice": str(199 + index % 4800),
            "sellerName": sellers[index % 3],
        }
        for index, name in enumerate(names)
    ]
    n_faults = max(len(FAULT_KINDS), round(len(names) * FAULT_SHARE))
    for index in range(n_faults):
        kind = FAULT_KINDS[index % len(FAULT_KINDS)]
        fake = f"f{index:06d}-x-{index:010x}.jpg"
        rows.append(
            {
                "productId": f"BENCHFAULT{index:06d}",
                "title": f"Broken link {kind}",
                "imageUrlStr": ";".join(f"{base_url}/fault/{kind}/{served}" for served in image_names(fake)),
                "categories": "Apparels>Men>T-Shirts",
            }
        )
    dirty: list[str] = []
    for index in range(13):  # stray commas: 44 fields
        dirty.append(f"BENCHBADLINE{index:04d},title with, stray, commas," + ",".join(["x"] * 40))
    for index in range(13):  # text where the productId belongs
        url = rows[index]["imageUrlStr"]
        dirty.append(dump_line(f'"great deal {index}, buy now"', "a title", "desc", url))
    for index in range(12):  # a productId listed twice
        row = rows[(index * 7919) % len(names)]
        dirty.append(dump_line(row["productId"], "repeated listing", "desc", row["imageUrlStr"]))
    for index in range(12):  # no image
        dirty.append(dump_line(f"BENCHNOIMAGE{index:04d}", "no image", "desc", ""))
    write_catalog_csv(rows, path, dirty)
    return {
        "rows_read": len(rows) + len(dirty),
        "rows_ok": len(names),
        "rows_failed": n_faults,
        "rows_rejected": len(dirty),
        "products_hashed": len(names),
        "fault_rows": n_faults,
        "dirty_lines": len(dirty),
    }


def run_job_repeats(
    images: dict[str, bytes], out: Path, repeats: int, folder: Path, peer_python: str
) -> dict[str, Any]:
    """The real job, ``repeats`` times, each into a fresh output folder; then the features stage
    alone, interleaved with the peers' hashing (:func:`features_steady_state`)."""
    from dedup.config import load_config
    from dedup.devkit.imageserver import ImageServer
    from dedup.devkit.synth import image_names
    from dedup.session import build_session
    from jobs.dedup_job import run_job

    served = {alias: data for name, data in images.items() for alias in image_names(name)}
    catalog = out / "catalog.csv"
    job_out = out / "job"
    runs: list[dict[str, Any]] = []
    anomalies: list[str] = []
    manifest: dict[str, Any] = {}
    with ImageServer(served) as server:
        expected = write_catalog(catalog, list(images), server.base_url)
        cfg = load_config(None, JOB_OVERRIDES)
        started = time.perf_counter()
        spark = build_session(cfg["spark"])
        session_seconds = time.perf_counter() - started
        try:
            for repeat in range(repeats):
                shutil.rmtree(job_out, ignore_errors=True)
                print(f"hash_path: job run {repeat + 1}/{repeats} -> {job_out}", file=sys.stderr)
                started = time.perf_counter()
                manifest = run_job(spark, cfg, str(catalog), str(job_out))
                wall = time.perf_counter() - started
                runs.append(job_record(manifest, wall))
                anomalies += [f"job run {repeat + 1}: {line}" for line in compare(manifest, expected)]
            steady = features_steady_state(spark, cfg, job_out, repeats, folder, peer_python)
        finally:
            spark.stop()
        cli = run_cli_once(catalog, out / "cli")
    return {
        "cli_run": cli,
        "catalog": str(catalog),
        "expected": expected,
        "overrides": JOB_OVERRIDES,
        "session_start_seconds": session_seconds,
        "runs": runs,
        "median": medians(runs),
        "features_steady_state": steady,
        "last_manifest": manifest,
        "anomalies": anomalies,
    }


def features_steady_state(
    spark: Any, cfg: dict[str, Any], job_out: Path, repeats: int, folder: Path, peer_python: str
) -> dict[str, Any]:
    """The features stage's own code (read images/, hash, write, count) re-run in the job's session,
    each round right after one ``encode_images`` of each imagededup peer on the same images.

    Each job run pays a one-off start of Spark's Arrow UDF path (Python workers, JVM classes:
    about 3 s here) inside its features stage; a re-run in the same session shows the per-image
    rate that a large catalog sees once that cost is spread over millions of images. Interleaving
    the rounds with the peers puts both under the same machine load, which on a shared machine
    drifts over minutes.
    """
    from pyspark.sql import functions as F

    from dedup import features, outputs
    from dedup.settings import default_table, typed

    seconds: list[float] = []
    peer_seconds: dict[str, list[float]] = {method: [] for method in PEER_METHODS}
    for _ in range(repeats):
        for method in PEER_METHODS:
            encoded = peer_encode_once(peer_python, method, folder)
            if encoded is not None:
                peer_seconds[method].append(encoded)
        started = time.perf_counter()
        ok_images = spark.read.parquet(str(job_out / "images")).where(F.col("fetch_status") == "ok")
        target = str(job_out / "_features_steady")
        hashes = features.compute_features(ok_images, typed(cfg).features, default_table("embed", backend="none"))
        hashes.write.mode("overwrite").parquet(target)
        hashed = outputs.counts_by(spark.read.parquet(target), "feature_status").get("ok", 0)
        seconds.append(time.perf_counter() - started)
    return {
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
        "images": hashed,
        "peer_encode_seconds": peer_seconds,
        "peer_median_encode_seconds": {m: statistics.median(v) for m, v in peer_seconds.items() if v},
    }


def peer_encode_once(peer_python: str, method: str, folder: Path) -> float | None:
    """Seconds of one imagededup ``encode_images`` over ``folder`` (None where the peer cannot run)."""
    if not os.path.isfile(peer_python):
        return None
    command = [peer_python, str(PEER_SCRIPT), "--method", method, "--images", str(folder), "--repeats", "1",
               "--find-repeats", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=PEER_TIMEOUT_S, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])["runs"][0]["encode_seconds"] if done.returncode == 0 and lines else None


def run_cli_once(catalog: Path, job_out: Path) -> dict[str, Any]:
    """The same catalog once through the ``dedup run`` command, as a user runs it; its manifest's counts."""
    shutil.rmtree(job_out, ignore_errors=True)
    dedup = Path(sys.executable).parent / "dedup"
    command = [str(dedup), "run", "--catalog", str(catalog), "--out", str(job_out)]
    command += [arg for override in JOB_OVERRIDES for arg in ("--set", override)]
    print(f"hash_path: {shlex.join(command)}", file=sys.stderr)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"dedup run failed ({done.returncode}): {done.stderr[-3000:]}")
    manifest = json.loads((job_out / "manifest.json").read_text())
    keys = ("rows_read", "rows_ok", "rows_rejected", "rows_failed", "rejected_by_reason", "failures_by_reason",
            "reconciles", "pairs", "groups")  # fmt: skip
    status_rows = pq.read_table(job_out / "status").num_rows
    return {"command": shlex.join(command), "wall_seconds": wall, "status_rows": status_rows,
            **{key: manifest[key] for key in keys}}  # fmt: skip


def job_record(manifest: dict[str, Any], wall: float) -> dict[str, Any]:
    """One run's numbers; raises where the manifest's row counts do not add up."""
    rows = {key: manifest[key] for key in ("rows_read", "rows_ok", "rows_rejected", "rows_failed")}
    if manifest.get("reconciles") is not True or rows["rows_read"] != (
        rows["rows_ok"] + rows["rows_rejected"] + rows["rows_failed"]
    ):
        raise RuntimeError(f"hash_path: job rows do not reconcile: {rows}, reconciles={manifest.get('reconciles')}")
    stages = manifest["stage_seconds"]
    hashed = manifest["products_hashed"]
    return {
        "wall_seconds": wall,
        "stage_seconds": stages,
        "products_hashed": hashed,
        "images_downloaded": manifest["images_downloaded"],
        **rows,
        "reconciles": manifest["reconciles"],
        "pairs": manifest["pairs"],
        "groups": manifest["groups"],
        "e2e_images_per_s": hashed / wall,
        "fetch_images_per_s": hashed / stages["fetch"],
        "features_images_per_s": hashed / stages["features"],
        "match_seconds": stages["candidates"] + stages["verify"] + stages["groups"],
    }


def compare(manifest: dict[str, Any], expected: dict[str, int]) -> list[str]:
    """Where the job's counts differ from what the catalog was built to give (reported, not fatal)."""
    return [
        f"{key} = {manifest[key]}, expected {value}"
        for key, value in expected.items()
        if key in manifest and manifest[key] != value
    ]


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every number in the runs, stage seconds included."""
    result: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            result[key] = {name: statistics.median(run[key][name] for run in runs) for name in value}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            result[key] = statistics.median(run[key] for run in runs)
    return result


def bare_hash(images: dict[str, bytes], repeats: int) -> dict[str, Any]:
    """``hash_features`` over every image's bytes in this process, ``repeats`` times."""
    from dedup.features import hash_features

    blobs = list(images.values())
    seconds: list[float] = []
    failed = 0
    for _ in range(repeats):
        started = time.perf_counter()
        records = [hash_features(data, MAX_PIXELS) for data in blobs]
        seconds.append(time.perf_counter() - started)
        failed = sum(1 for record in records if record.get("decode_error"))
    median = statistics.median(seconds)
    return {
        "images": len(blobs),
        "seconds": seconds,
        "median_seconds": median,
        "decode_failures": failed,
        "images_per_s": len(blobs) / median,
    }


def run_peer(
    peer_python: str, method: str, folder: Path, repeats: int, find_repeats: int | None = None
) -> dict[str, Any]:
    """One imagededup method in a subprocess; ``status`` skipped or failed with a reason where it did not run."""
    if not (os.path.isfile(peer_python) and os.access(peer_python, os.X_OK)):
        return {"method": method, "status": "skipped", "reason": f"peer python not found: {peer_python}"}
    command = [peer_python, str(PEER_SCRIPT), "--method", method, "--images", str(folder), "--repeats", str(repeats)]
    if find_repeats is not None:
        command += ["--find-repeats", str(find_repeats)]
    print(f"hash_path: peer {method}: {shlex.join(command)}", file=sys.stderr)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PEER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"method": method, "status": "failed", "reason": f"timed out after {PEER_TIMEOUT_S} s"}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return {
            "method": method,
            "status": "failed",
            "command": command,
            "reason": f"exit {done.returncode}: {done.stderr.strip()[-2000:]}",
        }
    result = json.loads(lines[-1])
    encode = statistics.median(run["encode_seconds"] for run in result["runs"])
    finds = [run["find_seconds"] for run in result["runs"] if "find_seconds" in run]
    find = statistics.median(finds) if finds else None  # --peer-find-repeats 0: hashing only
    return {
        **result,
        "status": "ok",
        "command": command,
        "median_encode_seconds": encode,
        "median_find_seconds": find,
        "stderr_tail": done.stderr.strip()[-2000:],
    }


def machine_info() -> dict[str, Any]:
    def read(path: str, key: str) -> str | None:
        try:
            with open(path) as handle:
                return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(key)), None)
        except OSError:
            return None

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    import pyspark

    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": read("/proc/cpuinfo", "model name"),
        "mem_total": read("/proc/meminfo", "MemTotal"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "pyspark": pyspark.__version__,
        "git_commit": git("rev-parse", "HEAD"),
        "git_uncommitted": (git("status", "--porcelain", "--", "dedup", "jobs", "bench") or "").splitlines(),
    }


def table(n: int, job: dict[str, Any] | None, bare: dict[str, Any] | None, peers: dict[str, Any]) -> tuple[str, list]:
    """The markdown table and its rows."""
    rows: list[dict[str, Any]] = []

    def add(method: str, procs: Any, seconds: float | None, images: int = n) -> None:
        rows.append(
            {
                "method": method,
                "processes": procs,
                "images": images,
                "median_seconds": seconds,
                "images_per_s": images / seconds if seconds else None,
            }
        )

    if job:
        median = job["median"]
        hashed = int(median["products_hashed"])
        add("dedup job, end to end (run_job)", "local[2]", median["wall_seconds"], hashed)
        add("dedup job, fetch stage", "local[2]", median["stage_seconds"]["fetch"], hashed)
        add("dedup job, features stage", "local[2]", median["stage_seconds"]["features"], hashed)
        steady = job["features_steady_state"]
        add("dedup features stage, steady state (re-run in session)", "local[2]", steady["median_seconds"],
            steady["images"])  # fmt: skip
        for method, seconds in steady["peer_median_encode_seconds"].items():
            label = {"phash": "PHash", "dhash": "DHash"}[method]
            add(f"imagededup {label} encode_images, interleaved with the row above", 2, seconds)
        add("dedup job, candidates+verify+groups", "local[2]", median["match_seconds"], hashed)
    if bare:
        add("dedup hash_features, bare loop", 1, bare["median_seconds"], bare["images"])
    for method, peer in peers.items():
        label = {"phash": "PHash", "dhash": "DHash"}[method]
        if peer["status"] != "ok":
            add(f"imagededup {label} ({peer['status']}: {peer['reason'][:60]})", "-", None)
            continue
        procs = peer.get("cpu_count")
        images = peer["runs"][0]["images_encoded"]
        add(f"imagededup {label} encode_images", procs, peer["median_encode_seconds"], images)
        if peer["median_find_seconds"] is not None:
            add(f"imagededup {label} find_duplicates (d<=10)", procs, peer["median_find_seconds"], images)
    references: dict[str, float | None] = {}
    for label in ("PHash", "DHash"):
        rates = [row["images_per_s"] for row in rows if row["method"] == f"imagededup {label} encode_images"]
        references[label] = rates[0] if rates else None

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = [
        "| method | processes | images | median s | images/s | x PHash hashing | x DHash hashing |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratios = {}
        for method, reference in references.items():
            ratio = row["images_per_s"] / reference if reference and row["images_per_s"] else None
            row[f"ratio_vs_{method.lower()}_hashing"] = ratio
            ratios[method] = fmt(ratio, ".2f")
        lines.append(
            f"| {row['method']} | {row['processes']} | {row['images']} | {fmt(row['median_seconds'], '.2f')} "
            f"| {fmt(row['images_per_s'], ',.0f')} | {ratios['PHash']} | {ratios['DHash']} |"
        )
    if job and job["features_steady_state"]["peer_median_encode_seconds"]:
        steady = job["features_steady_state"]
        rate = steady["images"] / steady["median_seconds"]
        for method, seconds in steady["peer_median_encode_seconds"].items():
            lines.append(f"\nSteady-state features stage vs interleaved imagededup {method} encode_images: "
                         f"{rate * seconds / n:.2f}x")  # fmt: skip
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="benchmark image folder (default: <out>/images)")
    parser.add_argument("--n", type=int, default=20000, help="images in the set (default: 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (default: 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: bench-out/hash_path)")
    parser.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON, help="interpreter with imagededup installed")
    parser.add_argument("--source", type=Path, default=Path(DEFAULT_SOURCE), help="folder of original JPEGs")
    parser.add_argument("--seed", type=int, default=7, help="seed of the variants (default: 7)")
    parser.add_argument("--peer-find-repeats", type=int, help="repeats of the peers' O(N^2) find_duplicates")
    args = parser.parse_args(argv)
    if args.n < 2 or args.repeats < 1:
        parser.error("--n must be at least 2 and --repeats at least 1")
    out: Path = args.out.resolve()
    folder: Path = (args.images or out / "images").resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    results: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv),
        "cwd": os.getcwd(),
        "params": {
            "n": args.n,
            "repeats": args.repeats,
            "images": str(folder),
            "out": str(out),
            "peer_python": args.peer_python,
            "source": str(args.source),
            "seed": args.seed,
        },
        "machine": machine_info(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results_path = out / "results.json"
    job = bare = None
    peers: dict[str, Any] = {}
    try:
        print(f"hash_path: image set of {args.n} in {folder}", file=sys.stderr)
        build = build_images(args.source, folder, args.n, args.seed)
        results["image_set"] = {key: value for key, value in build.items() if key != "items"}
        images = load_images(folder)
        results["image_set"]["bytes"] = sum(len(data) for data in images.values())
        print(f"hash_path: bare hash_features x{args.repeats}", file=sys.stderr)
        bare = results["bare_hash"] = bare_hash(images, args.repeats)
        job = results["dedup_job"] = run_job_repeats(images, out, args.repeats, folder, args.peer_python)
        for method in PEER_METHODS:
            peers[method] = run_peer(args.peer_python, method, folder, args.repeats, args.peer_find_repeats)
        results["peers"] = peers
        results["machine"]["peer_python_version"] = next(
            (peer["python"] for peer in peers.values() if peer.get("python")), None
        )
    except BaseException as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        markdown, rows = table(args.n, job, bare, peers)
        results["table"] = rows
        results["table_markdown"] = markdown
        results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results_path.write_text(json.dumps(results, indent=2, default=str))
        print(markdown)
        for line in (job or {}).get("anomalies", []):
            print(f"hash_path: note: {line}", file=sys.stderr)
        print(f"hash_path: results in {results_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
