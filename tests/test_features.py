import io

import numpy as np
import pytest
from PIL import Image

from dedup.devkit.synth import bomb_png, encoded, jpeg_bytes, odd_images, product_image
from dedup.features import compute_features, hash_features
from dedup.imaging import (
    _decode_plain_jpeg,
    decode_image,
    dhash_pair,
    hamming,
    sniff_format,
    thumb_distance,
    thumb_distances,
    thumbnail,
)
from dedup.settings import default_table


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return product_image(3)


def test_sniffing_trusts_bytes_not_names(photo):
    assert sniff_format(jpeg_bytes(photo)) == "jpeg"
    assert sniff_format(encoded(photo, "PNG")) == "png"
    assert sniff_format(encoded(photo, "WEBP")) == "webp"
    assert sniff_format(encoded(photo, "GIF")) == "gif"
    assert sniff_format(b"<html>soft 404</html>") is None
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_odd_but_valid_images_decode_to_rgb(photo):
    cases = odd_images(photo) | {"bmp": encoded(photo, "BMP"), "tiff": encoded(photo, "TIFF")}
    for name, data in cases.items():
        record = hash_features(data, 50_000_000)
        assert record.get("decode_error") is None, name
        assert isinstance(record["dhash"], int) and len(record["thumb"]) == 432, name


def test_exif_orientation_is_applied(photo):
    upright = decode_image(odd_images(photo)["exif_rotated_jpeg"])  # stored sideways, EXIF says turn it
    assert upright.size == (photo.width, photo.height)
    assert hamming(dhash_pair(upright)[0], dhash_pair(photo)[0]) <= 4


@pytest.mark.parametrize("draft", [None, 32, 100])
def test_fast_jpeg_path_gives_pillows_pixels(photo, draft):
    data = jpeg_bytes(photo.resize((300, 260)))
    fast = _decode_plain_jpeg(data, 50_000_000, draft)
    slow = Image.open(io.BytesIO(data))
    if draft:
        slow.draft("RGB", (draft, draft))
    assert fast is not None and fast.shape[1::-1] == slow.size
    assert np.array_equal(fast, np.asarray(slow.convert("RGB")))


def test_fast_jpeg_path_leaves_hard_cases_to_pillow(photo):
    exif = Image.Exif()
    exif[0x0112] = 6
    declined = {
        "png": encoded(photo, "PNG"),
        "cmyk": encoded(photo.convert("CMYK"), "JPEG"),
        "exif": encoded(photo, "JPEG", exif=exif.tobytes()),
        "truncated": jpeg_bytes(photo)[:2000],
        "bomb": jpeg_bytes(photo),  # 1 pixel allowed
    }
    for name, data in declined.items():
        assert _decode_plain_jpeg(data, 1 if name == "bomb" else 50_000_000, 32) is None, name
    assert hash_features(declined["bomb"], 1)["decode_error"] == "decompression_bomb"
    assert hash_features(declined["truncated"], 50_000_000)["decode_error"].startswith("undecodable_image")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no_bytes"),
        (b"<html>nope</html>", "undecodable_image:UnidentifiedImageError"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "undecodable_image"),
    ],
)
def test_bad_bytes_get_a_reason(data, reason):
    assert hash_features(data, 50_000_000)["decode_error"].startswith(reason)


def test_truncated_jpeg_is_a_decode_error(photo):
    data = jpeg_bytes(photo)
    assert hash_features(data[: len(data) // 2], 50_000_000)["decode_error"].startswith("undecodable_image")


def test_decompression_bomb_is_refused():
    bomb = encoded(Image.new("L", (12_000, 12_000), 255), "PNG")  # small file, 144 M pixels
    assert len(bomb) < 1_000_000
    assert hash_features(bomb, 50_000_000)["decode_error"] == "decompression_bomb"
    assert hash_features(bomb_png(), 50_000_000)["decode_error"] == "decompression_bomb"  # a header that lies


def test_hashes_survive_light_edits_and_mirroring(photo):
    base = hash_features(jpeg_bytes(photo), 50_000_000)
    recompressed = hash_features(jpeg_bytes(photo, quality=60), 50_000_000)
    mirrored = hash_features(jpeg_bytes(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), 50_000_000)
    other = hash_features(jpeg_bytes(product_image(4)), 50_000_000)
    assert hamming(base["dhash"], recompressed["dhash"]) <= 2
    assert hamming(base["dhash"], mirrored["dhash_flip"]) <= 2
    assert hamming(base["dhash"], other["dhash"]) > 8
    assert thumb_distance(base["thumb"], mirrored["thumb"]) < 0.01
    assert thumb_distance(thumbnail(photo), thumbnail(product_image(4))) > 0.1
    many = thumb_distances([base["thumb"], base["thumb"]], [mirrored["thumb"], other["thumb"]])
    assert many[0] == pytest.approx(thumb_distance(base["thumb"], mirrored["thumb"]), abs=1e-6) and many[1] > 0.1


def test_udf_matches_python_exactly(spark, photo):
    images = [jpeg_bytes(product_image(seed)) for seed in range(20)] + [b"junk", None]
    frame = spark.createDataFrame(
        [(f"P{i}", f"http://h/{i}.jpeg", data) for i, data in enumerate(images)],
        "productId string, image_url string, image_bytes binary",
    )
    hashes_only = default_table("embed", backend="none")
    rows = {r["productId"]: r for r in compute_features(frame, default_table("features"), hashes_only).collect()}
    for i, data in enumerate(images[:20]):
        expected = hash_features(data, 50_000_000)
        row = rows[f"P{i}"]
        assert (row["dhash"], row["dhash_flip"], row["sha256"]) == (
            expected["dhash"],
            expected["dhash_flip"],
            expected["sha256"],
        )
        assert bytes(row["thumb"]) == expected["thumb"]
        assert row["feature_status"] == "ok"
    assert (rows["P20"]["feature_status"], rows["P21"]["feature_reason"]) == ("failed", "no_bytes")
