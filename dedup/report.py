"""Report: a static HTML report of a job output's duplicate groups (``dedup report``).

``index.html`` (totals and one line per page) and ``pages/page-0001.html``... with
``per_page`` groups each, largest groups first and, among groups of one size, the least certain
first (largest thumb_distance, then largest dHash distance). Each group shows its products'
thumbnails side by side with their ids, and its pairs with the signal that matched (method),
distance and thumb_distance. Thumbnails are small JPEG files in ``thumbs/``.

The heavy work runs in Spark: the groups are joined with their pairs and with ``images/``, and
thumbnails are made by a pandas UDF on the executors. Groups are range-partitioned by page and
streamed to the driver with ``toLocalIterator``, so the driver holds about one page of groups
(thumbnails included) at a time, and writes that page before it pulls the next.
"""

from __future__ import annotations

import hashlib
import html
import io
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup.imaging import DecodeError, decode_image
from dedup.outputs import path_exists, read_json

THUMB_SIDE = 160  # pixels, the longer side of a report thumbnail


class ReportError(Exception):
    """The folder is not a job output the report can read."""


def preview_jpeg(data: bytes | None, side: int = THUMB_SIDE, max_pixels: int = 50_000_000) -> bytes | None:
    """A small JPEG of the image (longer side ``side``), or None when it does not decode.

    >>> from dedup.synth import jpeg_bytes, product_image
    >>> from PIL import Image
    >>> Image.open(io.BytesIO(preview_jpeg(jpeg_bytes(product_image(3)), side=64))).size
    (64, 64)
    >>> preview_jpeg(b"not an image") is None
    True
    """
    if not data:
        return None
    try:
        image = decode_image(data, max_pixels=max_pixels, draft_size=side)
    except DecodeError:
        return None
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def preview_udf(side: int):
    """A pandas UDF: image bytes in, :func:`preview_jpeg` out."""

    @F.pandas_udf(T.BinaryType())
    def previews(images: pd.Series) -> pd.Series:
        return pd.Series([preview_jpeg(data, side) for data in images], index=images.index, dtype=object)

    return previews


def group_table(
    spark: SparkSession, out_dir: str, side: int, max_members: int, max_pairs: int
) -> tuple[DataFrame, DataFrame]:
    """One row per group: its sort keys, scores, members (with thumbnails) and pairs; and the
    sort keys alone (group_id, group_size, max_thumb_distance, max_distance), which make no
    thumbnails."""
    for table in ("groups", "pairs", "images"):
        if not path_exists(spark, f"{out_dir}/{table}"):
            raise ReportError(f"not a job output: {out_dir}/{table} does not exist")
    members = spark.read.parquet(f"{out_dir}/groups").select("productId", "group_id", "group_size", "oversized")
    side_a = members.select(F.col("productId").alias("a"), F.col("group_id"))
    side_b = members.select(F.col("productId").alias("b"), F.col("group_id").alias("group_b"))
    pairs = (
        spark.read.parquet(f"{out_dir}/pairs")
        .join(side_a, "a")
        .join(side_b, "b")
        .where(F.col("group_id") == F.col("group_b"))  # a split oversized component leaves edges between groups
    )
    pair = F.struct(
        (-F.col("thumb_distance")).alias("k1"), (-F.col("distance")).alias("k2"),  # least certain first
        "a", "b", "method", "distance", "thumb_distance", "flipped",
    )  # fmt: skip
    scores = pairs.groupBy("group_id").agg(
        F.count("*").alias("n_pairs"),
        F.max("distance").alias("max_distance"),
        F.max("thumb_distance").alias("max_thumb_distance"),
        F.array_sort(F.collect_set("method")).alias("methods"),
        F.slice(F.array_sort(F.collect_list(pair)), 1, max_pairs).alias("pairs"),
    )

    images = spark.read.parquet(f"{out_dir}/images").where(F.col("fetch_status") == "ok")
    latest = Window.partitionBy("productId").orderBy(F.desc("fetched_at"))
    thumbs = (
        images.join(members.select("productId"), "productId", "left_semi")
        .select("productId", "image_url", "fetched_at", preview_udf(side)("image_bytes").alias("thumb"))
        .withColumn("_n", F.row_number().over(latest))
        .where("_n = 1")
        .drop("_n", "fetched_at")
    )
    member = F.struct("productId", "image_url", "thumb")
    shown = (
        members.join(thumbs, "productId", "left")
        .groupBy("group_id", "group_size", "oversized")
        .agg(F.slice(F.array_sort(F.collect_list(member)), 1, max_members).alias("members"))
    )
    keys = (
        members.select("group_id", "group_size")
        .distinct()
        .join(scores.select("group_id", "max_thumb_distance", "max_distance"), "group_id", "left")
    )
    return shown.join(scores, "group_id", "left"), keys


def ordered_groups(groups: DataFrame, keys: DataFrame, per_page: int) -> tuple[DataFrame, list[Row]]:
    """Groups with ``rank`` and ``page``, range-partitioned about one page a partition (an
    explicit partition count, which adaptive execution leaves alone); and one summary row per
    page (collected: a few numbers per page)."""
    order = Window.orderBy(
        F.desc("group_size"), F.desc_nulls_last("max_thumb_distance"), F.desc_nulls_last("max_distance"), "group_id"
    )
    ranks = (
        keys.withColumn("rank", F.row_number().over(order))  # a few small columns through one partition
        .withColumn("page", F.floor((F.col("rank") - 1) / per_page).cast("int") + 1)
        .select("group_id", "rank", "page")
    )
    ranks = ranks.localCheckpoint(eager=True)
    pages = (
        ranks.join(keys, "group_id")
        .groupBy("page")
        .agg(F.min("rank").alias("first"), F.max("rank").alias("last"), F.max("group_size").alias("largest"),
             F.min("group_size").alias("smallest"))
        .orderBy("page")
        .collect()
    )  # fmt: skip
    ranked = groups.join(ranks, "group_id")
    ranked = ranked.repartitionByRange(max(1, len(pages)), "page").sortWithinPartitions("rank")
    return ranked, pages


def thumb_name(product_id: str) -> str:
    """The thumbnail's file name: a hash, since product ids may hold characters a URL would misread."""
    return hashlib.sha1(product_id.encode()).hexdigest()[:20] + ".jpg"


def page_name(page: int) -> str:
    return f"page-{page:04d}.html"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
nav a, nav span { margin-right: 1em; }
section.group { border-top: 1px solid #ccc; padding: 0.6em 0; }
section.group h2 { font-size: 1.05em; margin: 0.3em 0; }
.oversized { color: #b00; font-weight: bold; }
.thumbs { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 168px; text-align: center; }
figure img { max-width: 160px; max-height: 160px; border: 1px solid #ddd; }
figure img.broken { border: 2px solid #b00; }
figcaption { font: 12px monospace; word-break: break-all; }
.noimg { width: 160px; height: 160px; background: #eee; line-height: 160px; color: #888; }
table.pairs { border-collapse: collapse; font-size: 13px; margin-top: 0.4em; }
table.pairs td, table.pairs th { border: 1px solid #ddd; padding: 2px 6px; }
"""
# Marks thumbnails that did not load, and counts them on <body> (a browser test reads the counts).
_CHECK_IMAGES = """
window.addEventListener("load", () => {
  let loaded = 0, broken = 0;
  document.querySelectorAll("img").forEach((img) => {
    if (img.complete && img.naturalWidth > 0) loaded++; else { broken++; img.classList.add("broken"); }
  });
  document.body.dataset.imagesLoaded = loaded;
  document.body.dataset.imagesBroken = broken;
});
"""


def _document(title: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            f"<script>{_CHECK_IMAGES}</script>",
            "</head><body>",
            *body,
            "</body></html>",
        ]
    )


def _nav(page: int, n_pages: int) -> str:
    links = ['<a href="../index.html" rel="index">index</a>']
    if page > 1:
        links.append(f'<a href="{page_name(page - 1)}" rel="prev">&larr; previous</a>')
    links.append(f"<span>page {page} of {n_pages}</span>")
    if page < n_pages:
        links.append(f'<a href="{page_name(page + 1)}" rel="next">next &rarr;</a>')
    return f"<nav>{''.join(links)}</nav>"


def _number(value: Any, digits: int = 4) -> str:
    return "&ndash;" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _group_html(group: Row, thumbs_dir: Path) -> str:
    e = html.escape
    gid = group["group_id"]
    badge = ' <span class="oversized">oversized</span>' if group["oversized"] else ""
    methods = ", ".join(group["methods"] or [])
    parts = [
        f'<section class="group" id="group-{group["rank"]}" data-group-id="{e(gid)}" '
        f'data-size="{group["group_size"]}">',
        f"<h2>#{group['rank']} &middot; group {e(gid)} &middot; {group['group_size']} products{badge}</h2>",
        f'<p class="scores">matched by: <b>{e(methods)}</b> &middot; {group["n_pairs"] or 0} pairs &middot; '
        f"max distance {_number(group['max_distance'])} &middot; "
        f"max thumb_distance {_number(group['max_thumb_distance'])}</p>",
        '<div class="thumbs">',
    ]
    for member in group["members"]:
        pid = member["productId"]
        if member["thumb"]:
            name = thumb_name(pid)
            (thumbs_dir / name).write_bytes(member["thumb"])
            picture = f'<img src="../thumbs/{name}" alt="{e(pid)}" title="{e(member["image_url"] or "")}">'
        else:
            picture = '<div class="noimg">no image</div>'
        parts.append(f'<figure data-product-id="{e(pid)}">{picture}<figcaption>{e(pid)}</figcaption></figure>')
    parts.append("</div>")
    if group["group_size"] > len(group["members"]):
        parts.append(f"<p>{group['group_size'] - len(group['members'])} more products not shown</p>")
    parts.append(
        '<table class="pairs"><tr><th>a</th><th>b</th><th>method</th><th>distance</th>'
        "<th>thumb_distance</th><th>flipped</th></tr>"
    )
    for p in group["pairs"] or []:
        parts.append(
            f"<tr><td>{e(p['a'])}</td><td>{e(p['b'])}</td><td>{e(p['method'])}</td><td>{p['distance']}</td>"
            f"<td>{_number(p['thumb_distance'])}</td><td>{'yes' if p['flipped'] else ''}</td></tr>"
        )
    parts.append("</table>")
    if (group["n_pairs"] or 0) > len(group["pairs"] or []):
        parts.append(f"<p>{group['n_pairs'] - len(group['pairs'])} more pairs not shown</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _write_page(dest: Path, page: int, n_pages: int, n_groups: int, groups: list[Row]) -> None:
    first, last = groups[0]["rank"], groups[-1]["rank"]
    nav = _nav(page, n_pages)
    body = [nav, f"<h1>Groups {first}&ndash;{last} of {n_groups}</h1>"]
    body += [_group_html(group, dest / "thumbs") for group in groups]
    body.append(nav)
    (dest / "pages" / page_name(page)).write_text(_document(f"dedup report: page {page}", body), encoding="utf-8")


def _write_index(dest: Path, out_dir: str, totals: dict[str, Any], pages: list[Row], manifest: dict) -> None:
    e = html.escape
    n_pages = len(pages)
    body = [
        "<h1>Duplicate groups</h1>",
        f"<p>Output <code>{e(out_dir)}</code>{', run finished ' + e(manifest['finished_at']) if manifest else ''}.</p>",
        f'<p id="totals" data-groups="{totals["groups"]}" data-pages="{n_pages}">'
        f"{totals['groups']} groups, {totals['products']} products in groups, "
        f"{totals['oversized']} oversized groups; pairs by method: "
        f"{e(', '.join(f'{k} {v}' for k, v in sorted(totals['pairs_by_method'].items())) or 'none')}.</p>",
        "<p>Largest groups first; among groups of one size, the least certain first "
        "(largest thumb_distance, then largest dHash distance).</p>",
    ]
    if pages:
        body.append(f'<nav><a href="pages/{page_name(1)}" rel="next">first page &rarr;</a></nav>')
    body.append('<ol class="pages">')
    for p in pages:
        body.append(
            f'<li><a href="pages/{page_name(p["page"])}">page {p["page"]}</a>: groups {p["first"]}&ndash;'
            f"{p['last']}, {p['largest']}&ndash;{p['smallest']} products each</li>"
        )
    body.append("</ol>")
    (dest / "index.html").write_text(_document("dedup report", body), encoding="utf-8")


def write_report(
    spark: SparkSession,
    out_dir: str,
    dest: str | Path,
    per_page: int = 50,
    side: int = THUMB_SIDE,
    max_members: int = 40,
    max_pairs: int = 50,
) -> dict[str, Any]:
    """Write the report of the job output ``out_dir`` into the local folder ``dest`` (replaced)."""
    if per_page < 1:
        raise ReportError("per_page must be at least 1")
    groups, keys = group_table(spark, out_dir, side, max_members, max_pairs)
    ranked, pages = ordered_groups(groups, keys, per_page)
    members = spark.read.parquet(f"{out_dir}/groups")
    pairs = spark.read.parquet(f"{out_dir}/pairs")
    totals = {
        "groups": pages[-1]["last"] if pages else 0,
        "products": members.count(),
        "oversized": members.where("oversized").select("group_id").distinct().count(),
        "pairs_by_method": {r["method"]: r["count"] for r in pairs.groupBy("method").count().collect()},
    }
    manifest = read_json(spark, f"{out_dir}/manifest.json") or {}

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "pages").mkdir(parents=True)
    (dest / "thumbs").mkdir()
    n_pages, batch, written = len(pages), [], 0
    for group in ranked.toLocalIterator(prefetchPartitions=False):
        if batch and group["page"] != batch[0]["page"]:
            _write_page(dest, batch[0]["page"], n_pages, totals["groups"], batch)
            written += 1
            batch = []
        batch.append(group)
    if batch:
        _write_page(dest, batch[0]["page"], n_pages, totals["groups"], batch)
        written += 1
    _write_index(dest, out_dir, totals, pages, manifest)
    return {**totals, "pages": written, "per_page": per_page, "thumbnails": len(list((dest / "thumbs").iterdir()))}
