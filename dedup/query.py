"""Query: which listings of a job's output are duplicates of these images? (``dedup query``)

Each input is a local file or an http(s) URL (downloaded by :class:`dedup.fetch.Fetcher`, the
job's URL policy and retries included). The answer is the job's own decision at the run's
settings (the ``config`` in the output's ``manifest.json``, then ``--config`` and ``--set``):

1. **Features.** The inputs' bytes go through the features stage's own code
   (:func:`dedup.features.compute_features`, in Spark): the same hashes, thumbnail and embedding
   (the run's embedder, loaded once per Python worker) the job computes for a listing.
2. **Candidates.** One scan of the index's ``features/``, the inputs broadcast to every task:
   byte-identical images; dHash (or mirrored dHash) within the job's candidate distance
   (:attr:`dedup.rule.Rule.near_distance`); and each input's ``cosine.k`` nearest
   neighbours at or above the candidate floor (its ``cosine.nearest`` nearest at any cosine),
   by exact cosine (the job's kNN candidates, with
   the queries as the products; an output made with ``cosine.method=lsh`` gives every neighbour at
   or above the floor). An input byte-identical to listings of the run also gets those listings'
   other candidates from the run's ``candidates/`` (the pairs that came from the other product's
   ``k`` nearest). Only products whose row ended ``ok`` in ``status/`` take part.
3. **Decision.** :func:`dedup.verify.score_pairs`, the job's own function, over those candidates
   with both images' bytes (the index's from its ``images/``), by the job's rule
   (:class:`dedup.rule.Rule`, built from the run's settings as the job builds it): byte-identical,
   or the photo check (:mod:`dedup.photomatch`) at the run's thresholds, or the hash and cosine
   thresholds where the run decided without it (``embed.backend=none``, ``verify.photo_match=false``).

A pair is scored in the order the job would score it: an input byte-identical to a listing of the
run takes that listing's place (its ``row_id``), so an image that was in the run gets the answer
the run gave it. An input has no ``productFamily``, so no match is set apart as a variant of it.

Many inputs share one Spark session, one pass over ``features/`` (and a filtered read of it for
the twins' candidates) and one over ``images/``; only the candidates (``k``, the hash candidates
and a twin's candidates in the run, per input) reach the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from dedup import embed, features, verify
from dedup import rule as duplicate_rule
from dedup.config import job_settings_of, load_config
from dedup.cosine import decode
from dedup.fetch import Fetcher
from dedup.outputs import path_exists, read_json
from dedup.photomatch import AT_LEAST, AT_MOST, BLURRED, BLURRED_COLOUR, REGION, UNTILED
from dedup.rule import Rule
from dedup.settings import EmbedSettings, FeaturesSettings, FetchSettings, Settings, VerifySettings, typed

REFUSALS = frozenset({"blocked_scheme", "blocked_address", "invalid_url"})
SCAN_COLUMNS = ("productId", "image_url", "sha256", "dhash", "dhash_flip", "thumb")
# the photo settings the answer states
PHOTO_RULE = (*AT_LEAST.values(), *BLURRED.values(), *AT_MOST.values(), *BLURRED_COLOUR.values(), *UNTILED.values())
PHOTO_EVIDENCE = ("reason", "inliers", "matches", "inlier_ratio", "sharpness_gap", "blur_refit", "structure",
                  "tile_agreement", "colour_change")  # fmt: skip
PHOTO_EVIDENCE += ("region_view", *(REGION + name for name in PHOTO_EVIDENCE))  # a framed photo's view (null: none)


class QueryError(Exception):
    """A bad input or index; the message says which and why, ``kind`` what went wrong: ``missing``
    (no such file), ``refused`` (the fetch policy), ``download`` (a failed download),
    ``not_an_image``, ``index`` or ``config``."""

    def __init__(self, message: str, kind: str = "input") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class QueryImage:
    """One input: where it came from and its bytes."""

    source: str
    data: bytes


def is_url(source: str) -> bool:
    return "://" in source


def read_source(source: str, fetch_settings: FetchSettings) -> bytes:
    """The bytes of a local file, or of a URL downloaded under the job's fetch policy."""
    if not is_url(source):
        path = Path(source)
        if not path.is_file():
            raise QueryError(f"{source}: no such file", "missing")
        return path.read_bytes()
    fetcher = Fetcher(fetch_settings)
    try:
        result = fetcher.fetch(source)
    finally:
        fetcher.close()
    if result.status != "ok" or result.content is None:
        if result.reason in REFUSALS:
            raise QueryError(
                f"{source}: refused by the fetch policy ({result.reason}; see fetch.allowed_hosts)", "refused"
            )
        kind = "too_large" if result.reason == "too_large" else "download"
        raise QueryError(f"{source}: download failed ({result.reason}, {result.attempts} attempt(s))", kind)
    return result.content


def checked_image(source: str, data: bytes, features_settings: FeaturesSettings) -> QueryImage:
    """The input, once its bytes decode as the job decodes them; QueryError when they do not."""
    record = features.hash_features(data, features_settings.max_image_pixels)
    if record.get("decode_error"):
        raise QueryError(f"{source}: not an image the job can read ({record['decode_error']})", "not_an_image")
    return QueryImage(source, data)


def recorded_config(spark: SparkSession, index_dir: str) -> dict[str, Any]:
    """The config a job output was made with (its manifest.json), or {} when it has none."""
    return (read_json(spark, f"{index_dir}/manifest.json") or {}).get("config", {})


def index_features(spark: SparkSession, index_dir: str) -> DataFrame:
    """The ok feature rows of a job output; QueryError when the folder is not one."""
    path = f"{index_dir}/features"
    if not path_exists(spark, path):
        raise QueryError(f"index not found: {path} does not exist (give a dedup run's --out folder)", "index")
    return spark.read.parquet(path).where(F.col("feature_status") == "ok")


@dataclass
class Plan:
    """How the run decided, so the query decides the same way: its rule (``rule.dim``: the
    embedding dimension, 0 for hashes only) and its cosine candidates per input."""

    rule: Rule
    k: int | None  # cosine candidates per input (None: every one at or above the floor)
    backend: str  # the embedder (none without embeddings)
    regions: bool = False  # the index holds content-region vectors (``region_embedding``)

    @property
    def vector_columns(self) -> list[str]:
        """The feature columns that hold a product's vectors."""
        if not self.rule.dim:
            return []
        return ["embedding", "region_embedding"] if self.regions else ["embedding"]


def plan_of(settings: Settings, index: DataFrame) -> Plan:
    """The decision the run's settings make over this index (QueryError when they cannot): the
    query's entry, with :class:`Index`, so it reads the whole settings."""
    try:
        duplicate_rule.check_settings(settings)
    except (ValueError, RuntimeError) as exc:
        raise QueryError(f"bad configuration: {exc}", "config") from exc
    dim = features.embedding_dim(index, settings.embed)
    if features.embedding_on(settings.embed) and not dim:
        backend = settings.embed.backend
        raise QueryError(
            f"the index holds no embeddings: query it with --set embed.backend=none (not {backend})", "config"
        )
    k = None if settings.cosine.method == "lsh" else settings.cosine.k
    regions = bool(dim) and "region_embedding" in index.columns
    return Plan(Rule.of(settings, dim), k, settings.embed.backend if dim else "none", regions)


def query_features(
    spark: SparkSession, images: list[QueryImage], features_settings: FeaturesSettings, embed_settings: EmbedSettings
) -> list[dict[str, Any]]:
    """Each input's feature row, made by the features stage's own UDF at the run's settings."""
    frame = spark.createDataFrame(
        [(f"query:{n}", image.source, image.data) for n, image in enumerate(images)],
        "productId string, image_url string, image_bytes binary",
    )
    made = features.compute_features(frame, features_settings, embed.stage_model_files(spark, embed_settings)).collect()
    rows = {row["productId"]: row.asDict() for row in made}
    found = [rows[f"query:{n}"] for n in range(len(images))]
    for image, row in zip(images, found, strict=True):
        if row["feature_status"] != "ok":
            raise QueryError(f"{image.source}: not an image the job can read ({row['feature_reason']})", "not_an_image")
    return found


def _bit_count(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values).astype(np.int16)


def candidate_scan(index: DataFrame, queries: list[dict[str, Any]], plan: Plan) -> DataFrame:
    """One pass over the index: (query, productId, image_url, cosine, by_cosine, the row's
    features) for every index row that is a candidate of an input, the cosine neighbours cut to
    each input's best ``plan.k`` within each batch (the global cut follows). The cut comes before
    the ``status/`` filter, so in a folder that also holds features of products a later run no
    longer listed (re-runs into one ``--out`` over another dump), such a row can take one of a
    batch's ``k`` places; nightly outputs (``--previous``) carry only current products."""
    q_sha = np.array([q["sha256"] for q in queries], dtype=object)
    q_dhash = np.array([q["dhash"] for q in queries], dtype=np.int64).view(np.uint64)
    q_flip = np.array([q["dhash_flip"] for q in queries], dtype=np.int64).view(np.uint64)
    rule = plan.rule
    q_vectors = decode([q["embedding"] for q in queries], rule.dim) if rule.dim else None
    columns = [*SCAN_COLUMNS, *plan.vector_columns]

    def scan(batches):
        for frame in batches:
            dhash = frame["dhash"].to_numpy(np.int64).view(np.uint64)[:, None]
            distance = _bit_count(dhash ^ q_dhash[None, :])
            if rule.match_flips:
                flip = frame["dhash_flip"].to_numpy(np.int64).view(np.uint64)[:, None]
                mirrored = np.minimum(_bit_count(flip ^ q_dhash[None, :]), _bit_count(dhash ^ q_flip[None, :]))
                distance = np.minimum(distance, mirrored)
            keep = (frame["sha256"].to_numpy(object)[:, None] == q_sha[None, :]) | (distance <= rule.near_distance)
            sims = np.full(keep.shape, np.nan)
            by_cosine = np.zeros(keep.shape, dtype=bool)
            if rule.dim:
                has = frame["embedding"].notna().to_numpy()
                if has.any():
                    sims[has] = decode(frame["embedding"][has], rule.dim) @ q_vectors.T
                above = np.nan_to_num(sims, nan=-2.0) >= rule.floor
                if plan.k is not None:  # this batch's best k per input (its nearest at any cosine); the global cut next
                    ranks = np.argsort(np.argsort(-np.nan_to_num(sims, nan=-2.0), axis=0, kind="stable"), axis=0)
                    above = (above | ((ranks < rule.nearest) & ~np.isnan(sims))) & (ranks < plan.k)
                by_cosine = above
            rows, cols = np.nonzero(keep | by_cosine)
            picked = frame.iloc[rows].reset_index(drop=True)
            picked.insert(0, "query", cols.astype(np.int32))
            picked["cosine"] = sims[rows, cols]
            picked["by_cosine"] = by_cosine[rows, cols]
            picked["by_hash"] = keep[rows, cols]
            yield picked[["query", *columns, "cosine", "by_cosine", "by_hash"]]

    schema = index.select(*columns).schema
    out = f"query int, {', '.join(f'{f.name} {f.dataType.simpleString()}' for f in schema.fields)}, "
    return index.select(*columns).mapInPandas(scan, out + "cosine double, by_cosine boolean, by_hash boolean")


def _with_row_ids(frame: DataFrame, live: DataFrame | None) -> DataFrame:
    """``frame``'s live products with their ``row_id`` (all of them, ``row_id`` null, without ``status/``)."""
    return frame.join(live, "productId") if live is not None else frame.withColumn("row_id", F.lit(None).cast("long"))


def _twins_of(found: list[dict[str, Any]], queries: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Input number -> the found rows of listings of the run byte-identical to that input."""
    twins: dict[int, list[dict[str, Any]]] = {}
    for row in found:
        if row["sha256"] == queries[row["query"]]["sha256"] and row["row_id"] is not None:
            twins.setdefault(row["query"], []).append(row)
    return twins


def _live(spark: SparkSession, index_dir: str) -> DataFrame | None:
    """productId and row_id of the products whose row ended ok (None: an output without status/)."""
    path = f"{index_dir}/status"
    if not path_exists(spark, path):
        return None
    return spark.read.parquet(path).where(F.col("status") == "ok").select("productId", "row_id")


def find_candidates(
    spark: SparkSession, index_dir: str, index: DataFrame, queries: list[dict[str, Any]], plan: Plan
) -> list[dict[str, Any]]:
    """The candidates of every input (live products only, the best ``k`` cosine neighbours each)."""
    found = candidate_scan(index, queries, plan)
    live = _live(spark, index_dir)
    found = _with_row_ids(found, live)
    if plan.rule.dim and plan.k is not None:
        best = Window.partitionBy("query", "by_cosine").orderBy(F.desc("cosine"), "productId")
        found = found.withColumn("_n", F.row_number().over(best))
        near = (F.col("cosine") >= plan.rule.floor) | (F.col("_n") <= plan.rule.nearest)
        found = found.where(F.col("by_hash") | (F.col("by_cosine") & (F.col("_n") <= plan.k) & near)).drop("_n")
    rows = [row.asDict() for row in found.collect()]
    return rows + _twins_candidates(spark, index_dir, index, queries, rows, live, plan)


def _twins_candidates(
    spark: SparkSession,
    index_dir: str,
    index: DataFrame,
    queries: list[dict[str, Any]],
    found: list[dict[str, Any]],
    live: DataFrame | None,
    plan: Plan,
) -> list[dict[str, Any]]:
    """For an input byte-identical to listings of the run, the run's other candidates of those
    listings (``candidates/``), as rows like :func:`candidate_scan`'s. A kNN candidate pair comes
    from either product's ``k`` nearest neighbours, and the scan sees only the input's side: the
    run's candidates bring the other side (the products that had the listing among theirs), so a
    listing of the run is scored against every candidate the run scored it against."""
    twins = {n: {row["productId"] for row in rows} for n, rows in _twins_of(found, queries).items()}
    path = f"{index_dir}/candidates"
    if not twins or not path_exists(spark, path):
        return []
    listed = sorted(set().union(*twins.values()))
    pairs = spark.read.parquet(path).where(F.col("a").isin(listed) | F.col("b").isin(listed)).select("a", "b")
    pairs = pairs.collect()
    have = {(row["query"], row["productId"]) for row in found}
    wanted: dict[str, list[int]] = {}
    for n, ids in twins.items():
        partners = {p.b for p in pairs if p.a in ids} | {p.a for p in pairs if p.b in ids}
        for partner in sorted(partners - ids):
            if (n, partner) not in have:
                wanted.setdefault(partner, []).append(n)
    if not wanted:
        return []
    columns = [*SCAN_COLUMNS, *plan.vector_columns]
    rows = index.where(F.col("productId").isin(sorted(wanted))).select(*columns)
    rows = _with_row_ids(rows, live)
    extra = []
    for row in rows.collect():
        for n in wanted[row["productId"]]:
            extra.append({**row.asDict(), "query": n, "cosine": None, "by_cosine": False, "by_hash": False})
    return extra


ITEMS_SCHEMA = (
    "id long, productId string, family array<string>, sha256 string, dhash long, dhash_flip long, thumb binary"
)


def decide(
    spark: SparkSession,
    index_dir: str,
    queries: list[dict[str, Any]],
    images: list[QueryImage],
    found: list[dict[str, Any]],
    plan: Plan,
) -> list[dict[str, Any]]:
    """:func:`dedup.verify.score_pairs` over the candidates: every pair with its signals and the rule's decision."""
    if not found:
        return []
    # an input byte-identical to listings of the run takes the place of the first of them
    twin = {n: min(row["row_id"] for row in rows) for n, rows in _twins_of(found, queries).items()}
    item_rows, byte_rows, pairs = {}, {}, set()
    key_of = {}
    for n, query in enumerate(queries):
        item_rows[-1 - n] = (-1 - n, f"query:{n}", [], *(query[c] for c in ("sha256", "dhash", "dhash_flip", "thumb")))
        item_rows[-1 - n] += tuple(query.get(c) for c in plan.vector_columns)
        byte_rows[-1 - n] = images[n].data
    for row in found:
        n, row_id = row["query"], row["row_id"]
        item_id = row_id if row_id is not None else hash((row["productId"], row["image_url"])) & ((1 << 62) - 1)
        item_rows[item_id] = (
            item_id,
            row["productId"],
            [],
            *(row[c] for c in ("sha256", "dhash", "dhash_flip", "thumb")),
        )
        item_rows[item_id] += tuple(row[c] for c in plan.vector_columns)
        key_of[item_id] = (row["productId"], row["image_url"])
        place = twin.get(n)
        query_first = place is None or row_id is None or place < row_id
        pairs.add((-1 - n, item_id) if query_first else (item_id, -1 - n))
    schema = ITEMS_SCHEMA + "".join(f", {c} binary" for c in plan.vector_columns)
    items = spark.createDataFrame(list(item_rows.values()), schema)
    candidates = spark.createDataFrame(sorted(pairs), "id_a long, id_b long")

    stored = spark.createDataFrame(
        [(i, *key) for i, key in key_of.items()], "id long, productId string, image_url string"
    )
    index_bytes = (
        spark.read.parquet(f"{index_dir}/images")
        .where(F.col("fetch_status") == "ok")
        .select("productId", "image_url", "image_bytes")
        .join(F.broadcast(stored), ["productId", "image_url"])
        .select("id", "image_bytes")
    )
    query_bytes = spark.createDataFrame([(i, b) for i, b in byte_rows.items()], "id long, image_bytes binary")
    photos = index_bytes.unionByName(query_bytes) if plan.rule.photo_checked else None
    scored = verify.score_pairs(candidates, items, plan.rule, photos)
    return [row.asDict(recursive=True) for row in scored.collect()]


def _lookup(spark: SparkSession, path: str, product_ids: list[str], columns: list[str]) -> dict[str, dict]:
    """productId -> ``columns`` from the table at ``path`` for these ids (a filtered scan)."""
    if not product_ids or not path_exists(spark, path):
        return {}
    table = spark.read.parquet(path)
    present = [c for c in columns if c in table.columns]
    rows = table.where(F.col("productId").isin(product_ids)).select("productId", *present).collect()
    return {row["productId"]: {c: row[c] for c in present} for row in rows}


def _rounded(value: Any, digits: int = 4) -> Any:
    return round(float(value), digits) if isinstance(value, float) and not np.isnan(value) else value


def _cosine(value: float | None) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 4)


def _match(pair: dict[str, Any], found_row: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
    photo = pair.get("photo")
    return {
        "productId": found_row["productId"],
        "image_url": found_row["image_url"],
        "method": pair["method"],
        "cosine": _cosine(pair.get("cosine")),
        "region_cosine": _cosine(pair.get("region_cosine")),
        "distance": int(pair["distance"]),
        "flipped": bool(pair["flipped"]),
        "thumb_distance": _rounded(pair["thumb_distance"], 5),
        "photo": {k: _rounded(photo[k]) for k in PHOTO_EVIDENCE} if photo else None,
        "group_id": group.get("group_id"),
        "keep": group.get("keep"),
    }


def _sort_key(match: dict[str, Any]) -> tuple:
    cosine = match["cosine"] if match["cosine"] is not None else -2.0
    return (match["method"] != "exact", -cosine, match["distance"], match["productId"], match["image_url"])


def describe(plan: Plan, verify_settings: VerifySettings) -> dict[str, Any]:
    """The rule the answer was decided by, for the JSON (the photo check's thresholds as the
    ``verify`` table states them)."""
    decided = plan.rule
    rule: dict[str, Any] = {
        "decision": "photo" if decided.photo_checked else ("cosine" if decided.dim else "hash"),
        "embedder": plan.backend,
        "dhash_candidates_within": decided.near_distance,
        "max_distance": decided.max_distance,
        "match_flips": decided.match_flips,
        "max_thumb_distance": decided.max_thumb_distance,
    }
    if decided.dim:
        rule.update(candidate_cosine=decided.floor, k=plan.k, nearest=decided.nearest)
    if plan.regions:
        rule["min_region_cosine"] = decided.min_region_cosine
    if decided.photo_checked:
        rule["photo"] = {key: getattr(verify_settings, key) for key in PHOTO_RULE}
        rule["photo"]["framed_photos"] = decided.framed is not None  # a framed photo compared in its image's place
    elif decided.dim:
        rule["min_cosine"] = decided.min_cosine
    return rule


class Index:
    """A job output opened for queries: its ok features, the run's settings (its manifest's, then
    ``config_path`` and ``overrides``) and the decision they make. ``cache`` keeps the features in
    Spark's memory for many calls (``dedup serve``)."""

    def __init__(
        self,
        spark: SparkSession,
        index_dir: str,
        config_path: str | None = None,
        overrides: list[str] | None = None,
        cache: bool = False,
    ) -> None:
        self.spark, self.index_dir = spark, index_dir
        features_table = index_features(spark, index_dir)
        try:
            cfg = load_config(config_path, overrides, base=job_settings_of(recorded_config(spark, index_dir)))
            self.settings = typed(cfg)
        except (OSError, KeyError, ValueError) as exc:
            raise QueryError(f"bad configuration: {exc}", "config") from exc
        self.plan = plan_of(self.settings, features_table)
        self.features = features_table.cache() if cache else features_table

    def read(self, source: str) -> QueryImage:
        """A file or URL as an input (QueryError when it is missing, refused, fails or is no image)."""
        return self.check(source, read_source(source, self.settings.fetch))

    def check(self, source: str, data: bytes) -> QueryImage:
        """Bytes as an input, named ``source`` (QueryError when they are not an image the job reads)."""
        return checked_image(source, data, self.settings.features)

    @property
    def rule(self) -> dict[str, Any]:
        return describe(self.plan, self.settings.verify)

    def answer(self, images: list[QueryImage], limit: int = 50, with_candidates: bool = False) -> dict[str, Any]:
        """The JSON-ready answer for ``images``: one features job, one pass over ``features/`` and
        one over ``images/`` for all of them."""
        spark, settings, plan = self.spark, self.settings, self.plan
        queries = query_features(spark, images, settings.features, settings.embed)
        found = find_candidates(spark, self.index_dir, self.features, queries, plan)
        scored = decide(spark, self.index_dir, queries, images, found, plan)
        by_item = {(r["query"], r["productId"]): r for r in found}
        ids = sorted({r["productId"] for r in found})
        groups = _lookup(spark, f"{self.index_dir}/groups", ids, ["group_id", "keep"])
        results = []
        for n, image in enumerate(images):
            matches, others = [], []
            for pair in scored:
                if -1 - n not in (pair["id_a"], pair["id_b"]):
                    continue
                product_id = pair["b"] if pair["a"] == f"query:{n}" else pair["a"]
                match = _match(pair, by_item[(n, product_id)], groups.get(product_id, {}))
                (matches if pair["duplicate"] else others).append(match)
            matches.sort(key=_sort_key)
            result = {
                "input": image.source,
                "sha256": queries[n]["sha256"],
                "dhash": f"{queries[n]['dhash'] & 0xFFFFFFFFFFFFFFFF:016x}",
                "candidates": len(matches) + len(others),
                "matches": matches[:limit],
            }
            if with_candidates:
                result["not_duplicates"] = sorted(others, key=_sort_key)
            results.append(result)
        return {"index": self.index_dir, "rule": self.rule, "limit": limit, "results": results}


def run_query(
    spark: SparkSession,
    index_dir: str,
    sources: list[str],
    config_path: str | None = None,
    overrides: list[str] | None = None,
    limit: int = 50,
    with_candidates: bool = False,
) -> dict[str, Any]:
    """Look the ``sources`` up in the job output ``index_dir``; the JSON-ready answer.
    ``with_candidates`` also lists every candidate that was not found a duplicate, with its evidence."""
    index = Index(spark, index_dir, config_path, overrides)
    return index.answer([index.read(source) for source in sources], limit, with_candidates)
