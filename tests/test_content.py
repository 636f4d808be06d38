"""Content regions: a product pasted into a larger frame with text (a banner) gets a second
embedding of the product alone and becomes a candidate of its original; an ordinary product
photo gets none."""

from __future__ import annotations

import dataclasses
import itertools
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from dedup import content
from dedup.config import load_config
from dedup.cosine import cosines, decode
from dedup.devkit import edits
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import image_names, image_url_str, jpeg_bytes, product_image, write_catalog_csv
from dedup.embed import cached_embedder, embedder_input
from dedup.photomatch import FRAMED_EVIDENCE, REGION, PhotoRule, box_finder
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


def template(image: Image.Image) -> Image.Image:
    """``image`` small in a social-media post's frame (a header, a caption, a button), as a
    screenshot of one: most of the frame's keypoints are the template's."""
    frame = Image.new("RGB", (480, 560), (250, 250, 250))
    draw = ImageDraw.Draw(frame)
    draw.rectangle((0, 0, 479, 40), fill=(40, 60, 120))
    draw.text((16, 8), "shopgram", fill=(255, 255, 255), font=edits._font(22))
    for row, words in enumerate(["Sponsored", "1,204 likes  #style #deal"]):
        draw.text((16, 480 + 30 * row), words, fill=(30, 30, 30), font=edits._font(18))
    draw.rounded_rectangle((330, 490, 460, 526), 8, fill=(220, 50, 50))
    draw.text((344, 496), "Buy $29", fill=(255, 255, 255), font=edits._font(20))
    frame.paste(image.resize((120, 120)), (180, 200))
    return frame


def unit_vector(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` embedded by the default embedder (the real SSCD model), as a unit vector."""
    embedder = cached_embedder(SETTINGS)
    v = embedder.embed(embedder_input(pixels, embedder.input_size)[None])[0].astype(np.float32)
    return v / np.linalg.norm(v)


def near(box, expected, within: int = 8) -> bool:
    return box is not None and all(abs(a - b) <= within for a, b in zip(box, expected, strict=True))


def test_the_photo_pasted_into_a_banner_is_found_and_the_text_left_out():
    box = content.content_box(np.asarray(framed(photo(3))), SETTINGS)
    assert near(box, (40, 30, 264, 254)), box


def test_a_large_pad_of_uniform_colour_is_trimmed():
    canvas = Image.new("RGB", (520, 400), (0, 0, 0))
    canvas.paste(photo(4), (250, 120))
    assert near(content.content_box(np.asarray(canvas), SETTINGS), (250, 120, 474, 344))


PADS = ((1, (420, 224), (150, 0)), (5, (224, 400), (0, 0)), (9, (400, 330), (0, 60)))  # seed, canvas, place


@pytest.mark.parametrize(("seed", "size", "place"), PADS)
def test_a_photo_padded_on_a_canvas_it_spans_is_trimmed_at_its_edges(seed, size, place):
    """The photo spans the canvas one way (touching two or three sides): its white ground is each
    of its columns' (or rows') end colour, so the product alone is the block, with nothing around
    it. The pad's uniform margins end at the photo's straight edge, and inside it the photo's one
    ground is around its product: the region is the photo, near its original (issue 14 phase 32).
    The photo check leaves it out: its whole images' fit already compares that photo."""
    canvas = Image.new("RGB", size, (70, 110, 60))
    canvas.paste(photo(seed), place)
    pixels = np.asarray(canvas)
    box = content.content_box(pixels, SETTINGS)
    assert near(box, (*place, place[0] + 224, place[1] + 224), within=4), box
    original = unit_vector(np.asarray(photo(seed)))
    region, whole = (float(original @ unit_vector(p)) for p in (content.square_region(pixels, box), pixels))
    assert region >= 0.8 and region >= whole + 0.2, (region, whole)
    assert box_finder(SETTINGS)(pixels) is None and content.content_box(pixels, SETTINGS, padded=False) is None


@pytest.mark.parametrize(("image", "place"), ((photo(3), (120, 0)), (photo(5), (120, 0)), (photo(6), (0, 30))))
def test_a_photo_on_a_ramp_with_no_words_is_found(image, place):
    """A banner whose words found no room is a photo on a vertical ramp: no side of the pad is one
    colour, but each line of it continues the one outside it up to the photo's straight edge
    (issue 14 phase 38)."""
    ramp = np.linspace((235, 235, 235), (15, 15, 15), 300).astype(np.uint8)[:, None].repeat(420, 1)
    canvas = Image.fromarray(ramp)
    canvas.paste(image, place)
    pixels = np.asarray(canvas)
    box = content.content_box(pixels, SETTINGS)
    assert near(box, (*place, place[0] + 224, place[1] + 224), within=4), box
    original = unit_vector(np.asarray(image))
    region, whole = (float(original @ unit_vector(p)) for p in (content.square_region(pixels, box), pixels))
    assert region >= 0.8 and region >= whole + 0.1, (region, whole)


@pytest.mark.parametrize(("seed", "angle", "fill"), ((0, 7, (0, 0, 0)), (3, 5, (40, 120, 60)), (6, -12, (0, 0, 0))))
def test_a_photo_turned_in_its_canvas_is_found_inside_its_corners(seed, angle, fill):
    """A copy turned a few degrees on a canvas grown to hold it: its corners' fill is most of what
    sets the whole image's embedding apart; the largest upright rectangle inside the photo is the
    region, for the search only (issue 14 phase 39). Where the fill is the photo's own white, the
    corners merge with its ground and nothing is read."""
    original = photo(seed)
    pixels = np.asarray(original.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=fill))
    box = content.content_box(pixels, SETTINGS)
    size = pixels.shape[0]
    assert box is not None and 0 < box[0] < 0.2 * size and 0.8 * size < box[2] < size, box
    vector = unit_vector(np.asarray(original))
    region, whole = (float(vector @ unit_vector(p)) for p in (content.square_region(pixels, box), pixels))
    assert region >= whole + 0.1, (region, whole)
    assert content.content_box(pixels, SETTINGS, padded=False) is None
    white = np.asarray(original.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255)))
    assert content.content_box(white, SETTINGS) is None


@pytest.mark.parametrize("seed", (0, 2))
def test_a_photo_in_a_wide_coloured_border_is_found_at_the_defaults(seed):
    """A border copy's photo covers about 0.7 of its canvas: over the old cap of 0.6 (issue 14 phase 17)."""
    bordered = ImageOps.expand(photo(seed), border=20, fill=(30, 60, 120))  # the photo is 0.72 of it
    assert near(content.content_box(np.asarray(bordered), SETTINGS), (20, 20, 244, 244))
    capped = dataclasses.replace(SETTINGS, region_max_share=0.6)
    assert content.content_box(np.asarray(bordered), capped) is None


@pytest.mark.parametrize("seed", (66, 161, 187))  # products 2 to 2.5 times as high as wide, or as wide as high
def test_a_region_cut_tight_around_a_long_product_embeds_near_its_original(seed):
    """Where the photo's white merges with a light canvas, the region is the product alone; squashed
    to the model's square it is far from its original, centred on a square it is near (phase 18)."""
    original = np.asarray(photo(seed))
    ink = np.argwhere((original < 235).any(axis=2))  # the product's pixels, off its white ground
    (y0, x0), (y1, x1) = ink.min(0), ink.max(0) + 1
    box = (int(x0), int(y0), int(x1), int(y1))
    squashed = float(unit_vector(original) @ unit_vector(content.crop(original, box)))
    square = float(unit_vector(original) @ unit_vector(content.square_region(original, box)))
    assert square >= 0.8 and square >= squashed + 0.1, (squashed, square)


def light_banner(seed: int, words: int) -> np.ndarray:
    """``photo(seed)`` on a canvas so light that the photo's own white merges with it (the product
    is left as one irregular block), with ``words`` short words beside it, none a block alone."""
    frame = Image.new("RGB", (560, 320), (245, 245, 245))
    frame.paste(photo(seed), (40, 48))
    draw = ImageDraw.Draw(frame)
    spots = [(300, 40), (430, 40), (300, 110), (440, 110), (300, 180), (430, 180)]
    texts = ["Sale", "New", "Top rated", "-30%", "In stock", "Buy now"]
    for spot, word in list(zip(spots, texts, strict=True))[:words]:
        draw.text(spot, word, fill=(30, 30, 30), font=edits._font(16))
    return np.asarray(frame)


@pytest.mark.parametrize("seed", (1, 3, 5))
def test_a_product_on_a_light_canvas_is_found_by_the_words_around_it(seed):
    """Each word is far under a block's 1% of the canvas, but together they frame the product
    (the set's banners on a light canvas). Without them the canvas is a pad: its uniform margins end
    at the photo's straight edges, a step of 10 levels (issue 14 phase 32)."""
    box = content.content_box(light_banner(seed, 6), SETTINGS)
    x0, y0, x1, y1 = box or (0, 0, 0, 0)  # inside the pasted photo, within the working size's rounding
    assert box is not None and x0 >= 34 and y0 >= 42 and x1 <= 40 + 224 + 6 and y1 <= 48 + 224 + 6, box
    assert near(content.content_box(light_banner(seed, 0), SETTINGS), (40, 48, 264, 272), within=4)


@pytest.mark.parametrize("seed", (*range(8), 11, 103, 110))  # 0, 11, 103 and 110 are bags
def test_an_ordinary_product_photo_gets_no_region(seed):
    """A bag's body is a rectangle whose sides are straight edges with the white ground beyond
    them, but it is one piece with its handle and nothing else lies apart from it: no frame."""
    assert content.content_box(np.asarray(photo(seed)), SETTINGS) is None


def shaded_banner(seed: int, word: bool = True, lines: tuple[str, ...] = ()) -> np.ndarray:
    """``photo(seed)`` pasted at the top of a banner that shades from near white (where the
    photo's white merges with it) down to grey, with one short word apart from it: under the 1% of
    the canvas that marks a product alone as pasted (``embed.region_min_outside``). ``lines``: a
    title, a price, a button's words, one under the other at its left: over that 1%."""
    ramp = np.linspace(250, 190, 300)[:, None, None]
    frame = Image.fromarray(np.repeat(ramp, 640, axis=1).repeat(3, axis=2).astype(np.uint8))
    frame.paste(photo(seed), (300, 2))
    draw = ImageDraw.Draw(frame)
    if word:
        draw.text((60, 130), "-30%", fill=(20, 20, 20), font=edits._font(20))
    for row, words in enumerate(lines):
        draw.text((30, 40 + 60 * row), words, fill=(20, 20, 20), font=edits._font(28))
    return np.asarray(frame)


@pytest.mark.parametrize("seed", (1, 4, 7))
def test_a_photo_merging_with_a_shaded_banner_is_found_by_its_straight_edges(seed):
    """The product alone is no pasted block (not a filled rectangle, too little around it); the
    photo's sides are a faint straight step with the banner beyond them, and the word apart marks a
    frame: the region is the whole photo, which embeds near its original (issue 14 phase 30).
    Without the word the banner is a shaded pad: the straight edges find nothing (no frame), and
    the pad's ramp reading finds the photo (phase 38)."""
    pixels = shaded_banner(seed)
    box = content.content_box(pixels, SETTINGS)
    assert near(box, (300, 2, 524, 226), within=4), box
    assert float(unit_vector(np.asarray(photo(seed))) @ unit_vector(content.square_region(pixels, box))) >= 0.85
    pad = shaded_banner(seed, word=False)
    assert content._edge_rectangle(content._shrunk(pad, content._EDGE_SIDE)[0], 0.8) is None
    assert near(content.content_box(pad, SETTINGS), (300, 2, 524, 226), within=4)


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
    """Two products each with a banner copy, two other products pasted into one post template
    (and a brighter copy of one of them), among 16 other products (so that a product's 5 nearest
    neighbours by the whole image are full without the banner)."""
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
        for seed in (21, 22):  # two products pasted into one template: the frame is the same photograph
            add(f"TEMPLATE{seed}", template(photo(seed)))
        add("TEMPLATE21B", ImageEnhance.Brightness(template(photo(21))).enhance(1.06))  # 21's, a shade brighter
        for seed in range(100, 116):
            add(f"OTHER{seed}", photo(seed))
        server.images.update(images)
        write_catalog_csv(rows, folder / "catalog.csv")
        yield str(folder / "catalog.csv")


def _candidates(spark, out: str) -> set[frozenset]:
    return {frozenset((r["a"], r["b"])) for r in spark.read.parquet(f"{out}/candidates").collect()}


BASE = ["fetch.allowed_hosts=127.0.0.1", "fetch.max_attempts=2"]


@pytest.fixture(scope="module")
def banner_run(spark, banner_catalog, tmp_path_factory) -> str:
    """The job at its defaults over the banner catalog."""
    out = str(tmp_path_factory.mktemp("banner-run") / "default")
    manifest = run_job(spark, load_config(None, BASE), banner_catalog, out, echo=False)
    assert manifest["reconciles"] and manifest["rows_ok"] == 23
    return out


def test_a_banner_copy_becomes_a_candidate_of_its_original_at_the_defaults(spark, banner_catalog, banner_run, tmp_path):
    out = banner_run
    features = {r["productId"]: r for r in spark.read.parquet(f"{out}/features").collect()}
    with_region = {pid for pid, r in features.items() if r["region_embedding"] is not None}
    assert with_region == {"BANNER11", "BANNER12", "TEMPLATE21", "TEMPLATE21B", "TEMPLATE22"}  # no ordinary photo
    found = _candidates(spark, out)
    for seed in (11, 12):
        orig, banner = features[f"ORIG{seed}"], features[f"BANNER{seed}"]
        whole = float(cosines(decode([orig["embedding"]], 512), decode([banner["embedding"]], 512))[0])
        region = float(cosines(decode([orig["embedding"]], 512), decode([banner["region_embedding"]], 512))[0])
        assert region > whole + 0.1, (whole, region)  # the product alone is nearer its original
        assert frozenset((f"ORIG{seed}", f"BANNER{seed}")) in found
    scored = spark.read.parquet(f"{out}/candidates").collect()
    assert all(r["cosine"] is not None for r in scored)
    under = [r for r in scored if r["cosine"] < 0.5]  # a whole image's nearest (cosine.nearest), photo-checked
    assert all(r["photo"] is not None and not r["duplicate"] for r in under)
    rule = PhotoRule.of(default_table("verify"))
    for seed in (11, 12):  # the photo check compares the banner's framed photo with the original, and keeps it
        pair = next(r for r in scored if {r["a"], r["b"]} == {f"ORIG{seed}", f"BANNER{seed}"})
        photo = pair["photo"].asDict()
        assert photo["region_view"] in ("a", "b") and photo[REGION + "reason"] is None, photo
        assert not rule.failing(photo, REGION) and pair["duplicate"], photo

    off = str(tmp_path / "off")
    run_job(spark, load_config(None, [*BASE, "embed.region=false"]), banner_catalog, off, echo=False)
    assert "region_embedding" not in spark.read.parquet(f"{off}/features").columns
    missed = [s for s in (11, 12) if frozenset((f"ORIG{s}", f"BANNER{s}")) not in _candidates(spark, off)]
    assert missed, "without the region the banners' whole-image embeddings should be far from their originals"


def test_two_products_in_one_template_are_refused_by_their_framed_photos(spark, banner_run):
    """At the defaults, a pair whose images both frame a photo is decided by the framed photos too:
    two products pasted into one template fit and compare as one photograph on the template, and
    are refused by the framed photos' own fit (the photo check's framed view) and by their
    regions' cosine; the same product in that template is kept."""
    scored = {frozenset((r["a"], r["b"])): r for r in spark.read.parquet(f"{banner_run}/candidates").collect()}
    rule = PhotoRule.of(default_table("verify"))
    for other in ("TEMPLATE21", "TEMPLATE21B"):
        pair = scored[frozenset((other, "TEMPLATE22"))]
        photo = pair["photo"].asDict()
        assert photo["reason"] is None and not rule.failing(photo), pair  # the whole images pass as one photograph
        assert photo["region_view"] == "both" and photo["region_matches"] >= FRAMED_EVIDENCE, pair
        assert "inlier_ratio" in rule.failing(photo, REGION) and not rule.decide(photo), pair  # ... their photos do not
        assert pair["region_cosine"] < 0.5 and not pair["duplicate"], pair
    same = scored[frozenset(("TEMPLATE21", "TEMPLATE21B"))]
    assert same["region_cosine"] > 0.9 and same["duplicate"] and same["method"] == "photo", same
    framed = ("BANNER11", "BANNER12", "TEMPLATE21", "TEMPLATE21B", "TEMPLATE22")
    both_framed = {frozenset(p) for p in itertools.combinations(framed, 2)}
    assert all((r["region_cosine"] is not None) == (pair in both_framed) for pair, r in scored.items())
    groups = {r["productId"]: r["group_id"] for r in spark.read.parquet(f"{banner_run}/groups").collect()}
    assert groups["TEMPLATE21"] == groups["TEMPLATE21B"] and "TEMPLATE22" not in groups


def post_screenshot(image: Image.Image, avatar: bool = True) -> np.ndarray:
    """``image`` shown in a web page's post, as augly's screenshot edit makes it: the post's slot is
    wider than the photo, so the photo sits between two black bars (a pillarbox), under a header
    with an avatar and a name, on a page as light as the photo's own white (which merges with it)."""
    page = Image.new("RGB", (1200, 736), (242, 243, 245))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, 1199, 48), fill=(255, 255, 255))
    draw.text((60, 14), "Search", fill=(120, 120, 120), font=edits._font(18))
    draw.rectangle((240, 330, 800, 735), fill=(255, 255, 255))  # the post's card
    if avatar:
        draw.ellipse((252, 346, 292, 386), fill=(60, 90, 140))
    draw.text((300, 350), "John Doe", fill=(20, 20, 20), font=edits._font(18))
    draw.rectangle((250, 400, 787, 711), fill=(0, 0, 0))  # the slot
    page.paste(image.resize((312, 312)), (362, 400))
    return np.asarray(page)


@pytest.mark.parametrize("seed", (1, 3))
def test_a_photo_between_the_bars_of_a_post_is_the_region(seed):
    """The region is the photo alone, not the slot with its bars, nor the page's other pictures;
    and it embeds near the original where the slot with its bars does not (issue 14 phase 19)."""
    original = photo(seed)
    screenshot = post_screenshot(original)
    box = content.content_box(screenshot, SETTINGS)
    assert near(box, (362, 400, 674, 712)), box
    alone = float(unit_vector(np.asarray(original)) @ unit_vector(content.square_region(screenshot, box)))
    slot = float(unit_vector(np.asarray(original)) @ unit_vector(content.crop(screenshot, (250, 400, 788, 712))))
    assert alone >= 0.8 and alone >= slot + 0.1, (alone, slot)


def test_two_bars_mark_the_slot_where_the_photo_merges_with_the_page():
    """Without the avatar the bars touch nothing but the page: each is a block alone, the photo's
    white merged with the page, and the largest block is the product. The two bars mark the slot."""
    box = content.content_box(post_screenshot(photo(3), avatar=False), SETTINGS)
    assert near(box, (362, 400, 674, 712)), box


def test_a_dark_product_keeps_its_own_dark_sides():
    """A black wallet on white is a filled block; its sides are black like a pillarbox's bars, but
    thin (under ``_BAR_MIN`` of its width), and the region stays the whole product."""
    canvas = Image.new("RGB", (224, 224), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((20, 70, 203, 160), fill=(12, 12, 12))
    rng = np.random.default_rng(0)
    pixels = np.asarray(canvas).copy()
    pixels[80:150, 32:192] = rng.integers(40, 90, (70, 160, 1))  # the textured flap between the sides
    assert content.between_bars(pixels[70:161, 20:204]) is None


def striped_shirt() -> np.ndarray:
    """A garment of flat horizontal stripes on white: each stripe is a long flat bar of one colour."""
    canvas = Image.new("RGB", (224, 224), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.polygon([(40, 40), (90, 25), (134, 25), (184, 40), (200, 90), (170, 95), (165, 210), (59, 210), (54, 95),
                  (24, 90)], fill=(230, 120, 40))  # fmt: skip
    pixels = np.asarray(canvas).copy()
    shirt = (pixels != 255).any(axis=2)
    for top in range(40, 210, 24):
        band = np.zeros_like(shirt)
        band[top : top + 10] = True
        pixels[band & shirt] = (40, 40, 40)
    return pixels


def strapped_watch() -> np.ndarray:
    """A round watch face between two flat black straps above and below it."""
    canvas = Image.new("RGB", (224, 224), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((67, 10, 157, 45), fill=(15, 15, 15))  # straps as wide as 2.5 times their length here
    draw.rectangle((67, 179, 157, 214), fill=(15, 15, 15))
    draw.ellipse((42, 42, 182, 182), fill=(180, 180, 190), outline=(60, 60, 60), width=6)
    draw.line((112, 112, 112, 70), fill=(20, 20, 20), width=4)
    return np.asarray(canvas)


@pytest.mark.parametrize("pixels", (striped_shirt(), strapped_watch()), ids=("stripes", "straps"))
def test_a_products_own_bars_do_not_mark_a_slot(pixels):
    """Stripes and straps are flat bars of one colour facing each other, but not with the page all
    around them: more garment lies beyond a stripe, and the watch's face runs past its straps."""
    assert content.content_box(pixels, SETTINGS) is None
