"""Load run: the whole job on catalogs of growing size in local mode, with the driver's peak memory.

For each ``--sizes`` (default 50,000 and 200,000 rows) a fresh driver process runs
``jobs.dedup_job.run_job`` (Spark ``local[2]``, ``spark.driver.memory=--driver-memory``) on a
catalog in the dump's layout whose images are served on loopback by ``dedup.devkit.imageserver`` from
another process (so the server's memory is not the driver's). The images are small generated
JPEGs (96x96, a smooth random colour field each, about 1 in 20 a brightness-shifted copy of an
earlier one, so there are groups to find); the catalog adds about 1% broken links and 50 dirty
lines (``bench/hash_path.py``'s ``write_catalog``).

Measured per size: wall seconds and rows/s of ``run_job``, its stage seconds, whether the manifest
reconciles, and the driver's memory, sampled every ``--sample-s`` seconds and at the end:

* the driver JVM (in local mode it also runs the tasks): peak RSS (``VmHWM``), peak heap used,
  and peak heap *after GC* (the sum of each pool's usage after its last collection: the live data);
* the Python driver: peak RSS (``VmHWM``).

Run from the repository root::

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/load.py \\
        [--sizes 50000,200000] [--out bench-out/load]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SIDE = 96
DUPLICATE_EVERY = 20
OVERRIDES = [
    "fetch.allowed_hosts=127.0.0.1",
    "fetch.max_attempts=2",
    "fetch.backoff_base_s=0.05",
    "spark.master=local[2]",
    "spark.ui.enabled=false",
]


def _hash_path() -> Any:
    """``bench/hash_path.py`` as a module (its catalog writer and image names are reused)."""
    spec = importlib.util.spec_from_file_location("hash_path", REPO / "bench" / "hash_path.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build_images(folder: Path, n: int, seed: int = 7) -> list[str]:
    """``n`` small JPEGs in ``folder`` (reused if there), saved under the 200x200 name the job fetches;
    returns the catalog names (:func:`dedup.devkit.synth.image_names` gives the served ones)."""
    import simplejpeg

    from dedup.devkit.synth import image_names

    hp = _hash_path()
    done = folder / f".done-{n}"
    rng = np.random.default_rng(seed)
    names, pixels = [], []
    for index in range(n):
        if index % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:  # a brighter copy of an earlier image
            image = np.clip(pixels[int(rng.integers(len(pixels)))].astype(np.int16) + 12, 0, 255).astype(np.uint8)
        else:
            grid = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            image = np.ascontiguousarray(grid.repeat(16, axis=0).repeat(16, axis=1))
            if len(pixels) < 5000:
                pixels.append(image)
        name = hp.image_name(index, image[::16, ::16].tobytes())
        data = simplejpeg.encode_jpeg(image, quality=85) if not done.exists() else b""
        names.append(name)
        if data:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / image_names(name)[1]).write_bytes(data)
    done.touch()
    return names


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Sampler:
    """Samples the driver JVM's heap (through py4j) and both processes' RSS in a thread."""

    def __init__(self, spark: Any, every_s: float) -> None:
        jvm = spark._jvm
        self.jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())
        self.memory = jvm.java.lang.management.ManagementFactory.getMemoryMXBean()
        self.pools = list(jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans())
        self.every_s = every_s
        self.peak = {"heap_used_mb": 0.0, "heap_after_gc_mb": 0.0, "jvm_rss_mb": 0.0, "python_rss_mb": 0.0}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        heap = self.memory.getHeapMemoryUsage().getUsed() / 2**20
        after_gc = sum(p.getCollectionUsage().getUsed() for p in self.pools if p.getCollectionUsage() is not None)
        now = {
            "heap_used_mb": heap,
            "heap_after_gc_mb": after_gc / 2**20,
            "jvm_rss_mb": _status_kb(self.jvm_pid, "VmRSS") / 1024,
            "python_rss_mb": _status_kb(os.getpid(), "VmRSS") / 1024,
        }
        self.peak = {key: max(self.peak[key], value) for key, value in now.items()}
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        self.peak["jvm_rss_hwm_mb"] = _status_kb(self.jvm_pid, "VmHWM") / 1024
        self.peak["python_rss_hwm_mb"] = _status_kb(os.getpid(), "VmHWM") / 1024


def one_size(catalog: Path, job_out: Path, driver_memory: str, sample_s: float) -> dict[str, Any]:
    """In a fresh process: the job on ``catalog``, timed, with the driver's memory sampled."""
    from dedup.config import load_config
    from dedup.session import build_session
    from jobs.dedup_job import run_job

    cfg = load_config(None, [*OVERRIDES, f"spark.driver.memory={driver_memory}"])
    spark = build_session(cfg["spark"])
    shutil.rmtree(job_out, ignore_errors=True)
    try:
        with Sampler(spark, sample_s) as sampler:
            started = time.perf_counter()
            manifest = run_job(spark, cfg, str(catalog), str(job_out), echo=False)
            wall = time.perf_counter() - started
    finally:
        spark.stop()
    keys = ("rows_read", "rows_ok", "rows_rejected", "rows_failed", "reconciles", "products_hashed", "pairs",
            "groups", "stage_seconds", "images_downloaded")  # fmt: skip
    return {"wall_seconds": wall, "rows_per_s": manifest["rows_read"] / wall, "memory": sampler.peak,
            "samples": sampler.samples, **{k: manifest[k] for k in keys}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "load")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--sample-s", type=float, default=0.5)
    parser.add_argument("--child", nargs=2, metavar=("CATALOG", "JOB_OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = one_size(Path(args.child[0]), Path(args.child[1]), args.driver_memory, args.sample_s)
        print("RESULT " + json.dumps(result))
        return 0

    from dedup.devkit.imageserver import ImageServer

    out = args.out.resolve()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    names = build_images(out / "images", max(sizes))
    print(f"load: {len(names)} images ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {"command": shlex.join([sys.executable, *sys.argv]), "commit": commit,
                               "date": time.strftime("%Y-%m-%d"), "sizes": {}}  # fmt: skip
    # the server in its own process: its threads and file reads are not the driver's
    server_code = (
        "import sys, time; from dedup.devkit.imageserver import ImageServer; "
        f"s = ImageServer({str(out / 'images')!r}).start(); print(s.base_url, flush=True); time.sleep(1e9)"
    )
    server = subprocess.Popen([sys.executable, "-c", server_code], stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert base_url.startswith("http://127.0.0.1:"), base_url
        del ImageServer
        for size in sizes:
            catalog = out / f"catalog-{size}.csv"
            expected = _hash_path().write_catalog(catalog, names[:size], base_url)
            child = subprocess.run(
                [sys.executable, __file__, "--driver-memory", args.driver_memory, "--sample-s", str(args.sample_s),
                 "--child", str(catalog), str(out / f"job-{size}")],
                capture_output=True, text=True,
            )  # fmt: skip
            lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
            if child.returncode or not lines:
                print(child.stdout[-3000:], child.stderr[-3000:], file=sys.stderr)
                return 1
            result = json.loads(lines[-1][len("RESULT ") :])
            result["expected"] = expected
            results["sizes"][size] = result
            print(f"load: {size} rows: {json.dumps(result)}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"commit {commit}, driver memory {args.driver_memory}, local[2]")
    print("| catalog rows | rows read | wall s | rows/s | reconciles | driver JVM peak RSS MB | JVM peak heap used MB"
          " | JVM peak heap after GC MB | Python driver peak RSS MB |\n" + "|---" * 9 + "|")  # fmt: skip
    for size, r in results["sizes"].items():
        m = r["memory"]
        print(f"| {size:,} | {r['rows_read']:,} | {r['wall_seconds']:.0f} | {r['rows_per_s']:,.0f} | {r['reconciles']} "
              f"| {m['jvm_rss_hwm_mb']:.0f} | {m['heap_used_mb']:.0f} | {m['heap_after_gc_mb']:.0f} "
              f"| {m['python_rss_hwm_mb']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sys.exit(main())
