"""``dedup demo``: a small catalog with known duplicates, served on loopback, run in local mode.

It generates its own product pictures and duplicate variants (no downloads), adds dirty lines and
broken links the way real dumps have them, runs the whole job and prints pairwise precision and
recall of the groups against the truth it planted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps

from dedup.config import load_config
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.metrics import pair_scores
from dedup.devkit.synth import SyntheticCatalog, dump_line, jpeg_bytes, make_catalog, product_image, write_catalog_csv
from dedup.session import build_session
from jobs.dedup_job import run_job


def dirty_lines(base_url: str, some_row: dict[str, str]) -> list[str]:
    """Lines a real dump has: stray commas, text as productId, a repeat, missing and broken URLs."""
    pid = some_row["productId"]
    return [
        "BADLINE01,title with, stray, commas," + ",".join(["x"] * 40),
        dump_line('"Great product, buy now"', "a title", "desc", f"{base_url}/img/nothing.jpeg"),
        dump_line(pid, "repeated listing", "desc", some_row["imageUrlStr"]),
        dump_line("NOIMAGE000000001", "no image", "desc", ""),
        dump_line("FTPIMAGE00000001", "ftp image", "desc", "ftp://example.com/a-200x200-x.jpeg"),
        dump_line("DEADLINK00000001", "dead link", "desc", f"{base_url}/fault/status/404/a-200x200-x.jpeg"),
        dump_line("SOFT404000000001", "soft 404", "desc", f"{base_url}/fault/html/a-200x200-x.jpeg"),
        dump_line("SERVERERR0000001", "server error", "desc", f"{base_url}/fault/status/500/a-200x200-x.jpeg"),
    ]


def write_queries(catalog: SyntheticCatalog, folder: Path) -> list[Path]:
    """Images to try ``dedup query`` on: a cropped and a padded copy of a listing's photo (neither in
    the catalog), the photo itself, and a product that is not listed."""
    folder.mkdir(parents=True, exist_ok=True)
    row = next(r for r in catalog.rows if catalog.transforms[r["productId"]] == "original")
    url = next(u for u in row["imageUrlStr"].split(";") if "-200x200-" in u)
    photo = Image.open(io.BytesIO(catalog.images[url.split("/img/")[1]])).convert("RGB")
    pid = row["productId"]
    images = {
        f"{pid}-cropped.jpg": jpeg_bytes(photo.crop((16, 16, 208, 208)).resize((224, 224))),
        f"{pid}-padded.jpg": jpeg_bytes(ImageOps.expand(photo.resize((176, 176)), 24, fill=(255, 255, 255))),
        f"{pid}-listed.jpg": catalog.images[url.split("/img/")[1]],
        "not-listed.jpg": jpeg_bytes(product_image(987_654_321)),
    }
    for name, data in images.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in images]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dedup demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    parser.add_argument("--products", type=int, default=300, help="original products (default: 300)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    if os.path.exists(os.path.join(args.out, "demo_eval.json")):
        shutil.rmtree(args.out)  # an earlier demo's output: its images sit behind another port's URLs
    os.makedirs(args.out, exist_ok=True)
    with ImageServer({}) as server:
        catalog = make_catalog(args.products, duplicate_share=0.25, family_share=0.05, seed=args.seed,
                               base_url=server.base_url)  # fmt: skip
        server.images.update(catalog.images)
        catalog_path = os.path.join(args.out, "catalog.csv")
        write_catalog_csv(catalog.rows, catalog_path, dirty_lines(server.base_url, catalog.rows[0]))
        print(f"demo: {len(catalog.rows)} listings, {len(catalog.truth_groups)} planted duplicate groups, "
              f"served at {server.base_url}", file=sys.stderr)  # fmt: skip
        cfg = load_config(
            None,
            ["fetch.allowed_hosts=127.0.0.1", "fetch.max_attempts=2", "fetch.backoff_base_s=0.05", *args.overrides],
        )
        spark = build_session(cfg["spark"])
        try:
            manifest = run_job(spark, cfg, catalog_path, args.out)
            members = spark.read.parquet(f"{args.out}/groups").select("productId", "group_id").collect()
        finally:
            spark.stop()

    queries = write_queries(catalog, Path(args.out) / "queries")
    predicted = {row["productId"]: row["group_id"] for row in members}
    truth = {pid: index for index, group in enumerate(catalog.truth_groups) for pid in group}
    scores = pair_scores(predicted, truth)
    with open(os.path.join(args.out, "demo_eval.json"), "w") as handle:
        json.dump(scores, handle, indent=2)
    print(
        f"demo: rows {manifest['rows_read']} = {manifest['rows_ok']} ok + {manifest['rows_rejected']} rejected "
        f"+ {manifest['rows_failed']} failed; {manifest['groups']} groups found\n"
        f"demo: pairwise precision {scores['precision']:.3f}, recall {scores['recall']:.3f}, F1 {scores['f1']:.3f} "
        f"({scores['true_positive_pairs']} of {scores['true_pairs']} planted pairs, "
        f"{scores['predicted_pairs']} predicted)\n"
        f"demo: embedder {manifest['embedding']['backend']} ({manifest['embedding']['dim']}-d), "
        f"pairs by method {manifest['pairs_by_method']}\n"
        f"demo: outputs in {args.out}/ (pairs/, candidates/, groups/, changes/, duplicates.json, keep.json, status/, "
        f"manifest.json, ...)\n"
        f"demo: {len(queries)} images to look up in {args.out}/queries/ (dedup query --index {args.out} ...)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
