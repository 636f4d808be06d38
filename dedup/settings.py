"""Typed settings: each table of a merged config (:func:`dedup.config.load_config`) as a frozen
dataclass, checked once at the job's entry.

The tables and their fields are :data:`dedup.config.DEFAULTS`' (the one place a setting, its
default and its comment live); a field's type is its default's: ``bool``, ``int``, ``float`` (an
integer is taken), ``str`` or a list of strings (kept as a tuple; a string is split at commas, as
``--set`` splits it). An unknown table or key, or a
value of the wrong type, is a ``ValueError`` that names the key. The ``spark`` table stays a
plain dict of strings: Spark's settings are free-form.

A table reads by attribute (``settings.hash.max_distance``) and, for the leaves that take a
mapping, by key (``settings.hash["max_distance"]``); :func:`dataclasses.replace` makes a changed
copy.

>>> from dedup.config import DEFAULTS, load_config
>>> settings = typed(load_config(overrides=["hash.max_distance=5"]))
>>> settings.hash.max_distance, settings.hash["match_flips"], settings.fetch.allowed_hosts
(5, True, ())
>>> typed(load_config(overrides=["hash.max_distance=5"]) | {"hash": {**DEFAULTS["hash"], "max_distance": "5"}})
Traceback (most recent call last):
ValueError: hash.max_distance must be an integer, got '5'
>>> typed({**load_config(), "verify": {**load_config()["verify"], "min_inlier": 20}})
Traceback (most recent call last):
ValueError: unknown setting: verify.min_inlier
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from dedup.config import DEFAULTS

Table = Mapping[str, Any]  # one table of the settings, typed (a TableSettings) or a plain dict


class TableSettings(Mapping):
    """Base of the generated table classes: a frozen dataclass that also reads as a mapping."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def as_dict(self) -> dict[str, Any]:
        """The table as a plain dict (lists as lists), as a config or a manifest holds it."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.items()}


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


def _table_class(name: str, defaults: dict[str, Any]) -> type[TableSettings]:
    fields = [(key, tuple[str, ...] if isinstance(value, list) else type(value)) for key, value in defaults.items()]
    title = "".join(part.capitalize() for part in name.split("_"))
    cls = dataclasses.make_dataclass(f"{title}Settings", fields, bases=(TableSettings,), frozen=True,
                                     module=__name__)  # fmt: skip
    cls.__doc__ = f"The ``{name}`` table (dedup/config.py): {', '.join(defaults)}."
    return cls


TABLES: dict[str, type[TableSettings]] = {
    name: _table_class(name, table) for name, table in DEFAULTS.items() if name != "spark"
}
globals().update({cls.__name__: cls for cls in TABLES.values()})  # importable by name: pickles to executors


def _same_keys(given: Mapping[str, Any], known: Mapping[str, Any], what: str, prefix: str = "") -> None:
    """ValueError naming the first key of ``given`` that ``known`` lacks, or the first it misses."""
    for kind, keys in (("unknown", set(given) - set(known)), ("missing", set(known) - set(given))):
        if keys:
            raise ValueError(f"{kind} {what}: {prefix}{sorted(keys)[0]}")


def table_of(name: str, values: Mapping[str, Any]) -> TableSettings:
    """One table checked and typed: every key of the defaults' table, no other, each of its type."""
    defaults = DEFAULTS[name]
    _same_keys(values, defaults, "setting", f"{name}.")
    return TABLES[name](**{key: _checked(f"{name}.{key}", values[key], defaults[key]) for key in defaults})


@dataclasses.dataclass(frozen=True)
class Settings:
    """A whole config, typed: ``spark`` (a dict of strings) and one frozen table per job table."""

    spark: dict[str, str]
    ingest: Any
    fetch: Any
    features: Any
    hash: Any
    embed: Any
    cosine: Any
    exact: Any
    verify: Any
    groups: Any
    output: Any


def typed(cfg: Mapping[str, Any]) -> Settings:
    """``cfg`` (a merged config: the defaults, a TOML profile, ``--set``) as :class:`Settings`;
    ValueError naming the first unknown table or key, or the first value of the wrong type."""
    _same_keys(cfg, DEFAULTS, "settings table")
    tables = {name: table_of(name, cfg[name]) for name in TABLES}
    return Settings(spark={key: str(value) for key, value in cfg["spark"].items()}, **tables)
