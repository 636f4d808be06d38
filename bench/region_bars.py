"""Regions with and without the bars of a slot cut off (issue 14, phase 19).

A photo shown in a post's slot of another aspect sits between two bars of one colour (augly's
``screenshot`` edit: a pillarbox). Before phase 19 the region was the slot with its bars, or, where
the photo's white merged with the page, another picture of the page. ``dedup/content.py`` now finds
the slot by its bars and cuts them off. This finds every image's region both ways (the old way: the
same finder with :func:`dedup.content._barred_slot` and :func:`dedup.content.between_bars` turned
off), counts the images whose region changed, per edit kind (augly's screenshots apart), and for
those embeds both regions: a copy's region *finds* its original when the original is among its 5
nearest products by the job's whole-image embeddings at cosine 0.5 or more (as the kNN takes it);
for an original, the highest cosine to another product. With ``--photos``, the same count on the
shared catalog photos (none is framed).

    .venv/bin/python bench/region_bars.py --job bench-out/r39/job/default --set bench-out/dev2/set \\
        --split calibration --photos ../shared/data/fashion-catalog/images --out bench-out/region-bars.json
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from region_square import FLOOR, K, job_arguments, job_vectors, truth_by_kind  # bench/, run from the repository root

from dedup import content
from dedup.embed import cached_embedder, embedder_input
from dedup.imaging import decode_pixels
from dedup.settings import default_table


@contextlib.contextmanager
def without_bars() -> Iterator[None]:
    """The region finder as it was before phase 19: no slot marked by bars, no bars cut off."""
    slot, between = content._barred_slot, content.between_bars
    content._barred_slot, content.between_bars = (lambda *_: None), (lambda *_: None)
    try:
        yield
    finally:
        content._barred_slot, content.between_bars = slot, between


def both_ways(pixels: np.ndarray, settings) -> tuple[content.Box | None, content.Box | None]:
    """(the region now, the region before phase 19) of one image."""
    now = content.content_box(pixels, settings)
    with without_bars():
        return now, content.content_box(pixels, settings)


def main() -> None:
    parser = job_arguments(__doc__)
    parser.add_argument("--photos", type=Path, help="the shared catalog photos, counted too")
    args = parser.parse_args()

    settings = default_table("embed")
    embedder = cached_embedder(settings)
    vectors, row_of = job_vectors(args.job)
    truth = truth_by_kind(args.set)
    truth.loc[truth["transform"].str.contains("screenshot"), "kind"] = "augly screenshot"
    original_of = truth[truth["kind"] == "original"].set_index("source")["productId"]

    def finds(listing: pd.Series, pixels: np.ndarray, box: content.Box | None) -> float:
        if box is None:
            return np.nan
        region = embedder_input(content.square_region(pixels, box), embedder.input_size, settings.denoise_from)
        vector = embedder.embed(region[None])[0]
        cosines = vectors @ vector
        cosines[row_of[listing["productId"]]] = -2.0  # not itself
        if listing["kind"] == "original":
            return float(cosines.max())
        target = row_of[original_of[listing["source"]]]
        return float((cosines > cosines[target]).sum() < K and cosines[target] >= FLOOR)

    rows = []
    for _, listing in truth[truth["split"] == args.split].iterrows():
        pixels = decode_pixels((args.set / "images" / listing["image"]).read_bytes())
        now, before = both_ways(pixels, settings)
        row = {"kind": listing["kind"], "before": before is not None, "now": now is not None, "changed": now != before}
        if now != before:
            row |= {"finds_before": finds(listing, pixels, before), "finds_now": finds(listing, pixels, now)}
        rows.append(row)
    table = (
        pd.DataFrame(rows, columns=["kind", "before", "now", "changed", "finds_before", "finds_now"])
        .groupby("kind")
        .agg(
            listings=("now", "size"),
            regions_before=("before", "sum"),
            regions_now=("now", "sum"),
            changed=("changed", "sum"),
            finds_before=("finds_before", "mean"),
            finds_now=("finds_now", "mean"),
        )
    )
    print(f"{args.split}: regions per kind; of those changed, the share whose region finds its original")
    print("(originals: their region's mean highest cosine to another product)")
    print(table.round(3).to_string())
    out = {"split": args.split, "kinds": json.loads(table.reset_index().to_json(orient="records"))}
    if args.photos:
        files = sorted(path for path in args.photos.iterdir() if path.is_file())
        boxes = [both_ways(decode_pixels(path.read_bytes()), settings) for path in files]
        shared = {
            "photos": len(files),
            "regions_before": sum(before is not None for _, before in boxes),
            "regions_now": sum(now is not None for now, _ in boxes),
            "changed": sum(now != before for now, before in boxes),
        }
        print("shared catalog photos:", shared)
        out["shared_photos"] = shared
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
