"""``dedup run`` as the README writes it: no PYSPARK_PYTHON, another ``python3`` first on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import make_catalog, write_catalog_csv

ROOT = Path(__file__).resolve().parent.parent


def other_python() -> str | None:
    """An interpreter of another version than this one (3.11 on the project's machines), if any."""
    for name in ("python3.11", "python3.13", "python3.10"):
        found = shutil.which(name)
        if found:
            return found
    pyenv = Path.home() / ".pyenv" / "versions"
    for candidate in sorted(pyenv.glob("3.11*/bin/python3.11")) if pyenv.is_dir() else []:
        return str(candidate)
    return None


def test_dedup_run_uses_the_drivers_python_not_the_one_on_path(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    marker = tmp_path / "shim-was-run"
    other = other_python()
    # a python3 that leaves a mark, then behaves as the other version would (or fails outright)
    tail = f'exec {other} "$@"' if other else "exit 97"
    (shim / "python3").write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\n{tail}\n')
    (shim / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    assert subprocess.run(["python3", "-c", "pass"], env=env, check=False).returncode in (0, 97)
    assert marker.exists(), "the shim is not the python3 on PATH"
    marker.unlink()

    dedup = Path(sys.executable).parent / "dedup"  # the command make venv installs: .venv/bin/dedup
    with ImageServer({}) as server:
        catalog = make_catalog(5, duplicate_share=0.6, family_share=0.0, seed=3, base_url=server.base_url)
        server.images.update(catalog.images)
        write_catalog_csv(catalog.rows, tmp_path / "dump.csv")
        result = subprocess.run(
            [str(dedup), "run", "--catalog", str(tmp_path / "dump.csv"), "--out", str(tmp_path / "out"),
             "--set", "fetch.allowed_hosts=127.0.0.1", "--set", "spark.ui.enabled=false"],
            capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "PYTHON_VERSION_MISMATCH" not in result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["reconciles"] and manifest["rows_ok"] == len(catalog.rows)
    assert manifest["embedding"]["dim"] > 0  # the default embedder ran in the Python workers
    assert not marker.exists()  # no worker was started with the python3 on PATH
