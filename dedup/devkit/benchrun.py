"""What the bench scripts record about a run: its command, commit and machine (:func:`run_meta`),
each step's seconds (:func:`timed`) and the Spark driver's memory peaks (:class:`DriverMemory`);
:func:`put_result` prints and writes a script's results.
Shared by ``bench/scale.py``, ``bench/scale_density.py`` and ``bench/job_scale.py``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parents[2]  # the checkout the bench runs from (its commit is recorded)


def _vm_hwm_mb(pid: int) -> float:
    """A process's peak resident memory (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class DriverMemory:
    """Peaks of the driver JVM heap (all heap pools) and of the JVM's and this process's RSS."""

    def __init__(self, spark: SparkSession) -> None:
        jvm = spark.sparkContext._jvm
        self.beans = jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans()
        self.jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())

    def reset(self) -> None:
        for bean in self.beans:
            bean.resetPeakUsage()
        _reset_hwm(self.jvm_pid)
        _reset_hwm(os.getpid())

    def peaks(self) -> dict[str, float]:
        heap = sum(b.getPeakUsage().getUsed() for b in self.beans if str(b.getType().toString()) == "Heap memory")
        return {
            "jvm_heap_peak_mb": round(heap / 2**20, 1),
            "jvm_rss_peak_mb": round(_vm_hwm_mb(self.jvm_pid), 1),
            "python_rss_peak_mb": round(_vm_hwm_mb(os.getpid()), 1),
        }


def timed(stages: dict[str, float], name: str, action: Any) -> Any:
    """``action()``, its seconds recorded as ``stages[name]``."""
    started = time.perf_counter()
    result = action()
    stages[name] = round(time.perf_counter() - started, 2)
    return result


def run_meta() -> dict[str, Any]:
    """The command, commit, date and machine of this run, for a results file."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def put_result(result: dict[str, Any], out: Path | None) -> int:
    """Print ``result`` as JSON and write it to ``out`` too, when given; 0, the script's exit status."""
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text)
    print(text)
    return 0
