"""GPU scheduling: a task takes the GPU Spark assigned it, and falls back to the CPU where the
runtime has no GPU provider (this machine). Runs a separate Spark in local-cluster mode (a real
worker and executor process; plain local mode schedules no task resources) whose worker declares
one GPU through a discovery script, as conf/gpu.toml does on a cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from dedup.embed import describe_task_device
    from dedup.session import build_session
    from dedup.settings import default_table

    spark = build_session({
        "spark.master": "local-cluster[1,2,1024]", "spark.ui.enabled": "false",
        "spark.worker.resource.gpu.amount": "1",
        "spark.worker.resource.gpu.discoveryScript": sys.argv[1],
        "spark.executor.resource.gpu.amount": "1",
        "spark.task.resource.gpu.amount": "0.5",
    })
    settings = default_table("embed", backend="sscd_distilled", device="auto")
    seen = spark.sparkContext.parallelize(range(2), 2).mapPartitions(
        lambda _: [json.dumps(describe_task_device(settings))]).collect()
    print("RESULT", json.dumps([json.loads(s) for s in seen]))
    spark.stop()
    """
)


@pytest.mark.slow
def test_task_takes_its_assigned_gpu_and_falls_back_to_cpu(tmp_path):
    discovery = tmp_path / "gpus.sh"
    discovery.write_text('#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0"]}\'\n')
    discovery.chmod(0o755)
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(discovery)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    seen = json.loads(line.removeprefix("RESULT "))
    assert [s["assigned"] for s in seen] == [["gpu", 0], ["gpu", 0]]
    assert all(s["runs_on"] == ["CPUExecutionProvider"] for s in seen)  # no CUDA provider here: CPU fallback
