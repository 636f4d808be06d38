"""dedup report: static HTML pages of the groups, checked in headless Chromium."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dedup.report import CERTAINTIES, page_name, write_report

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after it loaded (and its scripts ran), as headless Chromium sees it."""
    if not CHROMIUM:
        pytest.skip("no chromium on PATH: `make chromium` installs Debian's package (`make test` does)")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--allow-file-access-from-files", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(page: Path, profile: Path, png: Path, size: tuple[int, int] = (1400, 2400)) -> np.ndarray:
    """The page as headless Chromium paints it (RGB, one CSS pixel a pixel)."""
    if not CHROMIUM:
        pytest.skip("no chromium on PATH: `make chromium` installs Debian's package (`make test` does)")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--allow-file-access-from-files", "--hide-scrollbars",
         "--force-device-scale-factor=1", f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=10000",
         f"--screenshot={png}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and png.exists(), result.stderr[-2000:]
    return cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)


def painted(shot: np.ndarray, image_file: Path) -> float:
    """How well the image appears anywhere in the screenshot (normalised correlation, 1 = exactly)."""
    template = cv2.cvtColor(cv2.imread(str(image_file)), cv2.COLOR_BGR2GRAY)
    return float(cv2.matchTemplate(cv2.cvtColor(shot, cv2.COLOR_RGB2GRAY), template, cv2.TM_CCOEFF_NORMED).max())


def pixels_of(shot: np.ndarray, hex_colour: str, tolerance: int = 6) -> int:
    colour = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(shot.astype(int) - colour).max(axis=2) <= tolerance).sum())


def attribute(dom: str, name: str) -> str:
    return re.search(rf'{name}="([^"]*)"', dom).group(1)


def test_report_pages_in_a_browser(spark, served_job, tmp_path):
    _, out, _ = served_job
    members = spark.read.parquet(f"{out}/groups").collect()
    sizes = {r["group_id"]: r["group_size"] for r in members}
    per_page = 5
    n_pages = -(-len(sizes) // per_page)
    assert n_pages >= 3

    summary = write_report(spark, out, tmp_path / "report", per_page=per_page)
    assert summary["groups"] == len(sizes) and summary["pages"] == n_pages
    assert summary["thumbnails"] == len(members)
    profile = tmp_path / "chromium-profile"

    index = dump_dom(tmp_path / "report" / "index.html", profile)
    assert attribute(index, "data-groups") == str(len(sizes)) and attribute(index, "data-pages") == str(n_pages)
    assert all(f'href="pages/{page_name(p)}"' in index for p in range(1, n_pages + 1))
    assert attribute(index, "data-images-broken") == "0"

    seen = []
    for page in range(1, n_pages + 1):
        dom = dump_dom(tmp_path / "report" / "pages" / page_name(page), profile)
        groups = re.findall(r'<section class="group" id="group-(\d+)" data-group-id="([^"]+)" data-size="(\d+)"', dom)
        assert len(groups) == (per_page if page < n_pages else len(sizes) - per_page * (n_pages - 1))
        seen += groups
        # every thumbnail is there and loaded, one per product shown, each captioned by its product id
        images = re.findall(r'<img src="../thumbs/[0-9a-f]+\.jpg" alt="([^"]+)"', dom)
        assert len(images) == sum(int(size) for _, _, size in groups)
        assert attribute(dom, "data-images-loaded") == str(len(images)) and attribute(dom, "data-images-broken") == "0"
        for product_id in images:
            assert f'<div class="pid">{product_id}</div>' in dom
        assert ('rel="prev"' in dom) == (page > 1) and ('rel="next"' in dom) == (page < n_pages)
        assert "matched by: <b>" in dom and "thumb distance" in dom

    # every group once, in order: ranks 1..n, largest groups first
    assert [int(rank) for rank, _, _ in seen] == list(range(1, len(sizes) + 1))
    assert sorted(gid for _, gid, _ in seen) == sorted(sizes)
    assert [int(size) for _, _, size in seen] == sorted(sizes.values(), reverse=True)
    assert all(sizes[gid] == int(size) for _, gid, size in seen)


def test_report_command_refuses_a_missing_output(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "report", "--out", str(tmp_path / "nowhere")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "output not found" in result.stderr


def test_report_shows_the_evidence_listings_and_decisions(spark, photo_job, tmp_path):
    catalog, out, _ = photo_job
    members = {r["productId"]: r for r in spark.read.parquet(f"{out}/groups").collect()}
    pairs = spark.read.parquet(f"{out}/pairs").collect()
    assert any(p["method"] == "photo" for p in pairs)
    summary = write_report(spark, out, tmp_path / "report", per_page=4)
    assert summary["groups"] == len({r["group_id"] for r in members.values()})
    assert sum(summary["groups_by_certainty"].values()) == summary["groups"]
    profile = tmp_path / "chromium-profile"
    page = tmp_path / "report" / "pages" / page_name(1)
    dom = dump_dom(page, profile)
    assert attribute(dom, "data-images-broken") == "0"
    sections = re.findall(r'<section class="group"[^>]*data-methods="([^"]*)" data-certainty="([^"]*)"', dom)
    assert len(sections) == 4 and all(c in CERTAINTIES for _, c in sections)
    rows = {r["productId"]: r for r in catalog.rows}
    shown = re.findall(r'<figure class="(keep|drop|review)" data-product-id="([^"]+)"', dom)
    assert shown
    for decision, product_id in shown:  # each listing: its title, seller, price and the keep/drop suggestion
        member = members[product_id]
        assert decision == ("keep" if member["keep"] else "drop")
        block = dom[dom.index(f'data-product-id="{product_id}"') :].split("</figure>")[0]
        assert rows[product_id]["title"] in block and rows[product_id]["sellerName"] in block
        assert f"{float(rows[product_id]['sellingPrice']):.2f}" in block
        assert ("out of stock" in block) == (rows[product_id]["inStock"] == "false")
    # each pair: the evidence that decided it
    photo_rows = re.findall(r'<tr class="pair" data-method="photo">(.*?)</tr>', dom)
    for row in photo_rows:
        cells = dict(re.findall(r'<td data-check="([a-z_]+)"[^>]*>([^<]*)</td>', row))
        assert float(cells["inliers"]) >= 20 and float(cells["cosine"]) > 0 and float(cells["structure"]) > 0
        assert cells["colour_change"] != "&ndash;" and ('class="pass"' in row or 'class="near"' in row)

    # the screenshot: the thumbnails are painted, and so are the coloured evidence cells
    shot = screenshot(page, profile, tmp_path / "page-1.png")
    files = re.findall(r'<img src="../thumbs/([0-9a-f]+\.jpg)"', dom)[:4]
    assert files and all(painted(shot, tmp_path / "report" / "thumbs" / name) > 0.9 for name in files)
    assert pixels_of(shot, "#c8e6c9") + pixels_of(shot, "#ffcc80") > 2000  # evidence cells
    assert pixels_of(shot, "#2e7d32") > 200  # the kept listings' frames

    # filters on the page: only the groups of one signal and certainty stay visible
    certainty = sections[0][1]
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--allow-file-access-from-files", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri() + f"#signal=photo&certainty={certainty}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    filtered = result.stdout
    expected = sum("photo" in m.split() and c == certainty for m, c in sections)
    assert attribute(filtered, "data-groups-shown") == str(expected)
    assert len(re.findall(r'<section class="group"[^>]* hidden', filtered)) == len(sections) - expected

    # and for the whole report: --signal and --certainty
    only = write_report(spark, out, tmp_path / "photo-only", per_page=50, signals=["photo"])
    photo_groups = {members[p["a"]]["group_id"] for p in pairs if p["method"] == "photo"}
    assert only["groups"] == len(photo_groups) and only["filters"]["signal"] == ["photo"]
    index = (tmp_path / "photo-only" / "index.html").read_text()
    assert 'id="filters"' in index and "photo" in index


def test_a_blurred_copys_ratio_margin_is_to_the_blurred_bound(spark):
    """A pair kept through the blurred band (a ratio under ``min_inlier_ratio``, its images'
    sharpness apart by ``min_sharpness_gap``) is measured against the bound it was held to; an
    output written before ``sharpness_gap`` existed reads as having none."""
    from pyspark.sql import functions as F

    from dedup.photomatch import DEFAULT_RULE, SCORE_FIELDS, SCORES_SCHEMA
    from dedup.report import _photo_column, certainty_columns, check_margins

    good = {
        "reason": None,
        "inliers": 60,
        "matches": 100,
        "structure": 1.0,
        "tile_agreement": 1.0,
        "colour_change": 0.0,
    }
    rows = [("blurred", {**good, "inlier_ratio": 0.46, "sharpness_gap": 0.5}),
            ("as sharp", {**good, "inlier_ratio": 0.46, "sharpness_gap": 0.1}),
            ("sharp fit", {**good, "inlier_ratio": 0.9, "sharpness_gap": None})]  # fmt: skip
    frame = spark.createDataFrame(rows, f"name string, photo {SCORES_SCHEMA.simpleString()}")
    frame = frame.withColumn("method", F.lit("photo"))
    for column in ("distance", "thumb_distance", "cosine"):
        frame = frame.withColumn(column, F.lit(None).cast("double"))
    margins = certainty_columns(frame, check_margins(DEFAULT_RULE, 0, 0.03, 0.9)).collect()
    ratio = {r["name"]: r["margins"]["inlier_ratio"] for r in margins}
    assert (
        ratio["blurred"] == pytest.approx(0.1)
        and ratio["as sharp"] == 0.0
        and ratio["sharp fit"] == pytest.approx(0.75)
    )
    older = [(f.name, f.dataType.simpleString()) for f in SCORES_SCHEMA.fields if f.name != "sharpness_gap"]
    old = spark.createDataFrame([(dict(rows[0][1]),)], f"photo struct<{','.join(f'{n}:{t}' for n, t in older)}>")
    read = old.select(_photo_column(old).alias("photo")).collect()[0]["photo"]
    assert read["sharpness_gap"] is None and read["inlier_ratio"] == 0.46
    assert [f.name for f in old.select(_photo_column(old).alias("p")).schema["p"].dataType.fields] == [
        name for name, _ in SCORE_FIELDS
    ]
