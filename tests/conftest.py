"""Shared fixtures: one local SparkSession per test run, a loopback image server, image bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import jpeg_bytes

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from dedup.session import build_session

    session = build_session(
        {
            "spark.master": "local[2]",
            "spark.app.name": "dedup-tests",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        }
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def run_cli():
    """Run the ``dedup`` command (``python -m jobs.cli``) from the repository root."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "jobs.cli", *args]
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300, **kwargs)

    return run


@pytest.fixture(scope="session")
def sample_jpeg() -> bytes:
    from dedup.devkit.synth import product_image

    return jpeg_bytes(product_image(1))


@pytest.fixture
def image_server(sample_jpeg: bytes) -> Iterator[ImageServer]:
    with ImageServer({"a-200x200-x.jpeg": sample_jpeg}) as server:
        yield server


@pytest.fixture(scope="session")
def served_job(spark, tmp_path_factory):
    """A small catalog with planted duplicates (mirror and exact copies among them), its images
    served on loopback, run through the job once: (catalog, output folder, server)."""
    from dedup.config import load_config
    from dedup.devkit.synth import make_catalog, write_catalog_csv
    from jobs.dedup_job import run_job

    folder = tmp_path_factory.mktemp("served_job")
    with ImageServer({}) as server:
        catalog = make_catalog(30, duplicate_share=0.5, family_share=0.0, seed=23, base_url=server.base_url)
        server.images.update(catalog.images)
        write_catalog_csv(catalog.rows, folder / "catalog.csv")
        # the hash rule: dedup query's own rule, which the query tests compare with the job's pairs
        settings = ["fetch.allowed_hosts=127.0.0.1", "fetch.max_attempts=2", "fetch.backoff_base_s=0.01"]
        cfg = load_config(None, [*settings, "embed.backend=none"])
        run_job(spark, cfg, str(folder / "catalog.csv"), str(folder / "out"), echo=False)
        yield catalog, str(folder / "out"), server


@pytest.fixture(scope="session")
def photo_job(spark, tmp_path_factory):
    """A small catalog with planted duplicates and listing data (stock, seller ratings), run through
    the job at its defaults (the embedder and the photo check) once: (catalog, output folder, server)."""
    import random

    from dedup.config import load_config
    from dedup.devkit.synth import make_catalog, write_catalog_csv
    from jobs.dedup_job import run_job

    folder = tmp_path_factory.mktemp("photo_job")
    with ImageServer({}) as server:
        catalog = make_catalog(24, duplicate_share=0.6, family_share=0.0, seed=31, base_url=server.base_url)
        rng = random.Random(31)
        for row in catalog.rows:
            row.update(inStock=rng.choice(["true", "true", "false"]), sellerNoOfRatings=str(rng.randrange(0, 5000)))
        server.images.update(catalog.images)
        write_catalog_csv(catalog.rows, folder / "catalog.csv")
        cfg = load_config(None, ["fetch.allowed_hosts=127.0.0.1", "fetch.max_attempts=2", "fetch.backoff_base_s=0.01"])
        run_job(spark, cfg, str(folder / "catalog.csv"), str(folder / "out"), echo=False)
        yield catalog, str(folder / "out"), server


@pytest.fixture(scope="session")
def group_sets(spark):
    """A function: a job output folder -> its groups as a set of sorted productId tuples."""

    def sets_of(out) -> set[tuple[str, ...]]:
        members = spark.read.parquet(f"{out}/groups").groupBy("group_id").agg({"productId": "collect_list"})
        return {tuple(sorted(row[1])) for row in members.toLocalIterator()}

    return sets_of
