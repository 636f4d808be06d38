"""A real standalone cluster on loopback: a master and two workers from the installed pyspark, the
job submitted through ``spark-submit.sh --ship-env``, one worker killed mid-fetch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest

from dedup.config import load_config
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import delayed, make_catalog, write_catalog_csv
from jobs.dedup_job import run_job

ROOT = Path(__file__).resolve().parent.parent
SPARK_HOME = Path(pyspark.__file__).parent
DELAY_MS = 500  # each image takes this long, so the fetch stage is still running when a worker dies
JOB_SETTINGS = ["fetch.allowed_hosts=127.0.0.1", "fetch.partitions=4", "fetch.threads_per_task=2"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process is None or process.poll() is None, f"the job ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started in its own session, and everything it started (JVMs, Python workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def standalone_cluster(folder: Path, n_workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen], list[Path]]]:
    """A Spark standalone master and ``n_workers`` workers (1 core, 1 GB each) on 127.0.0.1:
    (master URL, worker processes, worker work dirs). Every process is killed on the way out."""
    (folder / "conf").mkdir()
    env = dict(os.environ, SPARK_HOME=str(SPARK_HOME), SPARK_CONF_DIR=str(folder / "conf"),
               SPARK_LOCAL_IP="127.0.0.1", SPARK_DAEMON_MEMORY="512m",
               SPARK_DAEMON_JAVA_OPTS="-Dspark.worker.timeout=20")  # fmt: skip
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen, Path]:
        log = folder / f"{name}.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen([spark_class, *args], env=env, cwd=folder, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        processes.append(process)
        return process, log

    try:
        port = free_port()
        master_url = f"spark://127.0.0.1:{port}"
        _, master_log = start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                              "--port", str(port), "--webui-port", str(free_port()))  # fmt: skip
        wait_for(lambda: "I have been elected leader" in master_log.read_text(errors="replace"), 90, "the master")
        work_dirs = [folder / f"work-{index}" for index in range(n_workers)]
        started = [start(f"worker-{index}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                         "--cores", "1", "--memory", "1g", "--work-dir", str(work_dir),
                         "--webui-port", str(free_port()), master_url)
                   for index, work_dir in enumerate(work_dirs)]  # fmt: skip
        registered = "Successfully registered with master"
        wait_for(lambda: all(registered in log.read_text(errors="replace") for _, log in started), 90, "the workers")
        yield master_url, [worker for worker, _ in started], work_dirs
    finally:
        for process in processes:
            kill_group(process)


def executor_pythons(work_dirs: list[Path]) -> set[str]:
    """The interpreters (argv[0]) of the PySpark daemons running in the workers' executor folders."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            cwd, argv = os.readlink(proc / "cwd"), (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if b"pyspark.daemon" in argv and any(cwd.startswith(str(d)) for d in work_dirs):
            found.add(argv[0].decode())
    return found


def executor_dirs(work_dir: Path) -> list[Path]:
    """The executor folders a worker made (``app-*/<executor id>``)."""
    return [path for path in work_dir.glob("app-*/*") if path.is_dir()]


@pytest.mark.slow
def test_job_survives_a_worker_killed_mid_fetch(spark, group_sets, tmp_path):
    with ImageServer({}) as server:
        catalog = make_catalog(24, duplicate_share=0.5, family_share=0.0, seed=31, base_url=server.base_url)
        server.images.update(catalog.images)
        path = tmp_path / "catalog.csv"
        write_catalog_csv(delayed(catalog.rows, DELAY_MS), path)
        out = tmp_path / "cluster-out"

        with standalone_cluster(tmp_path) as (master_url, workers, work_dirs):
            sets = [a for setting in [*JOB_SETTINGS, "spark.sql.shuffle.partitions=4"] for a in ("--set", setting)]
            command = [str(ROOT / "spark-submit.sh"), "--ship-env", "--master", master_url,
                       "--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=512m",
                       "--conf", "spark.executor.cores=1", "--conf", "spark.task.maxFailures=8",
                       "--catalog", str(path), "--out", str(out), *sets]  # fmt: skip
            env = dict(
                os.environ,
                SPARK_LOCAL_IP="127.0.0.1",
                DEDUP_SPARK_LOG_LEVEL="WARN",
                DEDUP_ENV_EXCLUDE="tensorflow* keras*",
            )  # no vgg16 here: 1.3 GB less to pack and unpack
            log_path = tmp_path / "job.log"
            with open(log_path, "wb") as log:
                job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # fmt: skip
            try:
                # both workers run an executor and the downloads have begun: kill worker 0 with them
                pythons: set[str] = set()

                def fetching() -> bool:
                    pythons.update(executor_pythons(work_dirs))
                    return bool(pythons) and sum(server.hits.values()) >= 4 and all(map(executor_dirs, work_dirs))

                wait_for(fetching, 300, "the fetch stage on both workers", job)
                hits_at_kill = sum(server.hits.values())
                # the executors run Python from the shipped archive, not the .venv the driver uses
                assert pythons == {"./environment/bin/python"}
                kill_group(workers[0])
                assert hits_at_kill < len(catalog.rows)  # killed mid-fetch
                job.wait(timeout=420)
            finally:
                kill_group(job)
            job_log = log_path.read_text(errors="replace")
            assert job.returncode == 0, job_log[-4000:]

            # the archive was unpacked in each executor's folder
            assert all((e / "environment" / "bin" / "python").exists() for d in work_dirs for e in executor_dirs(d))
        assert "Lost executor" in job_log or "ExecutorLostFailure" in job_log, job_log[-4000:]

        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["reconciles"] and manifest["rows_ok"] == len(catalog.rows)
        clean = tmp_path / "clean-out"
        run_job(spark, load_config(None, JOB_SETTINGS), str(path), str(clean), echo=False)
    assert group_sets(out) == group_sets(clean)
    assert len(group_sets(clean)) > 0
