"""Typed settings: each table of a merged config (:func:`dedup.config.load_config`) as a frozen
dataclass, checked once at the job's entry; the leaves take their table and read it by attribute.

The tables and their fields are :data:`dedup.config.DEFAULTS`' (the one place a setting, its
default and its comment live); each table has its class here, named for it (``hash``:
:class:`HashSettings`, ``cosine``: :class:`CosineSettings`, ...), which the leaves name in their
type hints. A field's type is its default's: ``bool``, ``int``, ``float`` (an integer is taken),
``str`` or a list of strings (kept as a tuple; a string is split at commas, as ``--set`` splits
it). An unknown table or key, or a value of the wrong type, is a ``ValueError`` that names the
key; a table made or changed any other way (:func:`dataclasses.replace`, :func:`default_table`)
is checked the same way. The ``spark`` table stays a plain dict of strings: Spark's settings
are free-form.

>>> from dedup.config import DEFAULTS, load_config
>>> settings = typed(load_config(overrides=["hash.max_distance=5"]))
>>> settings.hash.max_distance, settings.hash.match_flips, settings.fetch.allowed_hosts
(5, True, ())
>>> default_table("hash", max_distance=2).max_distance, type(settings.hash).__name__
(2, 'HashSettings')
>>> typed(load_config(overrides=["hash.max_distance=5"]) | {"hash": {**DEFAULTS["hash"], "max_distance": "5"}})
Traceback (most recent call last):
ValueError: hash.max_distance must be an integer, got '5'
>>> typed({**load_config(), "verify": {**load_config()["verify"], "min_inlier": 20}})
Traceback (most recent call last):
ValueError: unknown setting: verify.min_inlier
>>> dataclasses.replace(settings.verify, min_inliers=2.5)
Traceback (most recent call last):
ValueError: verify.min_inliers must be an integer, got 2.5
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from dedup.config import DEFAULTS


class TableSettings:
    """Base of the table classes below: a frozen dataclass whose fields are one table of
    :data:`dedup.config.DEFAULTS`, each checked (and an integer made a float, a list a tuple)
    whenever a table is made."""

    table: ClassVar[str]  # the table's name in the config (``hash``, ``cosine``, ...)

    def __post_init__(self) -> None:
        defaults = DEFAULTS[self.table]
        for key, default in defaults.items():
            object.__setattr__(self, key, _checked(f"{self.table}.{key}", getattr(self, key), default))

    def as_dict(self) -> dict[str, Any]:
        """The table as a plain dict (lists as lists), as a config or a manifest holds it."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _checked(where: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (ValueError naming ``where`` when it is not one)."""
    kind = type(default)
    if kind is list:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ValueError(f"{where} must be a list of strings, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ValueError(f"{where} must be {_KIND_NAMES[kind]}, got {value!r}")
    return value


def _table(name: str) -> Callable[[type[TableSettings]], type[TableSettings]]:
    """Class decorator: ``cls`` as the frozen dataclass of table ``name``, its fields and their
    types those of the table's defaults."""

    def make(cls: type[TableSettings]) -> type[TableSettings]:
        cls.table = name
        cls.__annotations__ = {
            key: tuple[str, ...] if isinstance(value, list) else type(value) for key, value in DEFAULTS[name].items()
        }
        cls.__doc__ = f"{cls.__doc__} Fields: {', '.join(DEFAULTS[name])}."
        return dataclasses.dataclass(frozen=True)(cls)

    return make


@_table("ingest")
class IngestSettings(TableSettings):
    """``ingest``: how the catalog dump is read and which rows are rejected (dedup/ingest.py)."""


@_table("fetch")
class FetchSettings(TableSettings):
    """``fetch``: the URL policy, time-outs, retries, breaker and commits (dedup/fetch.py, dedup/fetchstore.py)."""


@_table("features")
class FeaturesSettings(TableSettings):
    """``features``: decoding (dedup/features.py)."""


@_table("hash")
class HashSettings(TableSettings):
    """``hash``: dHash candidates (dedup/candidates.py) and the hash rule (dedup/rule.py)."""


@_table("embed")
class EmbedSettings(TableSettings):
    """``embed``: the embedder and the content region (dedup/embed.py, dedup/features.py, dedup/content.py)."""


@_table("cosine")
class CosineSettings(TableSettings):
    """``cosine``: cosine candidates, kNN or LSH (dedup/knn.py, dedup/cosine.py)."""


@_table("exact")
class ExactSettings(TableSettings):
    """``exact``: byte-identical candidates (dedup/candidates.py)."""


@_table("verify")
class VerifySettings(TableSettings):
    """``verify``: the duplicate rule's thresholds (dedup/rule.py, dedup/photomatch.py)."""


@_table("groups")
class GroupsSettings(TableSettings):
    """``groups``: connected components and the member to keep (dedup/groups.py)."""


@_table("output")
class OutputSettings(TableSettings):
    """``output``: what the job writes besides its tables (jobs/stages.py)."""


TABLES: dict[str, type[TableSettings]] = {
    cls.table: cls
    for cls in (IngestSettings, FetchSettings, FeaturesSettings, HashSettings, EmbedSettings, CosineSettings,
                ExactSettings, VerifySettings, GroupsSettings, OutputSettings)
}  # fmt: skip
_UNTYPED = sorted(set(DEFAULTS) - {"spark"} - set(TABLES))
if _UNTYPED:  # a table added to dedup/config.py needs its class here
    raise ImportError(f"dedup/settings.py has no class for the settings tables {_UNTYPED}")


def _same_keys(given: Mapping[str, Any], known: Mapping[str, Any], what: str, prefix: str = "") -> None:
    """ValueError naming the first key of ``given`` that ``known`` lacks, or the first it misses."""
    for kind, keys in (("unknown", set(given) - set(known)), ("missing", set(known) - set(given))):
        if keys:
            raise ValueError(f"{kind} {what}: {prefix}{sorted(keys)[0]}")


def table_of(name: str, values: Mapping[str, Any]) -> TableSettings:
    """One table checked and typed: every key of the defaults' table, no other, each of its type."""
    _same_keys(values, DEFAULTS[name], "setting", f"{name}.")
    return TABLES[name](**values)


def default_table(name: str, **changes: Any) -> TableSettings:
    """The defaults' table ``name`` with ``changes``, checked and typed (for tests, benches and
    doctests that call a leaf with one table)."""
    return table_of(name, {**DEFAULTS[name], **changes})


@dataclasses.dataclass(frozen=True)
class Settings:
    """A whole config, typed: ``spark`` (a dict of strings) and one frozen table per job table."""

    spark: dict[str, str]
    ingest: IngestSettings
    fetch: FetchSettings
    features: FeaturesSettings
    hash: HashSettings
    embed: EmbedSettings
    cosine: CosineSettings
    exact: ExactSettings
    verify: VerifySettings
    groups: GroupsSettings
    output: OutputSettings


def typed(cfg: Mapping[str, Any]) -> Settings:
    """``cfg`` (a merged config: the defaults, a TOML profile, ``--set``) as :class:`Settings`;
    ValueError naming the first unknown table or key, or the first value of the wrong type."""
    _same_keys(cfg, DEFAULTS, "settings table")
    tables = {name: table_of(name, cfg[name]) for name in TABLES}
    return Settings(spark={key: str(value) for key, value in cfg["spark"].items()}, **tables)
