"""Crash and resume: ``dedup run`` killed with SIGKILL (its whole process group) at several points,
then run again into the same output; the groups must equal a clean run's, and the rerun must not
download again much of what had finished before the kill.

The commit settings are the defaults throughout (``fetch.commit_*``); the images arrive late
(the image server's ``/fault/delay/``), so each kill lands where it is meant to.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dedup.config import load_config
from dedup.imageserver import ImageServer
from dedup.synth import delayed, make_catalog, write_catalog_csv
from jobs.dedup_job import run_job

pytestmark = pytest.mark.slow  # three killed runs, their reruns and one clean run: a few minutes

ROOT = Path(__file__).resolve().parent.parent
BASE_SETTINGS = ["fetch.allowed_hosts=127.0.0.1"]
SPARK_SETTINGS = ["spark.master=local[2]", "spark.ui.enabled=false", "spark.sql.shuffle.partitions=4"]


def groups_of(spark, out):
    return {r["productId"]: r["group_id"] for r in spark.read.parquet(f"{out}/groups").collect()}


def committed(out: Path) -> list[Path]:
    """The fetch results committed so far (whole files in images/, none under _ folders)."""
    return sorted(p for p in (out / "images").glob("*.parquet"))


def committed_rows(out: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in committed(out))


def start_job(catalog, out, log, settings):
    args = [a for setting in [*settings, *SPARK_SETTINGS] for a in ("--set", setting)]
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "run", "--catalog", str(catalog), "--out", str(out), *args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def wait_for(condition, timeout_s, process):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "the job did not get that far in time"
        time.sleep(0.05)


def killed_run(served, catalog, out, log_path, when, settings=BASE_SETTINGS):
    """Start the job, SIGKILL its process group once ``when()`` holds; return the server's
    answers sent whole and requests seen at the kill."""
    with open(log_path, "wb") as log:
        job = start_job(catalog, out, log, settings)
        try:
            wait_for(when, 300, job)
        finally:
            os.killpg(job.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers
            job.wait()
    assert job.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()  # no finished run to mistake it for
    time.sleep(1)  # the server counts an answer once it is sent whole: let those under way settle
    return dict(served.served), dict(served.hits)


@pytest.fixture(scope="module")
def served_catalog(spark, tmp_path_factory):
    """A catalog of ~200 rows served on loopback; its clean run's groups."""
    folder = tmp_path_factory.mktemp("crash")
    with ImageServer({}) as server:
        catalog = make_catalog(150, duplicate_share=0.3, family_share=0.05, seed=21, base_url=server.base_url)
        server.images.update(catalog.images)
        write_catalog_csv(catalog.rows, folder / "clean.csv")
        clean = run_job(spark, load_config(None, BASE_SETTINGS), str(folder / "clean.csv"), str(folder / "clean"),
                        echo=False)  # fmt: skip
        assert clean["rows_ok"] == len(catalog.rows) and clean["groups"] > 0
        yield {"server": server, "catalog": catalog, "folder": folder, "groups": groups_of(spark, folder / "clean")}


def delayed_catalog(served_catalog, delay_ms):
    path = served_catalog["folder"] / f"delayed-{delay_ms}.csv"
    write_catalog_csv(delayed(served_catalog["catalog"].rows, delay_ms), path)
    return path


def resume(spark, served_catalog, path, out, settings=BASE_SETTINGS):
    manifest = run_job(spark, load_config(None, settings), str(path), str(out), echo=False)
    n_rows = len(served_catalog["catalog"].rows)
    assert manifest["reconciles"] and manifest["rows_ok"] == manifest["rows_read"] == n_rows
    assert groups_of(spark, out) == served_catalog["groups"]
    return manifest


def test_killed_before_the_first_commit_resumes(spark, served_catalog, tmp_path):
    # every download takes 3 s, and the default pool starts them all at once: the kill comes
    # when the requests are out and nothing has finished, so nothing is committed
    server, n_rows = served_catalog["server"], len(served_catalog["catalog"].rows)
    path, out = delayed_catalog(served_catalog, 3000), tmp_path / "out"
    started = sum(server.hits.values())
    killed_run(server, path, out, tmp_path / "killed.log", lambda: sum(server.hits.values()) - started >= 20)
    assert (out / "images").is_dir() and committed(out) == []
    # what a kill in the middle of a commit leaves: a half-written file not yet renamed into place,
    # and (from a Spark write) a half-done _temporary; neither is a committed result
    (out / "images" / "_incoming").mkdir(exist_ok=True)
    (out / "images" / "_incoming" / "fetch-x-p00000-a0-00000.parquet.tmp").write_bytes(b"PAR1 half")
    (out / "images" / "_temporary" / "0").mkdir(parents=True)
    (out / "images" / "_temporary" / "0" / "part-00000.parquet").write_bytes(b"PAR1")
    resumed = resume(spark, served_catalog, path, out)
    assert not (out / "images" / "_incoming").exists() and not (out / "images" / "_temporary").exists()
    assert resumed["images_downloaded"] == n_rows


def test_killed_mid_fetch_downloads_again_at_most_a_quarter(spark, served_catalog, tmp_path):
    # two threads a task, 300 ms an image: the fetch runs long enough for several commits of
    # each task at the default commit settings, and the kill comes after most downloads ended
    server, n_rows = served_catalog["server"], len(served_catalog["catalog"].rows)
    path, out = delayed_catalog(served_catalog, 300), tmp_path / "out"
    settings = [*BASE_SETTINGS, "fetch.threads_per_task=2"]
    before = dict(server.served)

    def finished() -> int:
        return sum(n - before.get(p, 0) for p, n in server.served.items() if p.startswith("/fault/delay/300/"))

    served_at_kill, _ = killed_run(server, path, out, tmp_path / "killed.log", lambda: finished() >= 0.8 * n_rows,
                                   settings)  # fmt: skip
    done_before = {p for p, n in served_at_kill.items() if p.startswith("/fault/delay/300/") and n > before.get(p, 0)}
    assert 0.8 * n_rows <= len(done_before) < n_rows
    kept = committed_rows(out)
    assert 0 < kept < n_rows  # killed mid-fetch, after some commits
    hits_at_resume = dict(server.hits)
    resumed = resume(spark, served_catalog, path, out, settings)
    fetched_again = {p for p in done_before if server.hits[p] > hits_at_resume.get(p, 0)}
    assert len(fetched_again) <= 0.25 * len(done_before), (len(fetched_again), len(done_before))
    assert resumed["images_reused"] == kept and resumed["images_downloaded"] == n_rows - kept


def test_killed_in_a_later_stage_downloads_nothing_again(spark, served_catalog, tmp_path):
    server, n_rows = served_catalog["server"], len(served_catalog["catalog"].rows)
    path, out = delayed_catalog(served_catalog, 20), tmp_path / "out"
    killed_run(server, path, out, tmp_path / "killed.log", lambda: (out / "features").exists())
    assert committed_rows(out) == n_rows  # the fetch stage had ended
    hits_at_resume = dict(server.hits)
    resumed = resume(spark, served_catalog, path, out)
    assert resumed["images_downloaded"] == 0 and resumed["images_reused"] == n_rows
    assert dict(server.hits) == hits_at_resume
