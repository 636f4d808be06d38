import random

import pytest

from dedup import candidates
from dedup.imaging import hamming
from dedup.settings import default_table


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def flip_bits(value: int, n: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), n):
        value ^= 1 << bit
    return value


def hash_settings(**changes):
    return default_table("hash", **{"max_distance": 6, "match_flips": False, "max_bucket_size": 1000} | changes)


@pytest.mark.parametrize(("t", "n"), [(0, 10), (3, 1000), (6, 1_000_000), (10, 4_000_000)])
def test_plans_cover_the_threshold(t, n):
    plan = candidates.plan_bands(t, n)
    assert sum(plan.widths) == 64
    # pigeonhole: some band differs in at most radius bits whenever the total is at most t
    assert len(plan.widths) * (plan.radius + 1) > t


def test_masks():
    assert sorted(candidates._masks(4, 1)) == [0, 1, 2, 4, 8]
    assert len(candidates._masks(16, 2)) == 1 + 16 + 120


@pytest.mark.parametrize("bands", [0, 3, 7])
def test_banding_finds_every_pair_within_the_threshold(spark, bands):
    rng = random.Random(bands)
    t = 6
    hashes = [rng.getrandbits(64) for _ in range(150)]
    # plant near copies at every distance 0..t+2 (those above t must not come back)
    for distance in range(t + 3):
        for _ in range(6):
            hashes.append(flip_bits(rng.choice(hashes[:150]), distance, rng))
    rows = [(i, signed(h), signed(h)) for i, h in enumerate(hashes)]
    items = spark.createDataFrame(rows, "id long, dhash long, dhash_flip long")
    near = candidates.near_pairs(items, hash_settings(max_distance=t, bands=bands), len(rows))
    found = {(r["id_a"], r["id_b"]) for r in near.pairs.collect()}
    expected = {
        (i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes)) if hamming(hashes[i], hashes[j]) <= t
    }
    assert found == expected
    assert len(expected) >= 6 * (t + 1)


def test_mirrored_hash_is_probed(spark):
    rng = random.Random(1)
    a = rng.getrandbits(64)
    rows = [
        (1, signed(a), signed(rng.getrandbits(64))),
        (2, signed(rng.getrandbits(64)), signed(rng.getrandbits(64))),
        (3, signed(rng.getrandbits(64)), signed(flip_bits(a, 2, rng))),  # 3's mirror image is 2 bits from 1
    ]
    items = spark.createDataFrame(rows, "id long, dhash long, dhash_flip long")
    flips = candidates.near_pairs(items, hash_settings(max_distance=3, match_flips=True), 3)
    assert {(r["id_a"], r["id_b"]) for r in flips.pairs.collect()} == {(1, 3)}
    plain = candidates.near_pairs(items, hash_settings(max_distance=3, match_flips=False), 3)
    assert plain.pairs.count() == 0


def test_oversized_buckets_are_skipped_and_reported(spark):
    rows = [(i, 0, 0) for i in range(30)] + [(100, 12345, 12345), (101, 12345, 12345)]
    items = spark.createDataFrame(rows, "id long, dhash long, dhash_flip long")
    near = candidates.near_pairs(items, hash_settings(max_distance=0, max_bucket_size=10), len(rows))
    assert {(r["id_a"], r["id_b"]) for r in near.pairs.collect()} == {(100, 101)}
    assert near.skipped_buckets.count() == 1


def test_exact_pairs_all_pairs_then_stars(spark):
    rows = [(i, "small") for i in range(4)] + [(10 + i, "big") for i in range(6)] + [(99, "alone")]
    items = spark.createDataFrame(rows, "id long, sha256 string")
    found = candidates.exact_pairs(items, default_table("exact", max_pairs_group_size=5))
    pairs = {(r["id_a"], r["id_b"]) for r in found.collect()}
    small = {(a, b) for a in range(4) for b in range(a + 1, 4)}
    stars = {(10, 10 + i) for i in range(1, 6)}
    assert pairs == small | stars


def test_a_plan_that_would_explode_is_refused():
    with pytest.raises(ValueError, match="use more bands"):
        candidates.plan_bands(8, 1000, bands=1)
