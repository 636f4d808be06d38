import random

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from dedup import groups, verify
from dedup.config import load_config
from dedup.devkit import edits
from dedup.devkit.synth import jpeg_bytes, product_image
from dedup.imaging import thumbnail
from dedup.rule import Rule
from dedup.settings import default_table, typed


def union_find_components(edges, nodes):
    parent = {n: n for n in nodes}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        parent[root(a)] = root(b)
    found = {}
    for n in nodes:
        found.setdefault(root(n), set()).add(n)
    return {frozenset(c) for c in found.values()}


def test_connected_components_match_union_find(spark):
    rng = random.Random(5)
    edges = [(i, i + 1) for i in range(0, 60)]  # a long chain: many rounds for naive propagation
    edges += [(rng.randrange(100, 300), rng.randrange(100, 300)) for _ in range(150)]
    edges = [(min(a, b), max(a, b)) for a, b in edges if a != b]
    frame = spark.createDataFrame(edges, "id_a long, id_b long")
    labels = groups.connected_components(frame).collect()
    got = {}
    for row in labels:
        got.setdefault(row["component"], set()).add(row["id"])
    nodes = {n for e in edges for n in e}
    assert {frozenset(c) for c in got.values()} == union_find_components(edges, nodes)
    assert all(row["component"] == min(got[row["component"]]) for row in labels)


def items_frame(spark, rows):
    return spark.createDataFrame(
        rows,
        "id long, productId string, family array<string>, sha256 string, dhash long, dhash_flip long, thumb binary",
    )


def test_verify_decides_and_excludes_families(spark):
    red = thumbnail(product_image(11))
    other = thumbnail(product_image(12))
    rows = [
        (1, "A", [], "s1", 0b1111, 0, red),
        (2, "B", [], "s1", 0b1111, 0, red),  # same bytes as A
        (3, "C", ["C", "D"], "s3", 0b1110, 0, red),  # 1 bit from A, same look
        (4, "D", ["C", "D"], "s4", 0b1110, 0, red),  # C's family: not a duplicate of C
        (5, "E", [], "s5", 0b1111, 0, other),  # same dHash as A, another product's colours
        (6, "F", [], "s6", 0b1111 ^ (0xFF << 20), 0, red),  # 8 bits away
    ]
    items = items_frame(spark, rows)
    pairs = [(a, b) for a in range(1, 7) for b in range(a + 1, 7)]
    cands = spark.createDataFrame(pairs, "id_a long, id_b long")
    rule = Rule.of(typed(load_config(overrides=["verify.max_thumb_distance=0.06"])), dim=0)  # the hash rule
    assert (rule.max_distance, rule.match_flips, rule.exclude_same_family) == (3, True, True)
    result = verify.kept_pairs(verify.score_pairs(cands, items, rule), rule)
    kept = {(r["a"], r["b"]): (r["method"], r["distance"]) for r in result.pairs.collect()}
    assert kept[("A", "B")] == ("exact", 0)
    assert kept[("A", "C")] == ("dhash", 1)
    assert ("C", "D") not in kept and ("A", "E") not in kept and ("A", "F") not in kept
    assert {(r["a"], r["b"]) for r in result.family_excluded.collect()} == {("C", "D")}


def banner(seed: int) -> Image.Image:
    """A product photo pasted into a wide frame with a title and a price beside it: the photo
    check frames it (:func:`dedup.content.content_box`)."""
    frame = Image.new("RGB", (560, 320), (236, 236, 236))
    frame.paste(product_image(seed).resize((224, 224)).convert("RGB"), (40, 30))
    draw = ImageDraw.Draw(frame)
    draw.text((300, 60), "Summer sale", fill=(20, 20, 20), font=edits._font(28))
    draw.rounded_rectangle((300, 200, 420, 240), 6, fill=(200, 40, 40))
    return frame


def test_framed_photos_that_disagree_refuse_a_pair_the_photo_check_keeps(spark):
    """Two images that each frame a photo (a content region: a screenshot, a banner) are not one
    photograph when the framed photos' embeddings disagree, whatever the photo check says of the
    whole frame; a pair where only one image frames a photo is decided as before. Where the photo
    check frames no photo in them (a region the embedder's stage found that the photo check does
    not frame: a photo on a pad), the embeddings refuse nothing (issue 14 phase 32)."""
    framed, plain = banner(3), product_image(21)
    data = {i: jpeg_bytes(image, quality)  # re-encodings
            for i, (image, quality) in enumerate([(framed, 95), (framed, 85), (framed, 75), (framed, 65),
                                                  (plain, 95), (plain, 85)], start=1)}  # fmt: skip
    whole, region, other = (v.astype("<f4").tobytes() for v in np.eye(8)[:3])
    regions = {1: region, 2: other, 3: region, 4: None, 5: region, 6: other}  # 1-2, 5-6 disagree; 4 none
    items = spark.createDataFrame(
        [(i, f"P{i}", [], f"s{i}", 0b1111, 0, thumbnail(framed if i <= 4 else plain), whole, regions[i]) for i in data],
        "id long, productId string, family array<string>, sha256 string, dhash long, dhash_flip long, thumb binary, "
        "embedding binary, region_embedding binary",
    )
    images = spark.createDataFrame(list(data.items()), "id long, image_bytes binary")
    cands = spark.createDataFrame([(1, 2), (1, 3), (1, 4), (5, 6)], "id_a long, id_b long")
    rule = Rule.of(typed(load_config()), dim=8)  # the defaults: the photo check, verify.min_region_cosine=0.5
    assert rule.photo_checked and rule.min_region_cosine == 0.5
    scored = {(r["a"], r["b"]): r for r in verify.score_pairs(cands, items, rule, images).collect()}
    assert all(rule.photo.decide(r["photo"].asDict()) for r in scored.values())  # one photograph, every pair
    assert [scored[pair]["photo"]["region_view"] for pair in (("P1", "P2"), ("P5", "P6"))] == ["both", None]
    assert scored[("P1", "P2")]["region_cosine"] == 0.0 and scored[("P1", "P2")]["method"] is None
    assert scored[("P1", "P3")]["region_cosine"] == 1.0 and scored[("P1", "P3")]["method"] == "photo"
    assert scored[("P1", "P4")]["region_cosine"] is None and scored[("P1", "P4")]["method"] == "photo"
    assert scored[("P5", "P6")]["region_cosine"] == 0.0 and scored[("P5", "P6")]["method"] == "photo"
    off = Rule.of(typed(load_config(overrides=["verify.min_region_cosine=-1"])), dim=8)
    assert verify.score_pairs(cands, items, off, images).where("duplicate").count() == 4


def test_chaining_guard_resplits_then_flags(spark):
    # a chain of 8 loose links (distance 3) with strict pairs (distance 0) inside it
    edges = [(i, i + 1, "dhash", 0 if i % 2 == 0 else 3) for i in range(8)]
    pairs = spark.createDataFrame(edges, "id_a long, id_b long, method string, distance int")
    items = spark.createDataFrame([(i, f"P{i}") for i in range(9)], "id long, productId string")
    settings = default_table("groups", max_size=4, strict_max_distance=1, max_iterations=20)
    built = groups.build_groups(pairs, items, settings)
    members = {r["productId"]: (r["group_id"], r["group_size"], r["oversized"]) for r in built.members.collect()}
    assert built.resplit_components == 1
    assert members["P0"] == ("P0", 2, False) and members["P1"] == ("P0", 2, False)
    assert members["P6"] == ("P6", 2, False) and "P8" not in members

    everything_strict = default_table("groups", max_size=4, strict_max_distance=3, max_iterations=20)
    flagged = groups.build_groups(pairs, items, everything_strict).members.collect()
    assert {r["oversized"] for r in flagged} == {True} and {r["group_size"] for r in flagged} == {9}


def test_bridge_guard_cuts_the_one_link_between_two_clusters_at_the_defaults(spark):
    # two triangles of photo-checked pairs joined by one pair (3-4), and a chain of four (7-8-9-10)
    triangles = [(1, 2), (2, 3), (1, 3), (4, 5), (5, 6), (4, 6)]
    chain = [(7, 8), (8, 9), (9, 10)]

    def built(bridge_method: str):
        edges = [(a, b, "photo", 12) for a, b in triangles + chain] + [(3, 4, bridge_method, 12)]
        pairs = spark.createDataFrame(edges, "id_a long, id_b long, method string, distance int")
        items = spark.createDataFrame([(i, f"P{i:02d}") for i in range(1, 11)], "id long, productId string")
        result = groups.build_groups(pairs, items, default_table("groups"))
        members = {r["productId"]: (r["group_id"], r["group_size"]) for r in result.members.collect()}
        return result.bridges_cut, members

    cut, members = built("photo")
    assert cut == 1
    assert {members[f"P0{i}"] for i in (1, 2, 3)} == {("P01", 3)}
    assert {members[f"P0{i}"] for i in (4, 5, 6)} == {("P04", 3)}
    assert {members[p] for p in ("P07", "P08", "P09", "P10")} == {("P07", 4)}  # no side of three: kept whole

    cut, members = built("exact")  # a byte-identical link is never cut
    assert cut == 0 and {members[f"P0{i}"] for i in range(1, 7)} == {("P01", 6)}

    off = default_table("groups", bridge_min_side=0)
    edges = [(a, b, "photo", 12) for a, b in [*triangles, (3, 4)]]
    pairs = spark.createDataFrame(edges, "id_a long, id_b long, method string, distance int")
    items = spark.createDataFrame([(i, f"P{i:02d}") for i in range(1, 7)], "id long, productId string")
    whole = groups.build_groups(pairs, items, off)
    assert whole.bridges_cut == 0 and {r["group_size"] for r in whole.members.collect()} == {6}


def test_bridge_guard_keeps_to_the_parts_of_a_resplit_component(spark):
    # two clusters (two triangles and a bridge each, strict links) joined by two loose links: one
    # component of 12, re-split on the strict links into two of 6, whose bridges are then cut
    # without the loose links pulling a listing across
    def clusters(base: int) -> list[tuple[int, int, str, int]]:
        links = [(1, 2), (2, 3), (1, 3), (4, 5), (5, 6), (4, 6), (3, 4)]
        return [(base + a, base + b, "dhash", 0) for a, b in links]

    edges = clusters(0) + clusters(10) + [(1, 11, "photo", 12), (2, 12, "photo", 12)]
    pairs = spark.createDataFrame(edges, "id_a long, id_b long, method string, distance int")
    items = spark.createDataFrame([(i, f"P{i:02d}") for i in range(1, 17)], "id long, productId string")
    settings = default_table("groups", max_size=7, strict_max_distance=1)
    built = groups.build_groups(pairs, items, settings)
    rows = built.members.collect()
    assert built.resplit_components == 1 and built.bridges_cut == 2
    assert len(rows) == 12 and len({r["productId"] for r in rows}) == 12
    found = {}
    for r in rows:
        found.setdefault(r["group_id"], set()).add(r["productId"])
    expected = [{"P01", "P02", "P03"}, {"P04", "P05", "P06"}, {"P11", "P12", "P13"}, {"P14", "P15", "P16"}]
    assert sorted(found.values(), key=sorted) == expected


def test_framed_photos_apart_neither_refuse_nor_contradict_the_images_pass(spark):
    """Where the images' fit puts the two framed photos in different places (``framed_placement``
    under :data:`FRAMED_APART`: a region found on another part of one photograph), neither their
    cosine nor their fit refuses the images' pass; in one place (one template) or unplaced, both
    still do. Where the photo check did not frame both, their cosine refuses nothing. The job's
    rule (:meth:`Rule.decision`) and the calibration replay (:func:`calibration.kept`) agree."""
    from pyspark.sql import types as T

    from dedup.devkit import calibration
    from dedup.photomatch import FRAMED_APART, REGION, REGION_FIELDS, SCORE_FIELDS, SCORES_SCHEMA

    fit = {"reason": None, "inliers": 120, "matches": 130, "inlier_ratio": 0.92, "structure": 0.99,
           "tile_agreement": 0.95, "colour_change": 0.01, "sharpness_gap": 0.0}  # fmt: skip
    weak = {"reason": "weak_fit", "inliers": 5, "matches": 30, "inlier_ratio": 0.17}  # their photos do not fit
    apart, together = FRAMED_APART / 2, (1 + FRAMED_APART) / 2
    cases = [  # (region_cosine, the framed photos' fit, framed_placement, kept)
        (0.2, fit, apart, True),
        (0.2, fit, together, False),  # their cosine refuses
        (0.2, fit, None, False),
        (0.9, weak, apart, True),
        (0.9, weak, together, False),  # their fit contradicts
        (0.9, weak, None, False),
        (0.9, fit, together, True),
    ]
    views = ["both"] * len(cases) + ["a", None]  # the photo check framed one photo, or none (a pad's)
    cases += [(0.2, fit, together, True), (0.2, fit, None, True)]  # their cosine refuses nothing
    rows = [{**fit, "region_view": view, "framed_placement": placed,
             **{REGION + k: framed.get(k) for k in REGION_FIELDS}}
            for (_, framed, placed, _), view in zip(cases, views, strict=True)]  # fmt: skip
    frame = spark.createDataFrame(
        [("photo", None, None, 0.9, region_cosine, row) for (region_cosine, *_), row in zip(cases, rows, strict=True)],
        T.StructType([T.StructField("method", T.StringType()), T.StructField("distance", T.IntegerType()),
                      T.StructField("thumb_distance", T.DoubleType()), T.StructField("cosine", T.DoubleType()),
                      T.StructField("region_cosine", T.DoubleType()), T.StructField("photo", SCORES_SCHEMA)]),
    )  # fmt: skip
    rule = Rule.of(typed(load_config()), dim=8)
    decided = [r["decided"] == "photo" for r in frame.select(rule.decision().alias("decided")).collect()]
    assert decided == [kept for *_, kept in cases]
    candidates = pd.DataFrame(rows, columns=[name for name, _ in SCORE_FIELDS]).assign(
        exact=False, scored=True, region_cosine=[region_cosine for region_cosine, *_ in cases]
    )
    replayed = calibration.kept(candidates.astype({"framed_placement": float}), rule.photo, rule.min_region_cosine)
    assert list(replayed) == decided
