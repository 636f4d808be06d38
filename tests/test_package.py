"""The package alone: the wheel, installed by itself into a clean venv, runs ``dedup demo``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("setup.py", "pyproject.toml", "README.md", "dedup", "jobs")  # what the wheel is built from


def pins(lines: list[str]) -> dict[str, str]:
    """name -> version of ``name==version`` lines (names normalised as pip does)."""
    found = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything pointing at this checkout's venv or sources."""
    drop = {"PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


@pytest.mark.slow
def test_the_wheel_alone_installs_a_working_job(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    env = clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("dedup-*.whl")

    # install_requires holds every pin the default job needs, at the versions of the tested lock
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ") and "extra ==" not in line]  # fmt: skip
    lock = pins((ROOT / "requirements.txt").read_text().splitlines())
    assert "opencv-python-headless" in pins(requires)
    for name, version in pins(requires).items():
        assert lock.get(name) == version, f"{name}=={version} in setup.py, {lock.get(name)} in requirements.txt"

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=1200, env=env)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util, dedup, cv2; print(dedup.__file__); print(importlib.util.find_spec('tensorflow'))"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]
    module_file, tensorflow = probe.stdout.split()
    assert Path(module_file).is_relative_to(venv)  # the installed copy, not this checkout
    assert tensorflow == "None"  # TensorFlow is the vgg16 extra, not part of the default install

    demo = subprocess.run(
        [str(venv / "bin" / "dedup"), "demo", "--out", str(tmp_path / "demo-out"), "--products", "40"],
        capture_output=True, text=True, timeout=1200, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-4000:]
    assert "pairwise precision" in demo.stdout and "embedder sscd_distilled" in demo.stdout
    assert (tmp_path / "demo-out" / "manifest.json").exists() and (tmp_path / "demo-out" / "demo_eval.json").exists()
    assert len(list((tmp_path / "demo-out" / "queries").glob("*.jpg"))) == 4  # what the README queries
