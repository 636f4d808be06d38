"""``spark-submit.sh``: the command it assembles for each master (``--dry-run``) and the packed
environment it ships (``--ship-env``). The run on a real standalone cluster is tests/test_cluster.py."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "spark-submit.sh")
JOB = ["--catalog", "hdfs:///dumps/c.csv", "--out", "hdfs:///dedup/d", "--set", "fetch.partitions=9",
       "--previous", "hdfs:///dedup/prev"]  # fmt: skip


def dry_run(*args: str, **env: str) -> list[str]:
    result = subprocess.run([SCRIPT, "--dry-run", *args], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, **env))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def conf_values(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--conf")


def test_local_master_ships_the_package_and_profile_and_forwards_job_arguments():
    argv = dry_run("--master", "local[2]", "--config", "conf/local.toml", *JOB)
    app = argv.index(str(ROOT / "jobs" / "dedup_job.py"))
    assert argv[app + 1 :] == ["--config", "conf/local.toml", *JOB]
    options = argv[1:app]
    assert options[options.index("--py-files") + 1] == str(ROOT / "dist" / "dedup.zip")
    assert options[options.index("--files") + 1] == "conf/local.toml"  # a cluster-mode driver finds it
    assert options[options.index("--master") + 1] == "local[2]"
    assert "--archives" not in options  # local mode runs on the venv it starts from
    with zipfile.ZipFile(ROOT / "dist" / "dedup.zip") as package:
        names = set(package.namelist())
        assert {"dedup/incremental.py", "jobs/dedup_job.py", "jobs/stages.py"} <= names
        # the dev kit (demo generator, fault-injecting server, bench set) stays on the machine it runs from
        assert not [name for name in names if name.startswith("dedup/devkit/")]
        assert not {"dedup/synth.py", "dedup/imageserver.py", "jobs/demo.py"} & names
        imports_kit = re.compile(r"^\s*(from|import) dedup\.devkit", re.MULTILINE)  # doctests aside
        assert not [name for name in names if imports_kit.search(package.read(name).decode())]


@pytest.mark.parametrize("mode", ["client", "cluster"])
def test_yarn_ships_the_environment_archive(mode, tmp_path):
    archive = tmp_path / "env.tar.gz"
    archive.write_bytes(b"")  # a ready archive (DEDUP_ENV_ARCHIVE) is passed on, not packed again
    argv = dry_run("--master", "yarn", "--deploy-mode", mode, *JOB, DEDUP_SHIP_ENV="1", DEDUP_ENV_ARCHIVE=str(archive))
    assert argv[argv.index("--archives") + 1] == f"{archive}#environment"
    confs = conf_values(argv)
    assert confs["spark.pyspark.python"] == "./environment/bin/python"
    if mode == "client":  # the driver runs here, on the local venv
        assert Path(confs["spark.pyspark.driver.python"]).is_file()  # not ./environment/...
    else:  # the driver runs in the cluster, on the archive too
        assert "spark.pyspark.driver.python" not in confs
    assert argv[argv.index("--deploy-mode") + 1] == mode


def test_kubernetes_passes_the_image_and_the_archive(tmp_path):
    archive = tmp_path / "env.tar.gz"
    archive.write_bytes(b"")
    argv = dry_run("--ship-env", "--master", "k8s://https://127.0.0.1:6443", "--deploy-mode=cluster",
                   "--conf", "spark.kubernetes.container.image=registry.example.com/dedup:1", *JOB,
                   DEDUP_ENV_ARCHIVE=str(archive))  # fmt: skip
    confs = conf_values(argv)
    assert confs["spark.kubernetes.container.image"] == "registry.example.com/dedup:1"
    assert confs["spark.pyspark.python"] == "./environment/bin/python"
    assert "spark.pyspark.driver.python" not in confs
    assert argv[argv.index("--archives") + 1] == f"{archive}#environment"


def test_without_job_arguments_it_prints_usage_and_fails():
    result = subprocess.run([SCRIPT, "--master", "yarn"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--ship-env" in result.stdout


@pytest.mark.slow
def test_ship_env_packs_the_venv_without_pyspark():
    argv = dry_run("--ship-env", "--master", "spark://127.0.0.1:7077", *JOB, DEDUP_ENV_ARCHIVE="",
                   DEDUP_ENV_EXCLUDE="tensorflow* keras*")  # fmt: skip
    archive = argv[argv.index("--archives") + 1]
    assert archive == f"{ROOT}/dist/deps-tensorflow-keras.tar.gz#environment"
    with tarfile.open(archive.removesuffix("#environment")) as packed:
        names = set(packed.getnames())
    assert {"bin/python", "bin/activate", "pyvenv.cfg"} <= names
    for package in ("numpy", "pandas", "pyarrow", "PIL", "requests"):
        assert f"lib/python3.12/site-packages/{package}/__init__.py" in names
    assert not any("site-packages/pyspark/" in name for name in names)  # the cluster's Spark brings it
    assert not any("__editable__" in name for name in names)  # the package comes with --py-files
    assert not any("site-packages/tensorflow" in name for name in names)  # DEDUP_ENV_EXCLUDE
    assert "lib/python3.12/site-packages/onnxruntime/__init__.py" in names  # the SSCD embedders' runtime
