"""Content regions: a product pasted into a larger frame with text (a banner) gets a second
embedding of the product alone and becomes a candidate of its original; an ordinary product
photo gets none."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dedup import content
from dedup.config import load_config
from dedup.cosine import cosines, decode
from dedup.devkit import edits
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import image_names, image_url_str, jpeg_bytes, product_image, write_catalog_csv
from dedup.settings import default_table
from jobs.dedup_job import run_job

SETTINGS = default_table("embed")


def photo(seed: int) -> Image.Image:
    return product_image(seed).resize((224, 224)).convert("RGB")


def framed(image: Image.Image, fill=(236, 236, 236), place=(40, 30), size=(560, 320)) -> Image.Image:
    """``image`` pasted into a wide frame with a title, a price and a button beside it."""
    frame = Image.new("RGB", size, fill)
    frame.paste(image, place)
    draw = ImageDraw.Draw(frame)
    draw.text((300, 60), "Summer sale", fill=(20, 20, 20), font=edits._font(28))
    draw.rounded_rectangle((300, 200, 420, 240), 6, fill=(200, 40, 40))
    draw.text((312, 206), "$29.99", fill=(255, 255, 255), font=edits._font(22))
    return frame


def near(box, expected, within: int = 8) -> bool:
    return box is not None and all(abs(a - b) <= within for a, b in zip(box, expected, strict=True))


def test_the_photo_pasted_into_a_banner_is_found_and_the_text_left_out():
    box = content.content_box(np.asarray(framed(photo(3))), SETTINGS)
    assert near(box, (40, 30, 264, 254)), box


def test_a_large_pad_of_uniform_colour_is_trimmed():
    canvas = Image.new("RGB", (520, 400), (0, 0, 0))
    canvas.paste(photo(4), (250, 120))
    assert near(content.content_box(np.asarray(canvas), SETTINGS), (250, 120, 474, 344))


@pytest.mark.parametrize("seed", range(8))
def test_an_ordinary_product_photo_gets_no_region(seed):
    assert content.content_box(np.asarray(photo(seed)), SETTINGS) is None


def test_text_alone_or_a_photo_filling_the_canvas_gets_no_region():
    words = Image.new("RGB", (400, 200), (255, 255, 255))
    ImageDraw.Draw(words).text((20, 60), "50% OFF today", fill=(0, 0, 0), font=edits._font(48))
    assert content.content_box(np.asarray(words), SETTINGS) is None
    noise = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    assert content.content_box(noise, SETTINGS) is None  # the whole canvas is content


def test_the_banner_generator_s_frames_mostly_have_a_region():
    found = sum(content.content_box(np.asarray(edits.banner(photo(s), random.Random(s))[0]), SETTINGS) is not None
                for s in range(20))  # fmt: skip
    assert found >= 14, found


@pytest.fixture(scope="module")
def banner_catalog(tmp_path_factory):
    """Two products each with a banner copy, among 16 other products (so that a product's 5
    nearest neighbours by the whole image are full without the banner)."""
    folder = tmp_path_factory.mktemp("banners")
    images, rows = {}, []

    def add(pid: str, image: Image.Image) -> None:
        name = f"{pid.lower()}-img"
        for served in image_names(name):
            images[served] = jpeg_bytes(image)
        rows.append({"productId": pid, "title": pid, "imageUrlStr": image_url_str(server.base_url, name)})

    with ImageServer({}) as server:
        for seed in (11, 12):
            add(f"ORIG{seed}", photo(seed))
            add(f"BANNER{seed}", framed(photo(seed), place=(24, 70), size=(640, 360)))
        for seed in range(100, 116):
            add(f"OTHER{seed}", photo(seed))
        server.images.update(images)
        write_catalog_csv(rows, folder / "catalog.csv")
        yield str(folder / "catalog.csv")


def _candidates(spark, out: str) -> set[frozenset]:
    return {frozenset((r["a"], r["b"])) for r in spark.read.parquet(f"{out}/candidates").collect()}


def test_a_banner_copy_becomes_a_candidate_of_its_original_at_the_defaults(spark, banner_catalog, tmp_path):
    base = ["fetch.allowed_hosts=127.0.0.1", "fetch.max_attempts=2"]
    out = str(tmp_path / "default")
    manifest = run_job(spark, load_config(None, base), banner_catalog, out, echo=False)
    assert manifest["reconciles"] and manifest["rows_ok"] == 20
    features = {r["productId"]: r for r in spark.read.parquet(f"{out}/features").collect()}
    with_region = {pid for pid, r in features.items() if r["region_embedding"] is not None}
    assert with_region == {"BANNER11", "BANNER12"}  # the ordinary photos get no second embedding
    found = _candidates(spark, out)
    for seed in (11, 12):
        orig, banner = features[f"ORIG{seed}"], features[f"BANNER{seed}"]
        whole = float(cosines(decode([orig["embedding"]], 512), decode([banner["embedding"]], 512))[0])
        region = float(cosines(decode([orig["embedding"]], 512), decode([banner["region_embedding"]], 512))[0])
        assert region > whole + 0.1, (whole, region)  # the product alone is nearer its original
        assert frozenset((f"ORIG{seed}", f"BANNER{seed}")) in found
    scored = spark.read.parquet(f"{out}/candidates").collect()
    assert all(r["cosine"] is not None and r["cosine"] >= 0.5 for r in scored if r["method"] != "exact")

    off = str(tmp_path / "off")
    run_job(spark, load_config(None, [*base, "embed.region=false"]), banner_catalog, off, echo=False)
    assert "region_embedding" not in spark.read.parquet(f"{off}/features").columns
    missed = [s for s in (11, 12) if frozenset((f"ORIG{s}", f"BANNER{s}")) not in _candidates(spark, off)]
    assert missed, "without the region the banners' whole-image embeddings should be far from their originals"
