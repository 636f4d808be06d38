"""Decoding never crashes a task: random bytes and damaged images always come back as a record."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedup.config import DEFAULTS
from dedup.devkit.synth import bomb_png, encoded, jpeg_bytes, odd_images, product_image
from dedup.features import hash_features

MAX_PIXELS = DEFAULTS["features"]["max_image_pixels"]

_PHOTO = product_image(5).resize((48, 48))
SEEDS = {
    "jpeg": jpeg_bytes(_PHOTO),
    "png": encoded(_PHOTO, "PNG"),
    "gif": encoded(_PHOTO.convert("P"), "GIF"),
    "webp": encoded(_PHOTO, "WEBP"),
    "bomb_png": bomb_png(),
} | odd_images(_PHOTO)
SEED_NAMES = sorted(SEEDS)


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A valid image after up to four edits: bit flips, truncation, another format's header
    spliced on, a run of random bytes written over or pushed in."""
    data = bytearray(SEEDS[draw(st.sampled_from(SEED_NAMES))])
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "truncate", "splice", "overwrite", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if edit == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "truncate":
            data = data[:at]
        elif edit == "splice":
            donor = SEEDS[draw(st.sampled_from(SEED_NAMES))]
            cut = draw(st.integers(1, 64))
            data = bytearray(donor[:cut]) + data[cut:]
        elif edit == "overwrite":
            data[at : at + 16] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=4096), damaged_images()))
def test_hash_features_always_returns_a_record(data):
    record = hash_features(data, MAX_PIXELS)
    if record.get("decode_error") is not None:
        assert isinstance(record["decode_error"], str) and "dhash" not in record
    else:
        assert isinstance(record["dhash"], int) and isinstance(record["dhash_flip"], int)
        assert len(record["thumb"]) == 432 and record["width"] > 0 and record["height"] > 0
