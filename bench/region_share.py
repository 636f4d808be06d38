"""How many images get a content region at each ``embed.region_max_share`` (issue 14, phase 17).

A region is embedded only when its box covers at most ``embed.region_max_share`` of the canvas
(``dedup/content.py``). This counts, at each value, the images given a region: the shared catalog
photos (none is framed: every region there is an extra vector the kNN searches for nothing) and
each edit kind of a bench set (where a region is what makes a framed copy a candidate). Images are
decoded as the features stage decodes them (:func:`dedup.imaging.decode_pixels`).

    .venv/bin/python bench/region_share.py --photos ../shared/data/fashion-catalog/images \\
        --set bench-out/dev2/set --out bench-out/region-share.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from pathlib import Path

import pandas as pd

from dedup import content
from dedup.devkit.metrics import edit_kind
from dedup.imaging import decode_pixels
from dedup.settings import default_table

SHARES = (0.6, 0.7, 0.8, 0.9, 0.95)
KINDS = ("original", "banner", "border", "pad", "stack", "augly")


def regions(files: list[Path], labels: list[str], shares: tuple[float, ...]) -> dict[float, Counter]:
    """Per share, how many of ``files`` get a region, counted by label (one decode per file; a file
    with no region at any share is searched once, the others once more per share)."""
    loose = dataclasses.replace(default_table("embed"), region_max_share=1.0)
    found = {share: Counter() for share in shares}
    for path, label in zip(files, labels, strict=True):
        pixels = decode_pixels(path.read_bytes())
        if content.content_box(pixels, loose) is None:
            continue
        for share in shares:
            kept = content.content_box(pixels, dataclasses.replace(loose, region_max_share=share))
            found[share][label] += kept is not None
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--set", type=Path, required=True, help="a bench set (truth.csv, images/)")
    parser.add_argument("--shares", default=",".join(map(str, SHARES)))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shares = tuple(float(s) for s in args.shares.split(","))

    photos = sorted(args.photos.rglob("*.jpg"))
    truth = pd.read_csv(args.set / "truth.csv", dtype=str)
    truth["kind"] = truth["transform"].map(edit_kind)  # stack:resize+stretch -> stack
    truth = truth[truth["kind"].isin(KINDS)]
    result: dict[str, dict] = {"totals": {"catalog": len(photos), **truth["kind"].value_counts().to_dict()}}
    catalog = regions(photos, ["catalog"] * len(photos), shares)
    kinds = regions([args.set / "images" / name for name in truth["image"]], list(truth["kind"]), shares)
    for share in shares:
        result[str(share)] = {"catalog": catalog[share]["catalog"], **{k: kinds[share][k] for k in KINDS}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    header = ["share", "catalog", *KINDS]
    print(" | ".join(header))
    print(" | ".join(["total", *(str(result["totals"].get(k, 0)) for k in header[1:])]))
    for share in shares:
        print(" | ".join([str(share), *(str(result[str(share)][k]) for k in header[1:])]))


if __name__ == "__main__":
    main()
