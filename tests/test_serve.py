"""dedup serve: real HTTP requests, good and bad, against a job output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from dedup.devkit.synth import jpeg_bytes
from dedup.query import Index
from dedup.serve import QueryServer
from tests.test_query import image_of, job_pairs_of

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(spark, photo_job):
    _, out, _ = photo_job
    index = Index(spark, out, overrides=["fetch.max_bytes=60000"], cache=True)  # a small cap, to test it
    with QueryServer(index) as running:
        yield running


def test_serve_answers_as_dedup_query_does(spark, server, photo_job):
    catalog, out, _ = photo_job
    health = requests.get(f"{server.url}/health", timeout=30)
    assert health.status_code == 200 and health.json()["rule"]["decision"] == "photo"

    grouped = {r["productId"] for r in spark.read.parquet(f"{out}/groups").collect()}
    product_id = next(r["productId"] for r in catalog.rows if r["productId"] in grouped)
    url, data = image_of(catalog, product_id)
    posted = requests.post(f"{server.url}/query", data=data, headers={"Content-Type": "image/jpeg"}, timeout=300)
    assert posted.status_code == 200, posted.text
    found = {m["productId"]: m["method"] for m in posted.json()["matches"]}
    assert found[product_id] == "exact"
    assert set(found) - {product_id} == set(job_pairs_of(spark, out, product_id))  # the run's own answer

    fetched = requests.get(f"{server.url}/query", params={"url": url, "limit": "1"}, timeout=300)
    assert fetched.status_code == 200, fetched.text
    assert [m["productId"] for m in fetched.json()["matches"]] == [posted.json()["matches"][0]["productId"]]


def test_serve_refuses_bad_input_with_a_status_that_says_why(server, photo_job):
    _, _, image_server = photo_job
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    too_large = jpeg_bytes(Image.fromarray(noise), quality=95)
    assert len(too_large) > 60000
    cases = [
        (requests.post(f"{server.url}/query", data=b"<html>not a picture</html>", timeout=60), 400, "not an image"),
        (requests.post(f"{server.url}/query", data=too_large, timeout=60), 413, "over fetch.max_bytes"),
        (requests.post(f"{server.url}/query", data=b"", timeout=60), 400, "needs the image"),
        (requests.get(f"{server.url}/query", params={"url": "http://169.254.169.254/latest/meta-data"}, timeout=60),
         403, "refused by the fetch policy"),
        (requests.get(f"{server.url}/query", params={"url": "http://10.0.0.7/a.jpg"}, timeout=60), 403, "refused"),
        (requests.get(f"{server.url}/query", params={"url": image_server.url("fault/status/404/x.jpeg")},
                      timeout=120), 502, "download failed (http_404"),
        (requests.get(f"{server.url}/query", timeout=60), 400, "needs ?url="),
        (requests.post(f"{server.url}/query?limit=zero", data=b"x", timeout=60), 400, "limit must be"),
        (requests.get(f"{server.url}/nothing", timeout=60), 404, "no such path"),
        (requests.put(f"{server.url}/query", data=b"x", timeout=60), 405, "use POST"),
    ]  # fmt: skip
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["error"], response.text
    # a huge download is cut at the cap too
    huge = requests.get(f"{server.url}/query", params={"url": image_server.url("fault/huge/x.jpeg")}, timeout=120)
    assert huge.status_code == 413 and "too_large" in huge.json()["error"]
    # and the server still answers after all of it
    assert requests.get(f"{server.url}/health", timeout=30).status_code == 200


def test_serve_command_listens_until_stopped(served_job, tmp_path):
    catalog, out, _ = served_job
    _, data = image_of(catalog, catalog.rows[0]["productId"])
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    command = [sys.executable, "-m", "jobs.cli", "serve", "--index", out, "--port", "0",
               "--set", "spark.ui.enabled=false", "--set", "spark.master=local[1]"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()  # "dedup serve: listening on http://127.0.0.1:PORT ..."
        assert "listening on" in line, process.stderr.read()[-3000:] if process.poll() is not None else line
        url = line.split("listening on ")[1].split()[0]
        answer = requests.post(f"{url}/query", data=data, timeout=300)
        assert answer.status_code == 200
        assert catalog.rows[0]["productId"] in {m["productId"] for m in answer.json()["matches"]}
    finally:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    missing = subprocess.run([sys.executable, "-m", "jobs.cli", "serve", "--index", str(tmp_path / "none")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "index not found" in missing.stderr
