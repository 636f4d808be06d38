"""The fetch stage's committed output: ``images/``, a Parquet table its tasks add to as they go.

Why the tasks commit, not a Spark write: a Spark write commits when its whole job ends, and a job
waits for its slowest task. Committing often through Spark means many small jobs, each ending on
its slowest URL; committing rarely loses everything since the last commit. Here each fetch task
streams through its share of the URLs (:meth:`dedup.fetch.Fetcher.stream`) and commits what has
finished as small Parquet files of its own, while its downloads go on:

* **Names:** ``images/fetch-<run>-p<partition>-a<attempt>-<seq>.parquet``.
* **Commit:** a file is written under ``images/_incoming/`` and renamed into place: atomic on a
  local disk and on HDFS. On object stores (S3, GCS), where a rename is a copy, it is written
  straight to its name: an object appears whole when its upload completes. Readers skip
  ``_``-prefixed paths, so ``images/`` only ever holds whole files, and the folder's listing is
  the ledger of what is committed.
* **When:** a file is committed once it holds ``fetch.commit_share`` of the rows the task had
  committed before it (at least ``fetch.commit_min_rows``), or sooner at ``fetch.commit_max_rows``,
  ``fetch.commit_max_bytes`` or ``fetch.commit_max_s``. A crash so loses about that share of the
  finished downloads at any moment after a task's first few commits, and a long task's files grow
  to ``commit_max_rows`` rows, so the file count stays small on a large dump.
* **Task retries:** a retried attempt reads the keys of the files that earlier attempts of its
  partition committed and skips them. When the job ends, files of this run that no successful
  attempt reported (a speculative or lost attempt's) are deleted, so an ok key has one row.
* **Resume:** a rerun into the same output reads ``images/`` with the table's schema (a run killed
  before its first commit leaves a folder with no file: an empty table) and fetches only keys
  with no ok row (:func:`dedup.fetch.pending`); left-over ``_incoming/`` and ``_temporary/`` are
  removed first.

Executors reach the output through pyarrow's file systems (Python tasks have no JVM file system):
local paths and ``file://``, ``hdfs://`` (libhdfs on the executors), ``s3://`` and ``s3a://``,
``gs://``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession

from dedup import outputs
from dedup.fetch import fetch_partition, pending
from dedup.schema import FETCH_SCHEMA
from dedup.settings import FetchSettings

INCOMING = "_incoming"
KEYS = ["productId", "image_url"]
_OBJECT_STORES = {"s3", "gcs"}


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system holding ``path`` and the path within it.

    >>> fs, inner = filesystem("/tmp/out/images")
    >>> fs.type_name, inner
    ('local', '/tmp/out/images')
    """
    if "://" not in path:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    scheme, rest = path.split("://", 1)
    if scheme.lower() in ("s3a", "s3n"):  # Hadoop's names for S3
        path = f"s3://{rest}"
    return pafs.FileSystem.from_uri(path)


def _arrow_schema() -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(FETCH_SCHEMA)


class TaskCommits:
    """One task attempt's committed files: buffers finished rows, commits them by the rule above."""

    def __init__(self, images_path: str, run_id: str, partition: int, attempt: int, settings: FetchSettings) -> None:
        self.fs, self.root = filesystem(images_path)
        self.direct = self.fs.type_name in _OBJECT_STORES
        self.partition_prefix = f"fetch-{run_id}-p{partition:05d}-"
        self.name_prefix = f"{self.partition_prefix}a{attempt}-"
        self.share = settings.commit_share
        self.min_rows = max(1, settings.commit_min_rows)
        self.max_rows = max(self.min_rows, settings.commit_max_rows)
        self.max_bytes = settings.commit_max_bytes
        self.max_s = settings.commit_max_s
        self.schema = _arrow_schema()
        self.buffer: list[tuple] = []
        self.buffer_bytes = 0
        self.opened_at = 0.0
        self.files: list[str] = []
        self.rows = 0  # committed by this attempt or adopted from earlier ones
        self.adopted = 0
        self.commit_s = 0.0

    def adopt(self) -> set[tuple[str, str]]:
        """The keys that earlier attempts of this partition committed (their files become ours)."""
        keys: set[tuple[str, str]] = set()
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            if info.type == pafs.FileType.File and info.base_name.startswith(self.partition_prefix):
                table = pq.read_table(info.path, columns=KEYS, filesystem=self.fs)
                keys.update(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
                self.files.append(info.base_name)
                self.adopted += table.num_rows
        self.rows += self.adopted
        return keys

    def add(self, row: tuple) -> None:
        if not self.buffer:
            self.opened_at = time.monotonic()
        self.buffer.append(row)
        self.buffer_bytes += row[7]  # n_bytes
        if self.due():
            self.commit()

    def due(self) -> bool:
        n = len(self.buffer)
        if n >= self.max_rows or self.buffer_bytes >= self.max_bytes:
            return True
        if n and time.monotonic() - self.opened_at >= self.max_s:
            return True
        return n >= max(self.min_rows, self.share * self.rows)

    def commit(self) -> None:
        """Commit the buffered rows as one file (nothing when the buffer is empty)."""
        if not self.buffer:
            return
        started = time.monotonic()
        columns = list(zip(*self.buffer, strict=True))
        table = pa.Table.from_arrays(
            [pa.array(column, type=spec.type) for column, spec in zip(columns, self.schema, strict=True)],
            schema=self.schema,
        )
        name = f"{self.name_prefix}{len(self.files):05d}.parquet"
        final = f"{self.root}/{name}"
        target = final if self.direct else f"{self.root}/{INCOMING}/{name}.{uuid.uuid4().hex[:8]}"
        if not self.direct:
            self.fs.create_dir(f"{self.root}/{INCOMING}", recursive=True)
        with self.fs.open_output_stream(target) as sink:
            # image bytes are compressed already; the small columns get snappy
            pq.write_table(table, sink, compression={f.name: "none" if f.name == "image_bytes" else "snappy"
                                                     for f in self.schema})  # fmt: skip
        if not self.direct:
            self.fs.move(target, final)
        self.files.append(name)
        self.rows += len(self.buffer)
        self.buffer, self.buffer_bytes = [], 0
        self.commit_s += time.monotonic() - started


def commit_partition(
    partition: int, rows: Iterable[Any], settings: FetchSettings, images_path: str, run_id: str
) -> Iterator[tuple]:
    """``mapPartitionsWithIndex`` body: fetch ``rows`` (productId, image_url), commit as they finish;
    yield one summary: (partition, attempt, files, rows, adopted rows, commit seconds, seconds)."""
    started = time.monotonic()
    context = TaskContext.get()
    attempt = context.attemptNumber() if context else 0
    commits = TaskCommits(images_path, run_id, partition, attempt, settings)
    done = commits.adopt() if attempt > 0 else set()
    todo = (row for row in rows if (row["productId"], row["image_url"]) not in done)
    for result in fetch_partition(todo, settings):
        commits.add(result)
    commits.commit()
    yield (partition, attempt, commits.files, commits.rows, commits.adopted, commits.commit_s,
           time.monotonic() - started)  # fmt: skip


@dataclass
class FetchRun:
    """What one fetch stage did."""

    run_id: str
    rows: int = 0  # results committed in this run (ok and failed)
    files: int = 0
    tasks: int = 0
    commit_s: float = 0.0  # time the tasks spent committing, all together
    task_s: list[float] = field(default_factory=list)


def read_images(spark: SparkSession, images_path: str) -> DataFrame | None:
    """The committed rows of ``images_path`` (None when there is no such folder); a folder without
    a committed file yet reads as an empty table."""
    if not outputs.path_exists(spark, images_path):
        return None
    return spark.read.schema(FETCH_SCHEMA).parquet(images_path)


def prepare(spark: SparkSession, images_path: str) -> None:
    """Remove what killed runs left half-done (uncommitted files), and make sure the folder exists."""
    for leftover in (INCOMING, "_temporary"):
        outputs.remove_tree(spark, f"{images_path}/{leftover}")
    fs, root = filesystem(images_path)
    fs.create_dir(root, recursive=True)


def drop_strays(images_path: str, run_id: str, kept: set[str]) -> int:
    """Delete files of run ``run_id`` that no successful task attempt reported; return how many."""
    fs, root = filesystem(images_path)
    prefix = f"fetch-{run_id}-"
    strays = [
        info.path
        for info in fs.get_file_info(pafs.FileSelector(root))
        if info.type == pafs.FileType.File and info.base_name.startswith(prefix) and info.base_name not in kept
    ]
    for path in strays:
        fs.delete_file(path)
    return len(strays)


def fetch_and_commit(
    products: DataFrame, settings: FetchSettings, images_path: str, scratch_path: str, already: DataFrame | None
) -> FetchRun:
    """Download what :func:`dedup.fetch.pending` leaves of ``products`` into ``images_path``,
    committed by the tasks as they go (see the module's notes). The pending keys are written to
    ``scratch_path`` first, so every attempt of a task sees the same rows."""
    spark = products.sparkSession
    run = FetchRun(run_id=f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
    prepare(spark, images_path)
    pending(products, already).write.mode("overwrite").parquet(scratch_path)
    todo = spark.read.parquet(scratch_path)
    n_todo = todo.count()
    if not n_todo:
        return run
    partitions = min(n_todo, settings.partitions or spark.sparkContext.defaultParallelism)
    run_id = run.run_id
    summaries = (
        todo.repartition(partitions)
        .rdd.mapPartitionsWithIndex(lambda index, rows: commit_partition(index, rows, settings, images_path, run_id))
        .collect()
    )
    kept = {name for summary in summaries for name in summary[2]}
    drop_strays(images_path, run.run_id, kept)
    outputs.remove_tree(spark, f"{images_path}/{INCOMING}")
    run.rows = sum(summary[3] for summary in summaries)
    run.files = len(kept)
    run.tasks = len(summaries)
    run.commit_s = sum(summary[5] for summary in summaries)
    run.task_s = sorted(round(summary[6], 3) for summary in summaries)
    return run
