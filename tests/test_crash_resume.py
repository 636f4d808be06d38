"""Crash and resume: ``dedup run`` killed mid-fetch, then run again into the same output."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dedup.config import load_config
from dedup.imageserver import ImageServer
from dedup.synth import delayed, make_catalog, write_catalog_csv
from jobs.dedup_job import run_job

ROOT = Path(__file__).resolve().parent.parent
DELAY_MS = 400  # each image takes this long to arrive, so the fetch stage runs for several seconds
JOB_SETTINGS = [
    "fetch.allowed_hosts=127.0.0.1",
    "fetch.batch_rows=8",  # several commits in one small run
    "fetch.partitions=2",
    "fetch.threads_per_task=2",
]


def groups_of(spark, out):
    return {r["productId"]: r["group_id"] for r in spark.read.parquet(f"{out}/groups").collect()}


def start_job(catalog, out, log):
    spark_settings = ["spark.master=local[2]", "spark.ui.enabled=false", "spark.sql.shuffle.partitions=4"]
    args = [a for setting in [*JOB_SETTINGS, *spark_settings] for a in ("--set", setting)]
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "run", "--catalog", str(catalog), "--out", str(out), *args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def wait_for(condition, timeout_s, process):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "the job did not get that far in time"
        time.sleep(0.1)


@pytest.mark.slow
def test_killed_run_resumes_without_fetching_again(spark, tmp_path):
    with ImageServer({}) as server:
        catalog = make_catalog(24, duplicate_share=0.5, family_share=0.1, seed=21, base_url=server.base_url)
        server.images.update(catalog.images)
        path = tmp_path / "catalog.csv"
        write_catalog_csv(delayed(catalog.rows, DELAY_MS), path)
        out = tmp_path / "out"

        with open(tmp_path / "killed.log", "wb") as log:
            job = start_job(path, out, log)
            try:
                # the first batch of images is committed (Spark writes _SUCCESS on each append)
                wait_for(lambda: (out / "images" / "_SUCCESS").exists(), 300, job)
            finally:
                os.killpg(job.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers
                job.wait()
        hits_at_kill = dict(server.hits)
        assert job.returncode == -signal.SIGKILL
        assert not (out / "manifest.json").exists()  # no finished run to mistake it for

        kept = spark.read.parquet(str(out / "images")).where("fetch_status = 'ok'").select("image_url").collect()
        kept_paths = {r["image_url"].removeprefix(server.base_url) for r in kept}
        assert 0 < len(kept_paths) < len(catalog.rows)  # some batches committed, not all

        cfg = load_config(None, JOB_SETTINGS)
        resumed = run_job(spark, cfg, str(path), str(out), echo=False)
        assert resumed["reconciles"] and resumed["rows_ok"] == resumed["rows_read"] == len(catalog.rows)
        assert resumed["images_reused"] == len(kept_paths)
        assert {p: server.hits[p] for p in kept_paths} == {p: hits_at_kill[p] for p in kept_paths}  # not again

        fresh = run_job(spark, cfg, str(path), str(tmp_path / "fresh"), echo=False)
    assert fresh["rows_ok"] == resumed["rows_ok"]
    assert groups_of(spark, out) == groups_of(spark, tmp_path / "fresh") != {}
