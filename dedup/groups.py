"""Groups: connected components of the duplicate pairs, computed in Spark, with a chaining guard.

Components come from the alternating Large-Star / Small-Star algorithm (Kiveris et al., 2014,
"Connected Components in MapReduce and Beyond"): each round is a few joins and aggregations on
the edge table, O(log^2 n) rounds at most, and nothing is collected on the driver. At
convergence each component is a star around its smallest id.

Chaining guard: near-duplicate edges chain (A~B~C~...~Z) into one giant group. Components
larger than ``groups.max_size`` are split again using only their strict edges (exact, or dHash
distance at most ``groups.strict_max_distance``); what is still too large is flagged
``oversized`` and left out of ``duplicates.json``.

Bridge guard (:mod:`dedup.bridges`): in a component of at most ``groups.max_size``, a single
link that alone joins two clusters of at least ``groups.bridge_min_side`` listings each is cut
(never a byte-identical one): on the executors, the components hashed into
``spark.sql.shuffle.partitions`` pandas groups, each component's links in one of them.

Night to night (:func:`stable_ids`, :func:`changes`): with the previous run's ``groups/``, a group
keeps the id of a previous group when it holds more than half of that group's members (at most one
group can); a group that inherits nothing is named by its smallest productId that no inherited id
already uses. ``changes/`` says which groups are new, grew, shrank, changed (both) or dissolved.

A decision per group (:func:`rank_members`): each member gets a ``rank`` (1 = keep) by the sort
keys of ``groups.keep_rule`` over its listing (:data:`KEEP_KEYS`), and ``keep`` (true for rank 1,
false for the others, null in oversized groups, which need a person).
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from pyspark.sql import Column, DataFrame, Window, WindowSpec
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup import bridges
from dedup.settings import GroupsSettings


def _checkpoint(frame: DataFrame) -> DataFrame:
    """Cut the lineage that grows each round (reliably when a checkpoint dir is set)."""
    if frame.sparkSession.sparkContext.getCheckpointDir():
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True)


def _large_star(edges: DataFrame) -> DataFrame:
    both = edges.unionByName(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))
    smallest = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    return both.join(smallest, "u").where(F.col("v") > F.col("u")).select(F.col("v").alias("u"), F.col("m").alias("v"))


def _small_star(edges: DataFrame) -> DataFrame:
    down = edges.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v"))
    smallest = down.groupBy("u").agg(F.min("v").alias("m"))
    moved = down.join(smallest, "u").select(F.col("v").alias("u"), F.col("m").alias("v"))
    return moved.unionByName(smallest.select("u", F.col("m").alias("v"))).where(F.col("u") != F.col("v"))


def _normalised(edges: DataFrame) -> DataFrame:
    return edges.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")).distinct()


def connected_components(edges: DataFrame, max_iterations: int = 40) -> DataFrame:
    """(id_a, id_b) edges in; (id, component) out for every id on an edge, component = min id.

    Raises RuntimeError if it has not converged after ``max_iterations`` rounds.
    """
    current = _checkpoint(_normalised(edges.select(F.col("id_a").alias("u"), F.col("id_b").alias("v"))))
    for _ in range(max_iterations):
        nxt = _checkpoint(_normalised(_small_star(_normalised(_large_star(current)))))
        if nxt.exceptAll(current).isEmpty() and current.exceptAll(nxt).isEmpty():
            roots = nxt.select(F.col("v").alias("id")).distinct()
            return nxt.select(F.col("u").alias("id"), F.col("v").alias("component")).unionByName(
                roots.select("id", F.col("id").alias("component"))
            )
        current = nxt
    raise RuntimeError(f"connected components did not converge in {max_iterations} rounds")


@dataclass
class Groups:
    """``members``: id, productId, group_id (smallest productId), group_size, oversized;
    ``bridges_cut``: the links the bridge guard cut (:func:`cut_bridges`)."""

    members: DataFrame
    resplit_components: int
    bridges_cut: int = 0


_SPLIT_SCHEMA = "id long, component long, cut int"  # cut: the links cut in the component, on its first row


def _split_components(min_side: int):
    """An applyInPandas function: the edges (id_a, id_b, exact, component) of some components ->
    the members of each component where :func:`dedup.bridges.links_to_cut` cuts a link, with their
    new component (its smallest id). Many components go to one call: a call per component would
    cost more than the work in it."""

    def split(edges: pd.DataFrame) -> pd.DataFrame:
        edges = edges.sort_values("component", kind="stable")
        component = edges["component"].to_numpy()
        a, b, exact = edges["id_a"].tolist(), edges["id_b"].tolist(), edges["exact"].tolist()
        starts = [0, *(np.flatnonzero(np.diff(component)) + 1).tolist(), len(component)]
        ids: list[int] = []
        named: list[int] = []
        counts: list[int] = []
        for lo, hi in itertools.pairwise(starts):
            links = list(zip(a[lo:hi], b[lo:hi], strict=True))
            identical = [link for link, same in zip(links, exact[lo:hi], strict=True) if same]
            cut = bridges.links_to_cut(links, min_side, identical)
            if cut:
                parts = bridges.groups_without(links, cut)
                ids.extend(parts)
                named.extend(parts.values())
                counts.extend([len(cut)] + [0] * (len(parts) - 1))
        return pd.DataFrame({"id": ids, "component": named, "cut": counts}, dtype="int64")

    return split


def cut_bridges(labels: DataFrame, pairs: DataFrame, settings: GroupsSettings) -> tuple[DataFrame, int]:
    """``labels`` (id, component, size) with the bridge guard's cuts applied to the components of
    ``2 * groups.bridge_min_side`` to ``groups.max_size`` members, and the links cut (0 at
    ``bridge_min_side`` 0: off)."""
    min_side = int(settings.bridge_min_side)
    if min_side <= 0:
        return labels, 0
    eligible = labels.where(F.col("size").between(2 * min_side, settings.max_size)).select("id", "component")
    edges = pairs.select("id_a", "id_b", F.coalesce(F.col("method") == "exact", F.lit(False)).alias("exact"))
    edges = edges.join(eligible.withColumnRenamed("id", "id_a"), "id_a").join(
        eligible.select(F.col("id").alias("id_b"), F.col("component").alias("component_b")), "id_b"
    )
    edges = edges.where(F.col("component") == F.col("component_b"))  # a re-split component's links between its parts
    buckets = int(pairs.sparkSession.conf.get("spark.sql.shuffle.partitions") or 200)
    bucket = F.pmod(F.xxhash64("component"), F.lit(buckets))
    split = edges.groupBy(bucket).applyInPandas(_split_components(min_side), _SPLIT_SCHEMA).persist()
    n_cut = split.agg(F.sum("cut")).first()[0] or 0
    if not n_cut:
        split.unpersist()
        return labels, 0
    moved = split.select("id", F.col("component").alias("new_component"))
    relabelled = labels.join(moved, "id", "left").select(
        "id", F.coalesce("new_component", "component").alias("component")
    )
    relabelled = _with_sizes(relabelled).where(F.col("size") > 1)
    relabelled = _checkpoint(relabelled)
    split.unpersist()
    return relabelled, int(n_cut)


def build_groups(pairs: DataFrame, items: DataFrame, settings: GroupsSettings) -> Groups:
    """Groups of duplicate products from verified pairs (id_a, id_b, method, distance)."""
    max_size, rounds = settings.max_size, settings.max_iterations
    labels = _with_sizes(connected_components(pairs, rounds))
    big = labels.where(F.col("size") > max_size).select("id").persist()
    resplit = labels.where(F.col("size") > max_size).select("component").distinct().count()
    if resplit:
        strict = pairs.where((F.col("method") == "exact") | (F.col("distance") <= settings.strict_max_distance))
        strict = strict.join(big.withColumnRenamed("id", "id_a"), "id_a").join(
            big.withColumnRenamed("id", "id_b"), "id_b"
        )
        relabelled = connected_components(strict, rounds)
        labels = _with_sizes(labels.where(F.col("size") <= max_size).select("id", "component").unionByName(relabelled))
    big.unpersist()
    labels, bridges_cut = cut_bridges(labels, pairs, settings)
    named = labels.join(items.select("id", "productId"), "id")
    members = named.withColumn("group_id", F.min("productId").over(_by_component())).select(
        "id",
        "productId",
        "group_id",
        F.col("size").alias("group_size"),
        (F.col("size") > max_size).alias("oversized"),
    )
    return Groups(members=members, resplit_components=resplit, bridges_cut=bridges_cut)


def _with_sizes(labels: DataFrame) -> DataFrame:
    return labels.withColumn("size", F.count("*").over(_by_component()))


def _by_component() -> WindowSpec:
    return Window.partitionBy("component")


def _min_by_column(frame: DataFrame, keys: list[str], order: list[Column]) -> DataFrame:
    """The first row of each ``keys`` group by ``order``."""
    window = Window.partitionBy(*keys).orderBy(*order)
    return frame.withColumn("_n", F.row_number().over(window)).where("_n = 1").drop("_n")


def stable_ids(members: DataFrame, previous: DataFrame | None) -> DataFrame:
    """``members`` (productId, group_id: its smallest productId, ...) with ``group_id`` replaced by
    the previous run's id where the group holds more than half of a previous group's members
    (``previous``: its ``groups/``; None: ids stay the smallest productId).

    Of two previous groups a group holds most of (a merge) it keeps the one it shares most with,
    then the larger, then the smaller id. A group inheriting nothing takes its smallest productId
    that no inherited id already is (``productId~hash`` in the rare case that all are).
    """
    if previous is None:
        return members
    old = previous.select("productId", F.col("group_id").alias("old_id"))
    old_sizes = old.groupBy("old_id").agg(F.count("*").alias("old_size"))
    shared = (
        members.select("productId", F.col("group_id").alias("key"))
        .join(old, "productId")
        .groupBy("key", "old_id")
        .agg(F.count("*").alias("shared"))
        .join(old_sizes, "old_id")
        .where(F.col("shared") * 2 > F.col("old_size"))  # a majority of the old group: one key at most
    )
    inherited = _min_by_column(shared, ["key"], [F.desc("shared"), F.desc("old_size"), "old_id"]).select(
        "key", "old_id"
    )
    taken = inherited.select(F.col("old_id").alias("productId"))
    fresh_keys = members.select(F.col("group_id").alias("key")).distinct().join(inherited, "key", "left_anti")
    fresh = (
        members.select("productId", F.col("group_id").alias("key"))
        .join(fresh_keys, "key", "left_semi")
        .join(taken, "productId", "left_anti")
        .groupBy("key")
        .agg(F.min("productId").alias("fresh_id"))
    )
    fallback = members.groupBy(F.col("group_id").alias("key")).agg(
        F.concat(
            F.min("productId"), F.lit("~"),
            F.substring(F.sha1(F.array_join(F.array_sort(F.collect_list("productId")), ",")), 1, 8),
        ).alias("fallback_id")
    )  # fmt: skip
    names = (
        fallback.join(inherited, "key", "left")
        .join(fresh, "key", "left")
        .select("key", F.coalesce("old_id", "fresh_id", "fallback_id").alias("stable_id"))
    )
    renamed = members.join(names, members["group_id"] == names["key"]).drop("key", "group_id")
    return renamed.withColumnRenamed("stable_id", "group_id").select(*members.columns)


CHANGES_SCHEMA = T.StructType(
    [
        T.StructField("group_id", T.StringType()),
        T.StructField("change", T.StringType()),  # new, grew, shrank, changed or dissolved
        T.StructField("group_size", T.LongType()),  # members now (0: dissolved)
        T.StructField("previous_size", T.LongType()),  # members in the previous run (0: new)
        T.StructField("added", T.ArrayType(T.StringType())),  # members now that were not in it then
        T.StructField("removed", T.ArrayType(T.StringType())),  # members then that are not in it now
        T.StructField("previous_groups", T.ArrayType(T.StringType())),  # other previous groups its members were in
        T.StructField("now_in", T.ArrayType(T.StringType())),  # other groups its former members are in now
    ]
)
CHANGE_KINDS = ("new", "grew", "shrank", "changed", "dissolved", "unchanged")


def changes(members: DataFrame, previous: DataFrame | None) -> DataFrame:
    """Every group that is new, grew, shrank, changed (gained and lost) or dissolved since the
    ``previous`` run's groups (None: every group is new), and ``unchanged`` ones, as
    :data:`CHANGES_SCHEMA` rows; the caller writes the changed ones to ``changes/``."""
    spark = members.sparkSession
    now = members.select("productId", "group_id")
    then = (
        previous if previous is not None else spark.createDataFrame([], "productId string, group_id string")
    ).select("productId", "group_id")
    both = now.alias("n").join(then.alias("t"), "productId", "full")
    went_to = both.where(F.col("t.group_id").isNotNull() & F.col("n.group_id").isNotNull()).select(
        F.col("t.group_id").alias("old"), F.col("n.group_id").alias("new")
    )
    by_new = now.groupBy("group_id").agg(F.collect_set("productId").alias("now_members"))
    by_old = then.groupBy("group_id").agg(F.collect_set("productId").alias("then_members"))
    came = went_to.where(F.col("old") != F.col("new")).groupBy(F.col("new").alias("group_id"))
    came = came.agg(F.array_sort(F.collect_set("old")).alias("previous_groups"))
    gone = went_to.where(F.col("old") != F.col("new")).groupBy(F.col("old").alias("group_id"))
    gone = gone.agg(F.array_sort(F.collect_set("new")).alias("now_in"))
    empty = F.array().cast("array<string>")
    table = (
        by_new.join(by_old, "group_id", "full")
        .join(came, "group_id", "left")
        .join(gone, "group_id", "left")
        .select(
            "group_id",
            F.coalesce("now_members", empty).alias("now_members"),
            F.coalesce("then_members", empty).alias("then_members"),
            F.coalesce("previous_groups", empty).alias("previous_groups"),
            F.coalesce("now_in", empty).alias("now_in"),
        )
        .withColumn("added", F.array_sort(F.array_except("now_members", "then_members")))
        .withColumn("removed", F.array_sort(F.array_except("then_members", "now_members")))
    )
    gained, lost = F.size("added") > 0, F.size("removed") > 0
    change = (
        F.when(F.size("then_members") == 0, "new")
        .when(F.size("now_members") == 0, "dissolved")
        .when(gained & lost, "changed")
        .when(gained, "grew")
        .when(lost, "shrank")
        .otherwise("unchanged")
    )
    return table.select(
        "group_id",
        change.alias("change"),
        F.size("now_members").cast("long").alias("group_size"),
        F.size("then_members").cast("long").alias("previous_size"),
        "added",
        "removed",
        "previous_groups",
        "now_in",
    )


def _truthy(column: Column) -> Column:
    """2 for a listing in stock, 0 for one out of stock, 1 when the dump does not say."""
    value = F.lower(F.trim(column))
    return (
        F.when(value.isin("true", "1", "yes", "y", "in stock", "instock", "available"), 2)
        .when(value.isin("false", "0", "no", "n", "out of stock", "outofstock", "unavailable"), 0)
        .otherwise(1)
    )


def _number(column: Column) -> Column:
    """A number written in the dump (``1,234``, `` 499.00``), or null."""
    return F.regexp_replace(F.trim(column), ",", "").try_cast("double")


KEEP_KEYS = {
    "in_stock": "inStock: in stock, then not said, then out of stock (desc)",
    "image_pixels": "width x height of the downloaded image, read from its header",
    "image_bytes": "size of the downloaded image in bytes",
    "seller_ratings": "sellerNoOfRatings (missing counts as none)",
    "seller_rating": "sellerAverageRating (missing counts as the lowest)",
    "price": "sellingPrice, else specialPrice, else mrp (asc: cheapest first)",
    "first_seen": "the UTC day this output's lineage first downloaded the image (asc: oldest first)",
    "productId": "the productId (asc: the smallest first; always the last tie-break)",
}
"""Sort keys ``groups.keep_rule`` may name, each ``KEY asc`` or ``KEY desc``."""


def parse_keep_rule(rule: list[str] | str) -> list[tuple[str, bool]]:
    """``["in_stock desc", "price asc"]`` -> [(key, descending)], ``productId asc`` appended; a
    ValueError names an unknown key or direction.

    >>> parse_keep_rule("in_stock desc, image_pixels desc")
    [('in_stock', True), ('image_pixels', True), ('productId', False)]
    >>> parse_keep_rule(["colour desc"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: groups.keep_rule: unknown key 'colour' (known: in_stock, image_pixels, ...)
    """
    items = [part.strip() for part in (rule.split(",") if isinstance(rule, str) else rule) if part.strip()]
    parsed = []
    for item in items:
        key, _, direction = item.partition(" ")
        direction = direction.strip().lower() or "asc"
        if key not in KEEP_KEYS:
            raise ValueError(f"groups.keep_rule: unknown key {key!r} (known: {', '.join(KEEP_KEYS)})")
        if direction not in ("asc", "desc"):
            raise ValueError(f"groups.keep_rule: {item!r}: the direction is asc or desc")
        parsed.append((key, direction == "desc"))
    if not any(key == "productId" for key, _ in parsed):
        parsed.append(("productId", False))
    return parsed


@F.pandas_udf(T.StructType([T.StructField("width", T.IntegerType()), T.StructField("height", T.IntegerType())]))
def image_size_udf(images: pd.Series) -> pd.DataFrame:
    """Width and height from each image's header (no pixels decoded); nulls where it does not open."""
    sizes = []
    for data in images:
        try:
            with Image.open(io.BytesIO(bytes(data))) as opened:
                sizes.append(opened.size)
        except Exception:  # any unreadable header: no size, the rule ranks it last
            sizes.append((None, None))
    return pd.DataFrame(sizes, columns=["width", "height"], index=images.index).astype("Int32")


LISTING_COLUMNS = ("title", "seller", "price", "in_stock", "seller_ratings", "image_url", "image_width",
                   "image_height", "image_bytes", "first_seen")  # fmt: skip
"""What ``groups/`` carries of each member's listing, for the report and for people."""


def rank_members(members: DataFrame, products: DataFrame, images: DataFrame, settings: GroupsSettings) -> DataFrame:
    """``members`` (productId, group_id, group_size, oversized) with each listing's
    :data:`LISTING_COLUMNS`, ``rank`` in its group by ``groups.keep_rule`` and ``keep``.

    ``products``: the catalog rows (productId, image_url, title, sellerName, sellingPrice, ...);
    ``images``: ``images/`` (productId, image_url, fetch_status, n_bytes, fetched_at, image_bytes).
    """
    rule = parse_keep_rule(settings.keep_rule)
    listing = members.join(
        products.select("productId", "image_url", "title", "sellerName", "sellingPrice", "specialPrice", "mrp",
                        "inStock", "sellerNoOfRatings", "sellerAverageRating"),
        "productId", "left",
    )  # fmt: skip
    ok = images.where(F.col("fetch_status") == "ok").select("productId", "image_url", "n_bytes", "fetched_at",
                                                           "image_bytes")  # fmt: skip
    listing = listing.join(ok, ["productId", "image_url"], "left").withColumn("size", image_size_udf("image_bytes"))
    listing = listing.select(
        *members.columns,
        "title",
        F.col("sellerName").alias("seller"),
        F.coalesce(_number(F.col("sellingPrice")), _number(F.col("specialPrice")), _number(F.col("mrp"))).alias(
            "price"
        ),
        F.when(_truthy(F.col("inStock")) == 2, True).when(_truthy(F.col("inStock")) == 0, False).alias("in_stock"),
        _number(F.col("sellerNoOfRatings")).cast("long").alias("seller_ratings"),
        _number(F.col("sellerAverageRating")).alias("_seller_rating"),
        "image_url",
        F.col("size.width").alias("image_width"),
        F.col("size.height").alias("image_height"),
        F.col("n_bytes").alias("image_bytes"),
        F.to_date(F.timestamp_millis("fetched_at")).alias("first_seen"),
        _truthy(F.col("inStock")).alias("_in_stock"),
    )
    keys = {
        "in_stock": F.col("_in_stock"),
        "image_pixels": F.col("image_width").cast("long") * F.col("image_height"),
        "image_bytes": F.col("image_bytes"),
        "seller_ratings": F.coalesce(F.col("seller_ratings"), F.lit(0)),
        "seller_rating": F.col("_seller_rating"),
        "price": F.col("price"),
        "first_seen": F.col("first_seen"),
        "productId": F.col("productId"),
    }
    order = [keys[key].desc_nulls_last() if desc else keys[key].asc_nulls_last() for key, desc in rule]
    ranked = listing.withColumn("rank", F.row_number().over(Window.partitionBy("group_id").orderBy(*order)))
    keep = F.when(F.col("oversized"), F.lit(None).cast("boolean")).otherwise(F.col("rank") == 1)
    return ranked.withColumn("keep", keep).drop("_in_stock", "_seller_rating")
