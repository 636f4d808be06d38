"""Scheduling: the Airflow DAG loads and renders its command; the cron wrapper never overlaps runs."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
WRAPPER = ROOT / "conf" / "cron" / "dedup-nightly.sh"


def check_dag(tmp_path, *args, **env):
    if not AIRFLOW_PYTHON.exists():
        pytest.skip("no .venv-airflow: `make airflow-venv` creates it (`make test` does)")
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), str(ROOT / "conf/airflow/check_dag.py"), str(ROOT / "conf/airflow/dedup_nightly.py"),
         *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "airflow"), **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout)


def test_airflow_dag_loads_with_retries_and_a_dated_command(tmp_path):
    report = check_dag(tmp_path, "--ds", "2026-11-21", AIRFLOW_VAR_DEDUP_CATALOG="/dumps/cat alog.csv")
    assert report["import_errors"] == {}
    dag = report["dags"]["dedup_nightly"]
    assert dag["schedule"] == "30 2 * * *" and dag["max_active_runs"] == 1 and not dag["catchup"]
    assert list(dag["tasks"]) == ["dedup_run"]
    task = dag["tasks"]["dedup_run"]
    assert task["operator"] == "BashOperator"
    assert task["retries"] == 2 and task["retry_exponential_backoff"] and task["retry_delay_s"] == 1200
    # the Variable is read (and quoted), the rest default, the output folder carries the run date
    assert task["bash_command"] == (
        "cd /opt/dedup && ./spark-submit.sh --master yarn --config /opt/dedup/conf/cluster.toml "
        "--catalog '/dumps/cat alog.csv' --out /data/dedup/2026-11-21"
    )


def test_airflow_params_override_variables(tmp_path):
    conf = {"repo": "/srv/dedup", "master": "local[2]", "out_root": "hdfs:///dedup", "sets": ["hash.max_distance=2"]}
    report = check_dag(tmp_path, "--ds", "2026-11-21", "--conf", json.dumps(conf), AIRFLOW_VAR_DEDUP_REPO="/elsewhere")
    assert report["dags"]["dedup_nightly"]["tasks"]["dedup_run"]["bash_command"] == (
        "cd /srv/dedup && ./spark-submit.sh --master 'local[2]' --config /srv/dedup/conf/cluster.toml "
        "--catalog /data/dumps/catalog.csv --out hdfs:///dedup/2026-11-21 --set hash.max_distance=2"
    )


def wrapper_env(tmp_path, command):
    return {
        "PATH": os.environ["PATH"],
        "DEDUP_ENV_FILE": str(tmp_path / "no-such-env-file"),
        "DEDUP_LOG_DIR": str(tmp_path / "logs"),
        "DEDUP_LOCK": str(tmp_path / "lock" / "dedup.lock"),
        "DEDUP_RUN_DATE": "2026-11-21",
        "DEDUP_JOB_COMMAND": command,
    }


def test_cron_wrapper_never_runs_twice_at_once(tmp_path):
    marker = tmp_path / "runs.txt"
    env = wrapper_env(tmp_path, f"echo started >> {marker}; sleep 3; echo job output")
    first = subprocess.Popen([str(WRAPPER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:  # the first run holds the lock
        time.sleep(0.05)
    second = subprocess.run([str(WRAPPER)], env=env, capture_output=True, text=True, timeout=30)
    _, first_err = first.communicate(timeout=30)

    assert second.returncode == 75 and "still holds" in second.stderr
    assert first.returncode == 0, first_err
    assert marker.read_text() == "started\n"  # the second run did not start the job
    logs = list((tmp_path / "logs").glob("dedup-2026-11-21-*.log"))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "job output" in log and "exit 0" in log

    # the lock is free again: a later run goes ahead
    assert subprocess.run([str(WRAPPER)], env=env, capture_output=True, timeout=30).returncode == 0
    assert marker.read_text() == "started\nstarted\n"


def test_cron_wrapper_fails_when_the_job_fails(tmp_path):
    result = subprocess.run(
        [str(WRAPPER)], env=wrapper_env(tmp_path, "echo boom >&2; exit 3"), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3 and "failed with exit 3" in result.stderr
    (log,) = (tmp_path / "logs").glob("*.log")
    assert "boom" in log.read_text() and "exit 3" in log.read_text()
