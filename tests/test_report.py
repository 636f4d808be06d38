"""dedup report: static HTML pages of the groups, checked in headless Chromium."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dedup.report import page_name, write_report

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
            assert f"<figcaption>{product_id}</figcaption>" in dom
        assert ('rel="prev"' in dom) == (page > 1) and ('rel="next"' in dom) == (page < n_pages)
        assert "matched by: <b>" in dom and "thumb_distance" in dom

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
