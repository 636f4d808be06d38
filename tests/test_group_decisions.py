"""Groups night to night and a decision per group: stable ids, changes/, keep and rank."""

from __future__ import annotations

import datetime

import pytest

from dedup import groups
from dedup.devkit.synth import jpeg_bytes, product_image
from dedup.settings import default_table

MEMBERS = "productId string, group_id string, group_size long, oversized boolean"


def members_frame(spark, named: dict[str, list[str]], oversized: frozenset[str] = frozenset()):
    """Groups given as {key: members} in the shape of build_groups' members: group_id = smallest productId."""
    rows = [(pid, min(ids), len(ids), key in oversized) for key, ids in named.items() for pid in ids]
    return spark.createDataFrame(rows, MEMBERS)


def grouped(frame) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in frame.collect():
        found.setdefault(row["group_id"], set()).add(row["productId"])
    return found


def test_ids_stay_while_a_group_keeps_most_of_its_members(spark):
    night1 = members_frame(spark, {"g1": ["A", "B", "C"], "g2": ["D", "E"], "g3": ["F", "G", "H", "I"],
                                   "g4": ["J", "K"]})  # fmt: skip
    first = grouped(groups.stable_ids(night1, None))
    assert first == {"A": {"A", "B", "C"}, "D": {"D", "E"}, "F": {"F", "G", "H", "I"}, "J": {"J", "K"}}

    # night 2: A left its group (which keeps 2 of 3, its id too) and joined Z; D's group dissolved;
    # F's group split in two halves (neither has most of it); J's group absorbed a newcomer with a smaller id
    night2 = members_frame(spark, {"a": ["B", "C", "X"], "b": ["A", "Z"], "c": ["F", "G"], "d": ["H", "I"],
                                   "e": ["0", "J", "K"]})  # fmt: skip
    second = groups.stable_ids(night2, groups.stable_ids(night1, None))
    ids = grouped(second)
    assert ids["A"] == {"B", "C", "X"}  # kept its id without the product it is named after
    assert ids["J"] == {"0", "J", "K"}  # kept its id although 0 is now the smallest member
    assert {"A", "Z"} in ids.values() and ids.get("Z") == {"A", "Z"}  # A is taken: the next smallest member
    assert ids["F"] == {"F", "G"} and ids["H"] == {"H", "I"}  # halves are new groups, named as new groups are
    assert len(ids) == 5 and second.count() == night2.count()
    assert set(second.columns) == set(night2.columns)

    changes = {row["group_id"]: row for row in groups.changes(second, groups.stable_ids(night1, None)).collect()}
    assert changes["A"]["change"] == "changed" and changes["A"]["added"] == ["X"] and changes["A"]["removed"] == ["A"]
    assert changes["J"]["change"] == "grew" and changes["J"]["added"] == ["0"] and changes["J"]["previous_size"] == 2
    assert changes["Z"]["change"] == "new" and changes["Z"]["previous_groups"] == ["A"]
    assert changes["D"]["change"] == "dissolved" and changes["D"]["group_size"] == 0
    assert changes["D"]["removed"] == ["D", "E"] and changes["D"]["now_in"] == []
    assert changes["F"]["change"] == "shrank" and changes["F"]["removed"] == ["H", "I"]
    assert changes["F"]["now_in"] == ["H"] and changes["H"]["change"] == "new"
    assert {row["change"] for row in changes.values()} <= set(groups.CHANGE_KINDS)


def test_a_merge_keeps_the_id_it_shares_most_with(spark):
    night1 = groups.stable_ids(members_frame(spark, {"x": ["P", "Q", "R"], "y": ["S", "T"]}), None)
    merged = groups.stable_ids(members_frame(spark, {"m": ["P", "Q", "R", "S", "T"]}), night1)
    assert grouped(merged) == {"P": {"P", "Q", "R", "S", "T"}}
    changes = {row["group_id"]: row for row in groups.changes(merged, night1).collect()}
    assert changes["P"]["change"] == "grew" and changes["P"]["previous_groups"] == ["S"]
    assert changes["S"]["change"] == "dissolved" and changes["S"]["now_in"] == ["P"]


LISTINGS = (
    "productId string, image_url string, title string, sellerName string, sellingPrice string, specialPrice string, "
    "mrp string, inStock string, sellerNoOfRatings string, sellerAverageRating string"
)
IMAGES = "productId string, image_url string, fetch_status string, n_bytes long, fetched_at long, image_bytes binary"


def test_keep_rule_ranks_members(spark):
    small, large = jpeg_bytes(product_image(3).resize((100, 100))), jpeg_bytes(product_image(3).resize((300, 300)))
    day = 86_400_000
    listings = [  # productId, url, title, seller, price, special, mrp, inStock, ratings, rating
        ("P1", "u1", "Red shirt", "S1", "499", None, None, "false", "9,000", "4.5"),  # out of stock: last
        ("P2", "u2", "Red shirt!", "S2", "1,299.00", None, None, "true", "12", "4.0"),  # in stock, small image
        ("P3", "u3", "Red shirt", "S3", None, "450", None, "true", "3", "3.9"),  # in stock, large image
        ("P4", "u4", "Red shirt", "S4", "480", None, None, "TRUE", "40", None),  # in stock, large, more ratings
        ("P5", "u5", "Red shirt", "S5", "480", None, None, "", "40", None),  # stock not said: after in stock
        ("Q1", "v1", "Bag", "S1", "99", None, None, "true", "5", "4"),  # a second group: ratings tie, oldest wins
        ("Q2", "v2", "Bag", "S2", "99", None, None, "true", "5", "4"),
    ]
    images = [(pid, url, "ok", len(data), t, data) for pid, url, data, t in [
        ("P1", "u1", large, 0), ("P2", "u2", small, 0), ("P3", "u3", large, 0), ("P4", "u4", large, 0),
        ("P5", "u5", large, 0), ("Q1", "v1", small, 5 * day), ("Q2", "v2", small, 2 * day),
    ]]  # fmt: skip
    members = members_frame(spark, {"p": ["P1", "P2", "P3", "P4", "P5"], "q": ["Q1", "Q2"]})
    settings = default_table("groups")
    ranked = groups.rank_members(members, spark.createDataFrame(listings, LISTINGS),
                                 spark.createDataFrame(images, IMAGES), settings)  # fmt: skip
    rows = {row["productId"]: row for row in ranked.collect()}
    order = sorted(rows, key=lambda pid: (rows[pid]["group_id"], rows[pid]["rank"]))
    assert order == ["P4", "P3", "P2", "P5", "P1", "Q2", "Q1"]
    assert [pid for pid, row in rows.items() if row["keep"]] == ["P4", "Q2"]
    assert rows["P2"]["price"] == 1299.0 and rows["P3"]["price"] == 450.0  # specialPrice where no sellingPrice
    assert rows["P1"]["seller_ratings"] == 9000 and rows["P1"]["in_stock"] is False and rows["P5"]["in_stock"] is None
    assert (rows["P3"]["image_width"], rows["P3"]["image_height"]) == (300, 300)
    assert rows["Q2"]["first_seen"] == datetime.date(1970, 1, 3) and rows["P2"]["title"] == "Red shirt!"
    assert rows["P2"]["seller"] == "S2" and rows["P2"]["image_bytes"] == len(small)

    cheapest = groups.rank_members(members, spark.createDataFrame(listings, LISTINGS),
                                   spark.createDataFrame(images, IMAGES),
                                   default_table("groups", keep_rule=["price asc"]))  # fmt: skip
    assert {r["productId"] for r in cheapest.where("keep").collect()} == {"P3", "Q1"}  # Q1 < Q2 breaks the tie

    # an oversized group gets ranks but no decision
    flagged = members_frame(spark, {"p": ["P1", "P2"]}, oversized=frozenset({"p"}))
    undecided = groups.rank_members(flagged, spark.createDataFrame(listings, LISTINGS),
                                    spark.createDataFrame(images, IMAGES), settings).collect()  # fmt: skip
    assert sorted(r["rank"] for r in undecided) == [1, 2] and all(r["keep"] is None for r in undecided)


def test_a_bad_keep_rule_is_refused_before_spark_starts(run_cli, tmp_path):
    (tmp_path / "c.csv").write_text("productId\n")
    result = run_cli("run", "--catalog", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"),
                     "--set", "groups.keep_rule=in_stock desc,colour desc")  # fmt: skip
    assert result.returncode == 2 and "unknown key 'colour'" in result.stderr
    with pytest.raises(ValueError, match="asc or desc"):
        groups.parse_keep_rule(["price up"])
