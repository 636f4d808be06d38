"""The whole job against a hostile web and a dirty dump: every row ends with a status and a reason,
transient faults recover, odd but valid images pass, and nothing waits past its time limits."""

import time
from collections import Counter

import pytest

from dedup.config import load_config
from dedup.imageserver import ImageServer
from dedup.synth import (
    catalog_lines,
    dirty_dump_lines,
    dump_line,
    jpeg_bytes,
    make_catalog,
    odd_images,
    product_image,
    write_dump_bytes,
)
from jobs.dedup_job import run_job

pytestmark = pytest.mark.slow  # one job run against every fault: over a minute on 2 cores

# productId -> (path on the image server, status, reason); "base.jpeg" is a plain served image
FAULTS = {
    "NOTFOUND00000001": ("fault/status/404/x", "failed", "http_404"),
    "GONE000000000001": ("fault/status/410/x", "failed", "http_410"),
    "SERVERERR0000001": ("fault/status/500/x", "failed", "http_500"),
    "FLAKY00000000001": ("fault/flaky/2/base.jpeg", "ok", None),  # 503 + Retry-After twice, then the image
    "THROTTLED0000001": ("fault/throttle/2/base.jpeg", "ok", None),  # 429 + Retry-After twice
    "RESET00000000001": ("fault/reset/x", "failed", "connection_error"),
    "CUT0000000000001": ("fault/cut/base.jpeg", "failed", "read_error"),
    "SLOWDRIP00000001": ("fault/slow/base.jpeg", "failed", "too_slow"),
    "HANG000000000001": ("fault/hang/x", "failed", "timeout"),
    "SOFT404000000001": ("fault/html/x", "failed", "not_an_image"),
    "EMPTY00000000001": ("fault/empty/x", "failed", "empty_body"),
    "TRUNCATED0000001": ("fault/truncated/base.jpeg", "failed", "undecodable_image:OSError"),
    "BOMB000000000001": ("fault/bomb/x", "failed", "decompression_bomb"),
    "LOOP000000000001": ("fault/loop/x", "failed", "too_many_redirects"),
    "METADATA00000001": ("fault/metadata/x", "failed", "blocked_address"),
    "HUGE000000000001": ("fault/huge/x", "failed", "too_large"),
}
# The fetch settings are the defaults: a hang costs one URL's time budget, not every attempt's
# full read time-out, and the other URLs go on around it.
FETCH = load_config()["fetch"]
# The longest one download may take: its budget, plus a connection and a read already under way
# when the budget ran out (each is cut to what was left of the budget when its attempt began).
DOWNLOAD_LIMIT_S = FETCH["url_budget_s"] + FETCH["connect_timeout_s"] + FETCH["read_timeout_s"]
# Spark's own time for a job this small on 2 cores, generous; a hang would add minutes.
SPARK_OVERHEAD_S = 120


@pytest.fixture(scope="module")
def faulty_run(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    with ImageServer({"base.jpeg": jpeg_bytes(product_image(99))}) as server:
        catalog = make_catalog(12, duplicate_share=0.5, family_share=0.1, seed=5, base_url=server.base_url)
        server.images.update(catalog.images)
        expected = {pid: (status, reason) for pid, (_, status, reason) in FAULTS.items()}
        lines = [dump_line(pid, "a fault", "desc", server.url(path)) for pid, (path, _, _) in FAULTS.items()]
        for i, (name, data) in enumerate(sorted(odd_images(product_image(200)).items())):
            server.images[f"odd-{name}-200x200-x"] = data
            pid = f"ODD{i:013d}"
            lines.append(dump_line(pid, name, "desc", server.url(f"img/odd-{name}-200x200-x")))
            expected[pid] = ("ok", None)
        dirty = dirty_dump_lines(server.base_url, catalog.rows[0]["productId"])
        path = folder / "catalog.csv"
        raw = [line.encode() for line in [*catalog_lines(catalog.rows), *lines]] + [line for line, _ in dirty]
        write_dump_bytes(raw, path, newline=b"\n")

        cfg = load_config(None, ["fetch.allowed_hosts=127.0.0.1"])
        started = time.monotonic()
        manifest = run_job(spark, cfg, str(path), str(folder / "out"), echo=False)
        wall_s = time.monotonic() - started
    return {
        "manifest": manifest,
        "out": str(folder / "out"),
        "expected": expected,
        "n_good": len(catalog.rows),
        "dirty": dirty,
        "wall_s": wall_s,
    }


def by_product(spark, run, table):
    """productId -> row of an output table (image bytes left out)."""
    return {r["productId"]: r for r in spark.read.parquet(f"{run['out']}/{table}").drop("image_bytes").collect()}


def images_of(spark, run):
    return by_product(spark, run, "images")


def test_every_row_ends_with_a_status_and_a_reason(spark, faulty_run):
    manifest = faulty_run["manifest"]
    rows = spark.read.parquet(f"{faulty_run['out']}/status").collect()
    n_rows = faulty_run["n_good"] + len(faulty_run["expected"]) + sum(1 for _, r in faulty_run["dirty"] if r)
    assert len(rows) == len({r["row_id"] for r in rows}) == manifest["rows_read"] == n_rows
    assert manifest["reconciles"]
    assert manifest["rows_ok"] + manifest["rows_rejected"] + manifest["rows_failed"] == n_rows
    assert all((r["status"] == "ok") == (r["reason"] is None) for r in rows)
    assert {r["status"] for r in rows} == {"ok", "rejected", "failed"}
    assert manifest["groups"] > 0  # the good rows still find their duplicates


def test_faults_fail_with_their_reason_and_transient_ones_recover(spark, faulty_run):
    status, expected = by_product(spark, faulty_run, "status"), faulty_run["expected"]
    assert {pid: (status[pid]["status"], status[pid]["reason"]) for pid in expected} == expected
    images = by_product(spark, faulty_run, "images")
    for pid in ("FLAKY00000000001", "THROTTLED0000001"):  # recovered on the third attempt
        assert (images[pid]["fetch_status"], images[pid]["attempts"], images[pid]["http_status"]) == ("ok", 3, 200)
    assert images["RESET00000000001"]["attempts"] == FETCH["max_attempts"]  # a connection error is worth another try
    assert images["NOTFOUND00000001"]["attempts"] == images["METADATA00000001"]["attempts"] == 1  # these are not
    # the odd images were hashed, not just downloaded
    odd = [f for pid, f in by_product(spark, faulty_run, "features").items() if pid.startswith("ODD")]
    assert len(odd) == 8 and all(f["feature_status"] == "ok" and f["width"] > 0 for f in odd)


def test_dirty_lines_are_rejected_with_their_reasons(faulty_run):
    expected = Counter(reason for _, reason in faulty_run["dirty"] if reason)
    assert faulty_run["manifest"]["rejected_by_reason"] == dict(expected)


def test_no_download_outlives_its_time_limits(spark, faulty_run):
    elapsed = {pid: r["elapsed_ms"] / 1000 for pid, r in images_of(spark, faulty_run).items()}
    assert max(elapsed.values()) <= DOWNLOAD_LIMIT_S, sorted(elapsed.items(), key=lambda kv: -kv[1])[:3]
    # the hang was waited on for one full read time-out, retried, and cut when its budget ran out
    hang, hang_s = images_of(spark, faulty_run)["HANG000000000001"], elapsed["HANG000000000001"]
    assert hang["attempts"] >= 2 and FETCH["read_timeout_s"] <= hang_s <= FETCH["url_budget_s"] + 1
    assert elapsed["SLOWDRIP00000001"] <= FETCH["slow_after_s"] + FETCH["read_timeout_s"]  # cut by its rate
    assert faulty_run["manifest"]["stage_seconds"]["fetch"] <= DOWNLOAD_LIMIT_S + SPARK_OVERHEAD_S
    assert faulty_run["wall_s"] <= DOWNLOAD_LIMIT_S + 2 * SPARK_OVERHEAD_S
