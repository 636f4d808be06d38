"""Report: a static HTML report of a job output's duplicate groups (``dedup report``).

``index.html`` (totals, counts by signal and certainty, one line per page) and
``pages/page-0001.html``... with ``per_page`` groups each, largest groups first and, among groups
of one size, the least certain first. Each group shows its listings in keep order (thumbnail,
productId, title, seller, price, stock, seller ratings and the keep/drop suggestion of
``groups/``) and each pair with the evidence that decided it: the method, the cosine, the photo
check's inliers, inlier ratio, structure, tile agreement and colour change, the dHash and
thumbnail distances. Each check's cell is coloured by how clearly it passed.

Certainty (:func:`certainty_columns`): a pair's ``margin`` is the smallest room any check of its
method left to its threshold, as a share of the check's range (0: at the threshold, 1: as far
from it as the check goes). A group is ``certain`` when every pair is byte-identical, else
``borderline`` when a pair's margin is below :data:`BORDERLINE_MARGIN`, else ``clear``. Groups can
be filtered by signal (the methods of its pairs) and certainty: on each page (the form at the top,
or ``page-0001.html#signal=photo&certainty=borderline``), and for the whole report with
``dedup report --signal ... --certainty ...``.

The heavy work runs in Spark: the groups are joined with their pairs and with ``images/``, and
thumbnails are made by a pandas UDF on the executors. Groups are range-partitioned by page and
streamed to the driver with ``toLocalIterator``, so the driver holds about one page of groups
(thumbnails included) at a time, and writes that page before it pulls the next.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup import photomatch
from dedup.config import job_settings_of
from dedup.imaging import DecodeError, decode_image
from dedup.outputs import path_exists, read_json
from dedup.photomatch import PhotoRule
from dedup.settings import typed

THUMB_SIDE = 160  # pixels, the longer side of a report thumbnail


class ReportError(Exception):
    """The folder is not a job output the report can read."""


def preview_jpeg(data: bytes | None, side: int = THUMB_SIDE, max_pixels: int = 50_000_000) -> bytes | None:
    """A small JPEG of the image (longer side ``side``), or None when it does not decode.

    >>> from dedup.devkit.synth import jpeg_bytes, product_image
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


BORDERLINE_MARGIN = 0.25  # a pair whose closest check is within this share of its range of the threshold
SIGNALS = ("exact", "photo", "dhash", "cosine")
CERTAINTIES = ("certain", "clear", "borderline")
EVIDENCE = ("cosine", "inliers", "inlier_ratio", "structure", "tile_agreement", "colour_change", "distance",
            "thumb_distance")  # fmt: skip
LISTING_FIELDS = ("title", "seller", "price", "in_stock", "seller_ratings", "keep", "rank")
COMPARED = {"images": "images", "a": "a's framed photo", "b": "b's framed photo", "both": "framed photos"}
"""How a photo pair's comparison that kept it reads in the table (:meth:`PhotoRule.deciding`)."""


def _column(frame: DataFrame, name: str, kind: str) -> Column:
    """``frame[name]``, or a typed null where an output from an older version lacks it."""
    return F.col(name) if name in frame.columns else F.lit(None).cast(kind)


def _photo_column(frame: DataFrame) -> Column:
    """``frame.photo`` with every :data:`dedup.photomatch.SCORE_FIELDS` field, null where an output
    from an older version lacks one (``sharpness_gap`` before issue 14 phase 8, the framed photo's
    ``region_*`` view before phase 9)."""
    if "photo" not in frame.columns:
        return F.lit(None).cast(photomatch.SCORES_SCHEMA)
    photo, recorded = F.col("photo"), set(frame.schema["photo"].dataType.names)
    fields = [(photo[name] if name in recorded else F.lit(None)).cast(kind).alias(name)
              for name, kind in photomatch.SCORE_FIELDS]  # fmt: skip
    return F.when(photo.isNotNull(), F.struct(*fields))


def check_margins(
    photo_rule: PhotoRule, max_distance: int, max_thumb_distance: float, min_cosine: float | None
) -> dict[str, list[tuple[str, Column]]]:
    """Per method: (check, margin) of each check that decided it, 0 at the threshold and 1 as far
    from it as the check goes; the pair's columns as in ``pairs/``. ``photo_rule``: the run's
    photo check (its bounds, in their order); ``max_distance`` and ``max_thumb_distance``: its
    hash rule; ``min_cosine``: its deciding cosine (its manifest's; 0.9 where it recorded none)."""
    photo = F.col("photo")
    score = photomatch.column_reader(photo)

    def above(value: Column, threshold: float | Column, top: float = 1.0) -> Column:
        threshold = threshold if isinstance(threshold, Column) else F.lit(threshold)
        return (value - threshold) / F.greatest(F.lit(top) - threshold, F.lit(1e-9))

    def below(value: Column, threshold: float | Column) -> Column:
        threshold = threshold if isinstance(threshold, Column) else F.lit(max(threshold, 1e-9))
        return F.lit(1.0) - value / threshold

    def held_to(field: str, least: float) -> float | Column:
        """The least ``field`` a pair is held to: the tiles' 0 where the rule waives them, a blurred
        copy's fit its band's bounds, else ``least``. The band is read on the gap alone: with its
        ratio under the sharp one (as at the defaults), every kept pair has at least its ratio, so
        the band's inliers need no test of the ratio as :meth:`PhotoRule._bounds` makes."""
        if field == "tile_agreement":  # no tiles read where the structure and the colours agree all but exactly
            return F.when(photo_rule.tiles_waived(score), F.lit(0.0)).otherwise(F.lit(least))
        ratio, gap, inliers = photo_rule.blurred
        blurred = {"inlier_ratio": ratio, "inliers": inliers}.get(field, least)
        if blurred >= least:
            return least
        return F.when(F.coalesce(photo["sharpness_gap"] >= gap, F.lit(False)), F.lit(blurred)).otherwise(F.lit(least))

    def colour_held_to(most: float) -> float | Column:  # a blurred copy's strong fit: the blurred colour bound
        colour = photo_rule.blurred_colour[0]
        if colour <= most:
            return most
        return F.when(photo_rule.colour_band(score), F.lit(colour)).otherwise(F.lit(most))

    # an inlier count has no top: 3x its least is as clear as it gets; the other scores are shares
    return {
        "photo": [
            (field, above(photo[field].cast("double"), held_to(field, least), 3 * least if field == "inliers" else 1.0))
            for field, least in photo_rule.at_least
        ]
        + [(field, below(photo[field], colour_held_to(most))) for field, most in photo_rule.at_most],
        "dhash": [
            ("distance", F.lit(1.0) - F.col("distance").cast("double") / F.lit(float(max_distance) + 1)),
            ("thumb_distance", below(F.col("thumb_distance"), max_thumb_distance)),
        ],
        "cosine": [("cosine", above(F.col("cosine"), float(min_cosine or 0.9)))],
    }


def certainty_columns(pairs: DataFrame, checks: dict[str, list[tuple[str, Column]]]) -> DataFrame:
    """``pairs`` with ``margins`` (a struct: each check's margin of :func:`check_margins`, clipped
    to [0, 1], null for the checks that did not decide the pair) and ``margin`` (the smallest; 1
    for byte-identical pairs)."""
    fields = []
    for name in EVIDENCE:
        value = F.lit(None).cast("double")
        for method, items in checks.items():
            for check, margin in items:
                if check == name:
                    clipped = F.least(F.greatest(F.coalesce(margin, F.lit(0.0)), F.lit(0.0)), F.lit(1.0))
                    value = F.when(F.col("method") == method, clipped).otherwise(value)
        fields.append(value.alias(name))
    with_margins = pairs.withColumn("margins", F.struct(*fields))
    smallest = F.least(*[F.col(f"margins.{name}") for name in EVIDENCE])
    return with_margins.withColumn(
        "margin", F.when(F.col("method") == "exact", 1.0).otherwise(F.coalesce(smallest, F.lit(0.0)))
    )


def group_table(
    spark: SparkSession,
    out_dir: str,
    side: int,
    max_members: int,
    max_pairs: int,
    checks: dict[str, list[tuple[str, Column]]],
    photo_rule: PhotoRule,
) -> tuple[DataFrame, DataFrame]:
    """One row per group: its sort keys, certainty, members (with listing data and thumbnails) and
    pairs (with their evidence: a photo pair's scores are those of the comparison that kept it,
    the images' or a framed photo's, :meth:`dedup.photomatch.PhotoRule.deciding`); and the sort
    keys alone (group_id, group_size, min_margin, methods, certainty), which make no thumbnails."""
    for table in ("groups", "pairs", "images"):
        if not path_exists(spark, f"{out_dir}/{table}"):
            raise ReportError(f"not a job output: {out_dir}/{table} does not exist")
    groups = spark.read.parquet(f"{out_dir}/groups")
    kinds = {"title": "string", "seller": "string", "price": "double", "in_stock": "boolean",
             "seller_ratings": "long", "keep": "boolean", "rank": "int"}  # fmt: skip
    members = groups.select(
        "productId",
        "group_id",
        "group_size",
        "oversized",
        *(_column(groups, c, kinds[c]).alias(c) for c in LISTING_FIELDS),
    )
    side_a = members.select(F.col("productId").alias("a"), F.col("group_id"))
    side_b = members.select(F.col("productId").alias("b"), F.col("group_id").alias("group_b"))
    raw = spark.read.parquet(f"{out_dir}/pairs")
    raw = raw.select("a", "b", "method", "distance", "flipped", "thumb_distance",
                     _column(raw, "cosine", "double").alias("cosine"),
                     _photo_column(raw).alias("photo"))  # fmt: skip
    view, shown = photo_rule.deciding(F.col("photo"))
    raw = raw.withColumn("compared", F.when(F.col("method") == "photo", view)).withColumn("photo", shown)
    pairs = (
        certainty_columns(raw, checks)
        .join(side_a, "a")
        .join(side_b, "b")
        # a re-split oversized component, or a cut bridge (dedup/bridges.py), leaves edges between groups
        .where(F.col("group_id") == F.col("group_b"))
    )
    photo = F.col("photo")
    pair = F.struct(
        F.col("margin").alias("k1"), "a", "b", "method", "compared", "cosine",
        photo["inliers"].alias("inliers"), photo["inlier_ratio"].alias("inlier_ratio"),
        photo["structure"].alias("structure"), photo["tile_agreement"].alias("tile_agreement"),
        photo["colour_change"].alias("colour_change"),
        "distance", "thumb_distance", "flipped", "margin", "margins",
    )  # fmt: skip
    scores = pairs.groupBy("group_id").agg(
        F.count("*").alias("n_pairs"),
        F.min("margin").alias("min_margin"),
        F.max("distance").alias("max_distance"),
        F.array_sort(F.collect_set("method")).alias("methods"),
        F.slice(F.array_sort(F.collect_list(pair)), 1, max_pairs).alias("pairs"),
    )
    certainty = (
        F.when(F.array_remove("methods", "exact") == F.array().cast("array<string>"), "certain")
        .when(F.col("min_margin") < BORDERLINE_MARGIN, "borderline")
        .otherwise("clear")
    )
    scores = scores.withColumn("certainty", certainty)

    images = spark.read.parquet(f"{out_dir}/images").where(F.col("fetch_status") == "ok")
    latest = Window.partitionBy("productId").orderBy(F.desc("fetched_at"))
    thumbs = (
        images.join(members.select("productId"), "productId", "left_semi")
        .select("productId", "image_url", "fetched_at", preview_udf(side)("image_bytes").alias("thumb"))
        .withColumn("_n", F.row_number().over(latest))
        .where("_n = 1")
        .drop("_n", "fetched_at")
    )
    order = F.coalesce(F.col("rank"), F.lit(1 << 30))
    member = F.struct(order.alias("k"), "productId", "image_url", "thumb", *LISTING_FIELDS)
    shown = (
        members.join(thumbs, "productId", "left")
        .groupBy("group_id", "group_size", "oversized")
        .agg(F.slice(F.array_sort(F.collect_list(member)), 1, max_members).alias("members"))
    )
    keys = (
        members.select("group_id", "group_size")
        .distinct()
        .join(scores.select("group_id", "min_margin", "max_distance", "methods", "certainty"), "group_id", "left")
    )
    return shown.join(scores.drop("min_margin", "max_distance", "methods", "certainty"), "group_id", "left"), keys


def filtered_keys(keys: DataFrame, signals: list[str] | None, certainties: list[str] | None) -> DataFrame:
    """The groups matched by one of ``signals`` (any of its pairs' methods) and of one of ``certainties``."""
    if signals:
        keys = keys.where(F.arrays_overlap("methods", F.array(*[F.lit(s) for s in signals])))
    if certainties:
        keys = keys.where(F.col("certainty").isin(list(certainties)))
    return keys


def ordered_groups(groups: DataFrame, keys: DataFrame, per_page: int) -> tuple[DataFrame, list[Row]]:
    """Groups with ``rank`` and ``page``, range-partitioned about one page a partition (an
    explicit partition count, which adaptive execution leaves alone); and one summary row per
    page (collected: a few numbers per page)."""
    order = Window.orderBy(
        F.desc("group_size"), F.asc_nulls_last("min_margin"), F.desc_nulls_last("max_distance"), "group_id"
    )
    ranks = (
        keys.withColumn("rank", F.row_number().over(order))  # a few small columns through one partition
        .withColumn("page", F.floor((F.col("rank") - 1) / per_page).cast("int") + 1)
        .select("group_id", "rank", "page", "methods", "certainty")
    )
    ranks = ranks.localCheckpoint(eager=True)
    pages = (
        ranks.join(keys.select("group_id", "group_size"), "group_id")
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
form.filters { margin: 0.6em 0; padding: 0.4em 0.6em; background: #f4f4f4; font-size: 14px; }
form.filters label { margin-right: 0.8em; }
section.group { border-top: 1px solid #ccc; padding: 0.6em 0; }
section.group[hidden] { display: none; }
section.group h2 { font-size: 1.05em; margin: 0.3em 0; }
.badge { padding: 1px 6px; border-radius: 3px; font-size: 12px; color: #fff; }
.badge.certain { background: #2e7d32; } .badge.clear { background: #1565c0; } .badge.borderline { background: #e65100; }
.oversized { color: #b00; font-weight: bold; }
.thumbs { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 176px; font-size: 12px; border: 1px solid #ddd; padding: 4px; }
figure.keep { border: 3px solid #2e7d32; } figure.drop { opacity: 0.85; }
figure img { display: block; margin: 0 auto; border: 1px solid #ddd; }
figure img.broken { border: 2px solid #b00; }
figcaption .pid { font: 11px monospace; word-break: break-all; }
figcaption .decision { font-weight: bold; }
figure.keep .decision { color: #2e7d32; } figure.drop .decision { color: #b00; }
.noimg { width: 160px; height: 160px; background: #eee; line-height: 160px; color: #888; text-align: center; }
table.pairs { border-collapse: collapse; font-size: 12px; margin-top: 0.4em; }
table.pairs td, table.pairs th { border: 1px solid #ccc; padding: 2px 5px; text-align: right; }
table.pairs th { background: #e8e8e8; }
td.pass { background: #c8e6c9; } td.near { background: #ffcc80; }
"""
# Marks thumbnails that did not load and counts them on <body> (a browser test reads the counts);
# shows only the groups the filter form (or the page's #signal=...&certainty=... hash) asks for.
_SCRIPT = """
function applyFilters() {
  const form = document.querySelector("form.filters");
  if (!form) return;
  const signals = [...form.querySelectorAll("input[name=signal]:checked")].map((i) => i.value);
  const certainties = [...form.querySelectorAll("input[name=certainty]:checked")].map((i) => i.value);
  let shown = 0;
  document.querySelectorAll("section.group").forEach((group) => {
    const methods = group.dataset.methods.split(" ");
    const show = methods.some((m) => signals.includes(m)) && certainties.includes(group.dataset.certainty);
    group.hidden = !show;
    if (show) shown++;
  });
  document.body.dataset.groupsShown = shown;
}
window.addEventListener("load", () => {
  let loaded = 0, broken = 0;
  document.querySelectorAll("img").forEach((img) => {
    if (img.complete && img.naturalWidth > 0) loaded++; else { broken++; img.classList.add("broken"); }
  });
  document.body.dataset.imagesLoaded = loaded;
  document.body.dataset.imagesBroken = broken;
  const wanted = new URLSearchParams(location.hash.slice(1));
  const form = document.querySelector("form.filters");
  if (form) {
    for (const name of ["signal", "certainty"]) {
      if (!wanted.has(name)) continue;
      const values = wanted.get(name).split(",");
      form.querySelectorAll(`input[name=${name}]`).forEach((i) => { i.checked = values.includes(i.value); });
    }
    form.addEventListener("change", applyFilters);
  }
  applyFilters();
});
"""


def _document(title: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            f"<script>{_SCRIPT}</script>",
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


def _filter_form() -> str:
    boxes = [f'<label><input type="checkbox" name="signal" value="{s}" checked> {s}</label>' for s in SIGNALS]
    boxes.append("&nbsp;|&nbsp; certainty:")
    boxes += [f'<label><input type="checkbox" name="certainty" value="{c}" checked> {c}</label>' for c in CERTAINTIES]
    return f'<form class="filters">signal: {"".join(boxes)}</form>'


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _evidence_cell(value: Any, check: str, margins: dict[str, float] | None, digits: int = 3) -> str:
    """A table cell of one check's value, coloured when the check decided the pair: green when it
    passed clearly, orange when near its threshold."""
    margin = (margins or {}).get(check)
    css = "" if margin is None else (' class="near"' if margin < BORDERLINE_MARGIN else ' class="pass"')
    return f'<td data-check="{check}"{css}>{_number(value, digits)}</td>'


def _listing_html(member: Row, oversized: bool, thumbs_dir: Path) -> str:
    e = html.escape
    pid = member["productId"]
    if member["thumb"]:
        name = thumb_name(pid)
        (thumbs_dir / name).write_bytes(member["thumb"])
        picture = f'<img src="../thumbs/{name}" alt="{e(pid)}" title="{e(member["image_url"] or "")}">'
    else:
        picture = '<div class="noimg">no image</div>'
    decision = "review" if oversized or member["keep"] is None else ("keep" if member["keep"] else "drop")
    stock = {True: "in stock", False: "out of stock", None: "stock not given"}[member["in_stock"]]
    price = _number(member["price"], 2) if member["price"] is not None else "no price"
    ratings = f"{member['seller_ratings']} ratings" if member["seller_ratings"] is not None else "no ratings"
    return (
        f'<figure class="{decision}" data-product-id="{e(pid)}" data-decision="{decision}">{picture}<figcaption>'
        f'<div class="pid">{e(pid)}</div><div class="decision">{decision}'
        f"{'' if member['rank'] is None else ' (#' + str(member['rank']) + ')'}</div>"
        f'<div class="title">{e(member["title"] or "(no title)")}</div>'
        f'<div class="seller">{e(member["seller"] or "(no seller)")}, {e(ratings)}</div>'
        f'<div class="price">{price} &middot; {stock}</div></figcaption></figure>'
    )


def _group_html(group: Row, thumbs_dir: Path) -> str:
    e = html.escape
    gid = group["group_id"]
    badge = ' <span class="oversized">oversized</span>' if group["oversized"] else ""
    methods = group["methods"] or []
    certainty = group["certainty"] or "borderline"
    parts = [
        f'<section class="group" id="group-{group["rank"]}" data-group-id="{e(gid)}" '
        f'data-size="{group["group_size"]}" data-methods="{e(" ".join(methods))}" data-certainty="{certainty}">',
        f"<h2>#{group['rank']} &middot; group {e(gid)} &middot; {group['group_size']} listings{badge} "
        f'<span class="badge {certainty}">{certainty}</span></h2>',
        f'<p class="scores">matched by: <b>{e(", ".join(methods))}</b> &middot; {group["n_pairs"] or 0} pairs</p>',
        '<div class="thumbs">',
    ]
    parts += [_listing_html(member, group["oversized"], thumbs_dir) for member in group["members"]]
    parts.append("</div>")
    if group["group_size"] > len(group["members"]):
        parts.append(f"<p>{group['group_size'] - len(group['members'])} more listings not shown</p>")
    parts.append(
        '<table class="pairs"><tr><th>a</th><th>b</th><th>method</th><th>compared</th><th>cosine</th><th>inliers</th>'
        "<th>inlier ratio</th><th>structure</th><th>tiles</th><th>colour change</th><th>dHash distance</th>"
        "<th>thumb distance</th><th>flipped</th><th>margin</th></tr>"
    )
    for p in group["pairs"] or []:
        m = p["margins"].asDict() if p["margins"] else {}
        cells = "".join(_evidence_cell(p[check], check, m, 4 if check == "thumb_distance" else 3) for check in EVIDENCE)
        parts.append(
            f'<tr class="pair" data-method="{e(p["method"])}"><td>{e(p["a"])}</td><td>{e(p["b"])}</td>'
            f"<td>{e(p['method'])}</td><td>{e(COMPARED.get(p['compared'], ''))}</td>{cells}"
            f"<td>{'yes' if p['flipped'] else ''}</td>"
            f"<td>{_number(p['margin'], 2)}</td></tr>"
        )
    parts.append("</table>")
    if (group["n_pairs"] or 0) > len(group["pairs"] or []):
        parts.append(f"<p>{group['n_pairs'] - len(group['pairs'])} more pairs not shown</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _write_page(dest: Path, page: int, n_pages: int, n_groups: int, groups: list[Row]) -> None:
    first, last = groups[0]["rank"], groups[-1]["rank"]
    nav = _nav(page, n_pages)
    body = [nav, f"<h1>Groups {first}&ndash;{last} of {n_groups}</h1>", _filter_form()]
    body += [_group_html(group, dest / "thumbs") for group in groups]
    body.append(nav)
    (dest / "pages" / page_name(page)).write_text(_document(f"dedup report: page {page}", body), encoding="utf-8")


def _write_index(dest: Path, out_dir: str, totals: dict[str, Any], pages: list[Row], manifest: dict) -> None:
    e = html.escape
    n_pages = len(pages)
    chosen = totals["filters"]
    body = [
        "<h1>Duplicate groups</h1>",
        f"<p>Output <code>{e(out_dir)}</code>{', run finished ' + e(manifest['finished_at']) if manifest else ''}.</p>",
        f'<p id="totals" data-groups="{totals["groups"]}" data-pages="{n_pages}">'
        f"{totals['groups']} groups, {totals['products']} products in groups, "
        f"{totals['oversized']} oversized groups; pairs by method: "
        f"{e(', '.join(f'{k} {v}' for k, v in sorted(totals['pairs_by_method'].items())) or 'none')}.</p>",
        f'<p id="by-certainty">groups by certainty: '
        f"{e(', '.join(f'{k} {v}' for k, v in totals['groups_by_certainty'].items()) or 'none')}; "
        f"by signal: {e(', '.join(f'{k} {v}' for k, v in totals['groups_by_signal'].items()) or 'none')}.</p>",
    ]
    if chosen["signal"] or chosen["certainty"]:
        body.append(f'<p id="filters">Only groups matched by {e(", ".join(chosen["signal"] or SIGNALS))} '
                    f"that are {e(', '.join(chosen['certainty'] or CERTAINTIES))}.</p>")  # fmt: skip
    body.append(
        "<p>Largest groups first; among groups of one size, the least certain first. A pair's margin is the "
        "smallest room any of its checks left to its threshold (0 at the threshold, 1 far from it); "
        f"borderline: below {BORDERLINE_MARGIN}. Each listing says keep or drop by the run's keep rule.</p>"
    )
    if pages:
        body.append(f'<nav><a href="pages/{page_name(1)}" rel="next">first page &rarr;</a></nav>')
    body.append('<ol class="pages">')
    for p in pages:
        body.append(
            f'<li><a href="pages/{page_name(p["page"])}">page {p["page"]}</a>: groups {p["first"]}&ndash;'
            f"{p['last']}, {p['largest']}&ndash;{p['smallest']} listings each</li>"
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
    signals: list[str] | None = None,
    certainties: list[str] | None = None,
) -> dict[str, Any]:
    """Write the report of the job output ``out_dir`` into the local folder ``dest`` (replaced);
    ``signals`` and ``certainties`` keep only the groups they match."""
    if per_page < 1:
        raise ReportError("per_page must be at least 1")
    for name, values, known in (("signal", signals, SIGNALS), ("certainty", certainties, CERTAINTIES)):
        unknown = sorted(set(values or []) - set(known))
        if unknown:
            raise ReportError(f"unknown {name} {', '.join(unknown)} (known: {', '.join(known)})")
    manifest = read_json(spark, f"{out_dir}/manifest.json") or {}
    settings = typed(job_settings_of(manifest.get("config", {})))
    embedding = manifest.get("embedding") or {}
    checks = check_margins(
        PhotoRule.of(settings.verify), settings.hash.max_distance, settings.verify.max_thumb_distance,
        embedding.get("min_cosine"),
    )  # fmt: skip
    groups, keys = group_table(spark, out_dir, side, max_members, max_pairs, checks, PhotoRule.of(settings.verify))
    keys = keys.persist()
    by_certainty = {r["certainty"]: r["count"] for r in keys.groupBy("certainty").count().collect()}
    by_signal = {
        r["s"]: r["count"] for r in keys.select(F.explode("methods").alias("s")).groupBy("s").count().collect()
    }
    chosen = filtered_keys(keys, signals, certainties)
    ranked, pages = ordered_groups(groups, chosen, per_page)
    members = spark.read.parquet(f"{out_dir}/groups")
    pairs = spark.read.parquet(f"{out_dir}/pairs")
    totals = {
        "groups": pages[-1]["last"] if pages else 0,
        "products": members.count(),
        "oversized": members.where("oversized").select("group_id").distinct().count(),
        "pairs_by_method": {r["method"]: r["count"] for r in pairs.groupBy("method").count().collect()},
        "groups_by_certainty": {c: int(by_certainty.get(c, 0)) for c in CERTAINTIES},
        "groups_by_signal": {s: int(by_signal.get(s, 0)) for s in SIGNALS},
        "filters": {"signal": list(signals or []), "certainty": list(certainties or [])},
    }

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
    keys.unpersist()
    return {**totals, "pages": written, "per_page": per_page, "thumbnails": len(list((dest / "thumbs").iterdir()))}
