"""Fetch under faults and resume (issue 13): images/s per core on loopback, side by side.

Real product photos (``--n`` of them, default 1,686, a seeded sample of the shared fashion
catalog) are served on loopback by ``dedup.devkit.imageserver`` from a process of its own. A share of the
URLs (0%, 5%, 20%) is faulty, the fault kinds of the tests taken in turn: hangs, slow drips (a byte
every 50 ms), resets, 500s, 503-then-ok, 429 with Retry-After then ok, redirects and HTML bodies.
Each tool gets URLs of its own (the same photos and faults under another prefix), so a fault that
recovers after k requests recovers for each tool alike. Parts (``--parts``, all by default):

* ``fetch``: per share, one after another: the bare fetcher (``Fetcher.stream`` in this process,
  no Spark, results kept in memory), the job's fetch stage (``fetchstore.fetch_and_commit``, Spark
  ``local[2]``, default settings, committing into ``images/``), and img2dataset (its own venv,
  ``make img2dataset-venv``; 2 processes of 64 threads, the pool size of our two tasks;
  ``--resize_mode no``, no re-encoding, no EXIF, Parquet output: it downloads and stores the bytes
  as we do). Images/s per core is images / wall seconds / cores used (1 for the bare loop, 2 for
  the others).
* ``commits``: the fetch stage at 0% faults with its commits (files committed by the tasks as they
  go) against the same pool written by one Spark write (one commit at the end), interleaved.
* ``job``: the whole job (``run_job``, defaults) on a catalog of the photos, clean, and with 20% of
  the URLs faulty plus the dump's dirty lines (``dedup.devkit.synth.dirty_dump_lines``).
* ``kill``: ``dedup run`` on the clean catalog at its defaults, SIGKILLed (its process group) once
  about ``--kill-at`` images were served whole, then run again into the same ``--out``; how many
  of the images served before the kill the rerun downloads again, and whether the groups equal the
  clean run's (``job`` must run first).

Run from the repository root (``make bench-fetch`` does the same)::

    make venv img2dataset-venv
    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/fetch.py \\
        [--n 1686] [--parts fetch,commits,job,kill] [--out bench-out/fetch]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "data" / "fashion-catalog" / "images"
PEER_PYTHON = REPO / ".venv-img2dataset" / "bin" / "python"
SHARES = (0.0, 0.05, 0.2)
# the fault kinds of the tests, in turn; {u} is the photo's served name
FAULTS = (
    "fault/hang/{u}",
    "fault/slow/{u}",
    "fault/reset/{u}",
    "fault/status/500/{u}",
    "fault/flaky/2/{u}",
    "fault/throttle/2/{u}",
    "fault/redirect/{u}",
    "fault/html/{u}",
)
RECOVERS = {"flaky", "throttle", "redirect"}  # these end ok
SPARK = {"spark.master": "local[2]", "spark.ui.enabled": "false", "spark.driver.memory": "2g",
         "spark.sql.shuffle.partitions": "4"}  # fmt: skip
JOB_OVERRIDES = ["fetch.allowed_hosts=127.0.0.1", *(f"{k}={v}" for k, v in SPARK.items())]


def log(*parts: Any) -> None:
    print("fetch-bench:", *parts, file=sys.stderr, flush=True)


def serve(folder: str) -> None:
    """The child: serve ``folder``'s photos under any ``<prefix>/`` (``img/<prefix>/<file>``)."""
    from dedup.devkit.imageserver import ImageServer

    class Prefixed(ImageServer):
        def image(self, name: str) -> bytes | None:
            return super().image(name.split("/", 1)[-1])

    server = Prefixed(folder).start()
    print(server.base_url, flush=True)
    time.sleep(1e9)


def photos(n: int, seed: int = 13) -> list[str]:
    names = sorted(p.name for p in PHOTOS.glob("*.jpg"))
    if len(names) < n:
        raise SystemExit(f"fetch-bench: {PHOTOS} holds {len(names)} photos, fewer than --n {n}")
    return sorted(random.Random(seed).sample(names, n))


def urls(base_url: str, names: list[str], share: float, prefix: str, seed: int = 5) -> list[str]:
    """One URL per photo under ``prefix``; ``share`` of them faulty, the kinds in turn."""
    faulty = sorted(random.Random(seed).sample(range(len(names)), round(share * len(names))))
    kind = {index: FAULTS[k % len(FAULTS)] for k, index in enumerate(faulty)}
    return [
        f"{base_url}/" + (kind[i].format(u=f"{prefix}/{name}") if i in kind else f"img/{prefix}/{name}")
        for i, name in enumerate(names)
    ]


def stats(base_url: str, prefix: str) -> dict[str, dict[str, int]]:
    """The server's requests seen (``hits``) and answers sent whole (``served``) under ``prefix``."""
    with urllib.request.urlopen(f"{base_url}/stats/{prefix}", timeout=30) as response:
        return json.loads(response.read())


def fetch_settings() -> Any:
    """The job's ``fetch`` table at this bench's overrides (a :class:`dedup.settings.FetchSettings`)."""
    from dedup.config import load_config
    from dedup.settings import typed

    return typed(load_config(None, JOB_OVERRIDES)).fetch


def bare(url_list: list[str]) -> dict[str, Any]:
    """The fetcher's pool in this process, no Spark: every result, kept in memory."""
    from dedup.fetch import Fetcher

    fetcher = Fetcher(fetch_settings())
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    outcomes = {}
    for _, result in fetcher.stream((url, url) for url in url_list):
        outcomes[result.status] = outcomes.get(result.status, 0) + 1
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    fetcher.close()
    cpu_s = after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime
    return {"seconds": wall, "cores": 1, "ok": outcomes.get("ok", 0), "failed": outcomes.get("failed", 0),
            "cpu_s": cpu_s}  # fmt: skip


def products(spark: Any, url_list: list[str]) -> Any:
    rows = [(f"BENCH{i:011d}", url) for i, url in enumerate(url_list)]
    return spark.createDataFrame(rows, "productId string, image_url string")


def stage(spark: Any, url_list: list[str], out: Path, one_commit: bool = False) -> dict[str, Any]:
    """The job's fetch stage into a fresh ``out``: its own commits, or one Spark write."""
    from pyspark.sql import functions as F

    from dedup import fetch, fetchstore

    shutil.rmtree(out, ignore_errors=True)
    frame = products(spark, url_list)
    frame.count()
    settings = fetch_settings()
    started = time.perf_counter()
    if one_commit:
        fetch.fetch_images(frame, settings).write.parquet(str(out / "images"))
        run = None
    else:
        run = fetchstore.fetch_and_commit(frame, settings, str(out / "images"), str(out / "todo"), None)
    wall = time.perf_counter() - started
    table = fetchstore.read_images(spark, str(out / "images"))
    counts = dict(table.groupBy("fetch_status").count().collect())
    assert sum(counts.values()) == len(url_list), counts
    reasons = dict(table.where(F.col("fetch_status") == "failed").groupBy("fetch_reason").count().collect())
    result = {"seconds": wall, "cores": 2, "ok": counts.get("ok", 0), "failed": counts.get("failed", 0),
              "reasons": reasons}  # fmt: skip
    if run is not None:
        result.update(files=run.files, commit_s=run.commit_s, task_s=run.task_s)
    return result


def peer(url_list: list[str], out: Path, timeout_s: float) -> dict[str, Any]:
    """img2dataset on the same URLs: 2 processes x 64 threads, no resizing or re-encoding."""
    if not PEER_PYTHON.exists():
        return {"error": "no .venv-img2dataset (make img2dataset-venv)"}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "urls.txt").write_text("\n".join(url_list) + "\n")
    command = [
        str(PEER_PYTHON.parent / "img2dataset"), "--url_list", str(out / "urls.txt"), "--input_format", "txt",
        "--output_folder", str(out / "images"), "--output_format", "parquet", "--resize_mode", "no",
        "--disable_all_reencoding", "True", "--extract_exif", "False", "--processes_count", "2",
        "--thread_count", "64", "--number_sample_per_shard", str(-(-len(url_list) // 2)),
        "--enable_wandb", "False",
    ]  # fmt: skip
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # its own session: on a time-out the whole group goes, its worker processes too
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)  # fmt: skip
    try:
        _, stderr = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return {"error": f"did not finish in {timeout_s:.0f} s", "seconds": timeout_s, "cores": 2}
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode:
        return {"error": stderr[-2000:], "seconds": wall}
    ok = failed = 0
    shard_s, reasons = [], {}
    for path in (out / "images").glob("*_stats.json"):
        shard = json.loads(path.read_text())
        ok, failed = ok + shard["successes"], failed + shard["failed_to_download"] + shard["failed_to_resize"]
        shard_s.append(shard["duration"])
        for reason, count in shard["status_dict"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    # its shards run side by side; their own durations leave out its start (imports, processes)
    return {"seconds": wall, "cores": 2, "ok": ok, "failed": failed, "shard_seconds": shard_s, "reasons": reasons,
            "cpu_s": after.ru_utime - cpu.ru_utime + after.ru_stime - cpu.ru_stime}  # fmt: skip


def write_catalog(path: Path, url_list: list[str], dirty: bool, base_url: str) -> dict[str, int]:
    """A dump with one row per URL (all four sizes the same URL), and the dirty lines if asked."""
    from dedup.devkit.synth import catalog_lines, dirty_dump_lines, write_dump_bytes

    rows = [
        {"productId": f"BENCH{i:011d}", "title": f"Bench item {i}", "imageUrlStr": ";".join([url] * 4),
         "categories": "Apparels>Women>Western Wear>Tops", "productBrand": "Acme", "sellerName": "SellerA"}
        for i, url in enumerate(url_list)
    ]  # fmt: skip
    lines = [line.encode() for line in catalog_lines(rows)]
    bad = dirty_dump_lines(base_url, rows[0]["productId"]) if dirty else []
    write_dump_bytes(lines + [line for line, _ in bad], path, newline=b"\n")
    faulty = [url for url in url_list if "/fault/" in url]
    recovered = sum(1 for url in faulty if url.split("/fault/")[1].split("/")[0] in RECOVERS)
    return {"rows": len(rows) + sum(1 for _, reason in bad if reason), "faulty": len(faulty),
            "expected_failed": len(faulty) - recovered, "expected_rejected": sum(1 for _, r in bad if r)}  # fmt: skip


def job(spark: Any, catalog: Path, out: Path) -> dict[str, Any]:
    from dedup.config import load_config
    from jobs.dedup_job import run_job

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    manifest = run_job(spark, load_config(None, JOB_OVERRIDES), str(catalog), str(out), echo=False)
    keys = ("rows_read", "rows_ok", "rows_rejected", "rows_failed", "reconciles", "failures_by_reason", "groups",
            "stage_seconds", "images_downloaded")  # fmt: skip
    return {"seconds": time.perf_counter() - started, **{k: manifest[k] for k in keys}}


def groups_of(spark: Any, out: Path) -> dict[str, str]:
    return {r["productId"]: r["group_id"] for r in spark.read.parquet(f"{out}/groups").collect()}


def kill_and_resume(spark: Any, catalog: Path, out: Path, base_url: str, kill_at: int, prefix: str,
                    clean_groups: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """``dedup run`` killed once ``kill_at`` images of ``prefix`` were served whole; then the rerun."""
    from dedup.config import load_config
    from jobs.dedup_job import run_job

    def served() -> dict[str, int]:
        return stats(base_url, prefix)["served"]

    shutil.rmtree(out, ignore_errors=True)
    before = served()
    args = [a for setting in JOB_OVERRIDES for a in ("--set", setting)]
    with open(out.with_suffix(".log"), "wb") as handle:
        command = [sys.executable, "-m", "jobs.cli", "run", "--catalog", str(catalog), "--out", str(out), *args]
        child = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while sum(served().values()) - sum(before.values()) < kill_at:
                if child.poll() is not None:
                    raise SystemExit(f"fetch-bench: the job ended before {kill_at} images were served")
                time.sleep(0.02)
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    # the server's threads count an answer once it is sent whole; let those under way settle (an
    # answer sent into a socket whose client was just killed counts too: it will be fetched again)
    time.sleep(2)
    at_kill = stats(base_url, prefix)
    done_before = {p for p, n in at_kill["served"].items() if n > before.get(p, 0)}
    hits_at_kill = at_kill["hits"]
    committed = sum(1 for _ in (out / "images").glob("*.parquet"))
    started = time.perf_counter()
    manifest = run_job(spark, load_config(None, JOB_OVERRIDES), str(catalog), str(out), echo=False)
    seconds = time.perf_counter() - started
    hits = stats(base_url, prefix)["hits"]
    again = [p for p in done_before if hits.get(p, 0) > hits_at_kill.get(p, 0)]
    return {"served_before_kill": len(done_before), "files_committed_at_kill": committed,
            "downloaded_again": len(again), "share_downloaded_again": len(again) / max(1, len(done_before)),
            "rerun_seconds": seconds, "rerun_images_downloaded": manifest["images_downloaded"],
            "reconciles": manifest["reconciles"],
            "groups_equal_clean_run": groups_of(spark, out) == clean_groups}  # fmt: skip


def per_core(result: dict[str, Any], n: int) -> float | None:
    if "ok" not in result:
        return None
    return n / result["seconds"] / result["cores"]


def tables(results: dict[str, Any], n: int) -> str:
    lines = []
    if "fetch" in results:
        lines += ["| faulty URLs | tool | seconds | images/s per core | ok | failed | CPU s per 1,000 |",
                  "|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for share, tools in results["fetch"].items():
            for tool, r in tools.items():
                rate = per_core(r, n)
                cpu = f"{1000 * r['cpu_s'] / n:.1f}" if "cpu_s" in r else ""
                rate_text = f"{rate:.1f}" if rate else r.get("error", "")[:60]
                lines.append(f"| {float(share):.0%} | {tool} | {r.get('seconds', 0):.1f} | {rate_text} "
                             f"| {r.get('ok', '')} | {r.get('failed', '')} | {cpu} |")  # fmt: skip
    if "commits" in results:
        lines += ["", "| commit scheme | seconds (each run) | median | files |", "|---|---|---:|---:|"]
        for scheme, runs in results["commits"].items():
            secs = sorted(r["seconds"] for r in runs)
            lines.append(f"| {scheme} | {', '.join(f'{s:.1f}' for s in secs)} | {secs[len(secs) // 2]:.1f} "
                         f"| {runs[0].get('files', 1)} |")  # fmt: skip
    if "job" in results:
        lines += ["", "| catalog | seconds | fetch s | rows | ok | rejected | failed | reconciles |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for name, r in results["job"].items():
            if isinstance(r, dict) and "seconds" in r:
                fetch_s = r["stage_seconds"]["fetch"]
                lines.append(f"| {name} | {r['seconds']:.1f} | {fetch_s:.1f} | {r['rows_read']} | {r['rows_ok']} "
                             f"| {r['rows_rejected']} | {r['rows_failed']} | {r['reconciles']} |")  # fmt: skip
        if "ratio" in results["job"]:
            lines.append(f"\nfaulty / clean: {results['job']['ratio']:.2f}x")
    if "kill" in results:
        lines += ["", "kill: " + json.dumps(results["kill"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1686)
    parser.add_argument("--parts", default="fetch,commits,job,kill")
    parser.add_argument("--shares", default=",".join(str(s) for s in SHARES))
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "fetch")
    parser.add_argument("--peer-timeout-s", type=float, default=900)
    parser.add_argument("--commit-repeats", type=int, default=2)
    parser.add_argument("--kill-at", type=int, default=900)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    from dedup.session import build_session

    parts = set(args.parts.split(","))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = photos(args.n)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    results: dict[str, Any] = {"command": shlex.join([sys.executable, *sys.argv]), "commit": commit.stdout.strip(),
                               "date": time.strftime("%Y-%m-%d %H:%M"), "n": args.n,
                               "load_average_at_start": os.getloadavg()}  # fmt: skip
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(PHOTOS)], stdout=subprocess.PIPE, text=True)
    spark = None
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert base_url.startswith("http://127.0.0.1:"), base_url
        spark = build_session({"spark.app.name": "fetch-bench", **SPARK})
        run_index = 0

        def fresh(share: float) -> list[str]:
            nonlocal run_index
            run_index += 1
            return urls(base_url, names, share, f"r{run_index}")

        if "fetch" in parts:
            results["fetch"] = {}
            for share in [float(s) for s in args.shares.split(",")]:
                tools = results["fetch"][str(share)] = {}
                tools["dedup bare fetcher (1 process)"] = bare(fresh(share))
                log(share, "bare", tools["dedup bare fetcher (1 process)"])
                tools["dedup fetch stage (Spark local[2])"] = stage(spark, fresh(share), out / "stage")
                log(share, "stage", tools["dedup fetch stage (Spark local[2])"])
                tools["img2dataset (2 x 64 threads)"] = peer(fresh(share), out / "peer", args.peer_timeout_s)
                log(share, "peer", tools["img2dataset (2 x 64 threads)"])
        if "commits" in parts:
            results["commits"] = {"tasks commit as they go (default)": [], "one Spark write at the end": []}
            for _ in range(args.commit_repeats):
                for scheme, one in (("tasks commit as they go (default)", False), ("one Spark write at the end", True)):
                    results["commits"][scheme].append(stage(spark, fresh(0.0), out / "commits", one_commit=one))
                    log("commits", scheme, results["commits"][scheme][-1]["seconds"])
        if "job" in parts or "kill" in parts:
            clean_urls = fresh(0.0)
            clean_catalog = out / "catalog-clean.csv"
            results.setdefault("catalogs", {})["clean"] = write_catalog(clean_catalog, clean_urls, False, base_url)
        if "job" in parts:
            faulty_catalog = out / "catalog-faulty.csv"
            results["catalogs"]["faulty"] = write_catalog(faulty_catalog, fresh(0.2), True, base_url)
            results["job"] = {"clean": job(spark, clean_catalog, out / "job-clean")}
            log("job clean", results["job"]["clean"])
            results["job"]["20% faulty + dirty lines"] = job(spark, faulty_catalog, out / "job-faulty")
            log("job faulty", results["job"]["20% faulty + dirty lines"])
            results["job"]["ratio"] = (
                results["job"]["20% faulty + dirty lines"]["seconds"] / results["job"]["clean"]["seconds"]
            )
        if "kill" in parts:
            clean_groups = groups_of(spark, out / "job-clean")
            kill_urls = fresh(0.0)
            kill_catalog = out / "catalog-kill.csv"
            write_catalog(kill_catalog, kill_urls, False, base_url)
            prefix = kill_urls[0].split("/img/")[1].split("/")[0]
            results["kill"] = kill_and_resume(spark, kill_catalog, out / "job-killed", base_url, args.kill_at, prefix,
                                              clean_groups)  # fmt: skip
            log("kill", results["kill"])
    finally:
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        if spark is not None:
            spark.stop()
        server.terminate()
        server.wait()
    print(f"commit {results['commit']}, {results['date']}, n={args.n}, load average at start "
          f"{results['load_average_at_start']}")  # fmt: skip
    print(tables(results, args.n))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sys.exit(main())
