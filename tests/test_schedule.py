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
    # and finds the last finished run before this date at run time, for --previous
    assert task["bash_command"] == (
        'cd /opt/dedup && previous="$(conf/last-finished-run.sh /data/dedup 2026-11-21)" && '
        'echo "dedup_nightly: previous run: ${previous:-none (a full run)}" && '
        "./spark-submit.sh --master yarn --config /opt/dedup/conf/cluster.toml "
        "--catalog '/dumps/cat alog.csv' --out /data/dedup/2026-11-21 ${previous:+--previous \"$previous\"}"
    )


def test_airflow_params_override_variables(tmp_path):
    conf = {"repo": "/srv/dedup", "master": "local[2]", "out_root": "hdfs:///dedup", "sets": ["hash.max_distance=2"],
            "previous": "none"}  # fmt: skip
    report = check_dag(tmp_path, "--ds", "2026-11-21", "--conf", json.dumps(conf), AIRFLOW_VAR_DEDUP_REPO="/elsewhere")
    assert report["dags"]["dedup_nightly"]["tasks"]["dedup_run"]["bash_command"] == (
        'cd /srv/dedup && previous= && echo "dedup_nightly: previous run: ${previous:-none (a full run)}" && '
        "./spark-submit.sh --master 'local[2]' --config /srv/dedup/conf/cluster.toml "
        '--catalog /data/dumps/catalog.csv --out hdfs:///dedup/2026-11-21 ${previous:+--previous "$previous"} '
        "--set hash.max_distance=2"
    )
    named = check_dag(tmp_path, "--conf", json.dumps({"previous": "/data/dedup/2026-11-01"}))
    assert "previous=/data/dedup/2026-11-01 &&" in named["dags"]["dedup_nightly"]["tasks"]["dedup_run"]["bash_command"]


FINDER = ROOT / "conf" / "last-finished-run.sh"


def finished_runs(root, names, unfinished=()):
    for name in [*names, *unfinished]:
        (root / name).mkdir(parents=True)
    for name in names:
        (root / name / "manifest.json").write_text("{}")


def test_last_finished_run_is_the_latest_earlier_folder_with_a_manifest(tmp_path):
    root = tmp_path / "out"
    finished_runs(root, ["2026-11-19", "2026-11-20", "2026-11-23", "report"], unfinished=["2026-11-21"])

    def last(*args, **env):
        done = subprocess.run([str(FINDER), *args], capture_output=True, text=True, timeout=30,
                              env={"PATH": os.environ["PATH"], **env})  # fmt: skip
        return done.returncode, done.stdout.strip(), done.stderr

    assert last(str(root), "2026-11-22")[:2] == (0, f"{root}/2026-11-20")  # 11-21 crashed: no manifest
    assert last(f"{root}/", "2026-11-20")[:2] == (0, f"{root}/2026-11-19")  # never the run's own date
    assert last(str(root), "2026-11-19")[:2] == (0, "")  # the first night: none
    assert last(str(tmp_path / "nowhere"), "2026-11-19")[:2] == (0, "")
    assert last(f"file://{root}", "2026-11-30")[:2] == (0, f"file://{root}/2026-11-23")
    assert last(str(root))[0] == 2
    # a remote root is listed through the Hadoop CLI: a stand-in serving hdfs://nn/out from the local folder
    fake = tmp_path / "fake-hadoop"
    fake.write_text(f"""#!/usr/bin/env bash
shift  # "fs"
op="$1"; [[ "$op" == -ls ]] && shift
path="${{@: -1}}"; local="{tmp_path}${{path#hdfs://nn}}"
case "$op" in
  -ls) for d in "$local"/*; do echo "hdfs://nn${{d#{tmp_path}}}"; done ;;
  -test) [[ -e "$local" ]] ;;
esac
""")
    fake.chmod(0o755)
    assert last("hdfs://nn/out", "2026-11-22", HADOOP_CLI=f"{fake} fs")[:2] == (0, "hdfs://nn/out/2026-11-20")
    code, _, err = last("hdfs://nn/out", "2026-11-22", HADOOP_CLI="no-such-hadoop fs")
    assert code == 1 and "cannot list" in err


def test_cron_wrapper_passes_the_last_finished_run_as_previous(tmp_path):
    out_root = tmp_path / "out"
    finished_runs(out_root, ["2026-11-19", "2026-11-20"])
    env = {**wrapper_env(tmp_path, 'echo "previous=$DEDUP_PREVIOUS_RUN"'), "DEDUP_OUT_ROOT": str(out_root)}
    assert subprocess.run([str(WRAPPER)], env=env, capture_output=True, timeout=30).returncode == 0
    env["DEDUP_PREVIOUS"] = "none"
    assert subprocess.run([str(WRAPPER)], env=env, capture_output=True, timeout=30).returncode == 0
    logs = sorted((tmp_path / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)
    assert f"previous={out_root}/2026-11-20" in logs[0].read_text()
    assert "previous=\n" in logs[1].read_text() and "none (a full run)" in logs[1].read_text()
    dry = subprocess.run(
        [str(WRAPPER)],
        env={**wrapper_env(tmp_path, ""), "DEDUP_OUT_ROOT": str(out_root), "DEDUP_JOB_COMMAND": ""},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # without a stand-in command the wrapper runs spark-submit.sh with --previous (it fails here: no catalog)
    (log,) = [p for p in (tmp_path / "logs").glob("*.log") if p not in logs]
    assert f"--out {out_root}/2026-11-21 --previous {out_root}/2026-11-20" in log.read_text() and dry.returncode != 0


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
