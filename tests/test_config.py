import pytest

from dedup.config import DEFAULTS, load_config


def test_defaults_are_copied_not_shared():
    cfg = load_config()
    cfg["fetch"]["max_attempts"] = 99
    assert DEFAULTS["fetch"]["max_attempts"] != 99


def test_overrides_take_the_type_of_the_setting():
    cfg = load_config(
        overrides=[
            "hash.max_distance=5",
            "fetch.total_timeout_s=1.5",
            "verify.exclude_same_family=false",
            "fetch.allowed_hosts=127.0.0.1, localhost",
            "spark.sql.shuffle.partitions=3",
        ]
    )
    assert cfg["hash"]["max_distance"] == 5
    assert cfg["fetch"]["total_timeout_s"] == 1.5
    assert cfg["verify"]["exclude_same_family"] is False
    assert cfg["fetch"]["allowed_hosts"] == ["127.0.0.1", "localhost"]
    assert cfg["spark"]["spark.sql.shuffle.partitions"] == "3"


def test_profile_then_overrides(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text('[spark]\n"spark.executor.memory" = "2g"\n[hash]\nmax_distance = 2\n')
    cfg = load_config(profile, ["hash.max_distance=4"])
    assert cfg["spark"]["spark.executor.memory"] == "2g"
    assert cfg["hash"]["max_distance"] == 4


@pytest.mark.parametrize(
    "override", ["hash.no_such_key=1", "nosection.x=1", "hash.max_distance", "verify.exclude_same_family=maybe"]
)
def test_bad_overrides_are_refused(override):
    with pytest.raises((KeyError, ValueError)):
        load_config(overrides=[override])


def test_unknown_key_in_profile_is_refused(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text("[fetch]\nmax_atempts = 3\n")
    with pytest.raises(KeyError, match=r"fetch\.max_atempts"):
        load_config(profile)


def test_shipped_profiles_load():
    for name in ("local", "cluster", "gpu"):
        assert load_config(f"conf/{name}.toml")["spark"]


def test_every_profile_in_conf_is_a_typed_config():
    from pathlib import Path

    from dedup.settings import typed

    profiles = sorted((Path(__file__).resolve().parent.parent / "conf").glob("*.toml"))
    assert profiles
    for profile in profiles:
        settings = typed(load_config(profile))
        assert settings.hash.max_distance == load_config(profile)["hash"]["max_distance"], profile


# every --set the README and docs/*.md show, as they show it
DOCUMENTED_SETS = [
    "cosine.bands=64", "cosine.rows=25", "cosine.method=knn", "cosine.method=lsh", "embed.backend=none",
    "embed.backend=vgg16", "embed.weights=imagenet", "fetch.allowed_hosts=127.0.0.1",
    "fetch.block_private_networks=false", "groups.keep_rule=price asc,seller_rating desc", "hash.max_distance=2",
    "hash.max_distance=3", "ingest.multiline=false", "ingest.multiline=true", "verify.max_thumb_distance=0.03",
    "verify.photo_match=false", "spark.driver.memory=4g",
]  # fmt: skip


@pytest.mark.parametrize("assignment", DOCUMENTED_SETS)
def test_documented_sets_give_typed_settings(assignment):
    from dedup.settings import typed

    key, _, raw = assignment.partition("=")
    settings = typed(load_config(overrides=[assignment]))
    if key.startswith("spark."):
        assert settings.spark[key] == raw
        return
    table, _, name = key.partition(".")
    expected = load_config(overrides=[assignment])[table][name]
    assert getattr(getattr(settings, table), name) == (tuple(expected) if isinstance(expected, list) else expected)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("[hash]\nmax_distance = '3'\n", r"hash\.max_distance must be an integer, got '3'"),
        ("[verify]\nphoto_match = 1\n", r"verify\.photo_match must be true or false, got 1"),
        ("[fetch]\nallowed_hosts = [1, 2]\n", r"fetch\.allowed_hosts must be a list of strings"),
        ("[verify]\nmax_colour_change = 'a'\n", r"verify\.max_colour_change must be a number"),
    ],
)
def test_wrong_types_are_refused_naming_the_key(tmp_path, profile, message):
    from dedup.settings import typed

    path = tmp_path / "p.toml"
    path.write_text(profile)
    with pytest.raises(ValueError, match=message):
        typed(load_config(path))


def test_typed_tables_are_frozen_and_read_by_attribute_only():
    import dataclasses

    from dedup.settings import HashSettings, default_table, typed

    settings = typed(load_config(overrides=["verify.max_colour_change=1"]))
    assert settings.verify.max_colour_change == 1.0 and isinstance(settings.verify.max_colour_change, float)
    assert isinstance(settings.hash, HashSettings) and settings.hash.max_distance == DEFAULTS["hash"]["max_distance"]
    assert settings.embed.as_dict() == DEFAULTS["embed"] and settings.groups.as_dict() == DEFAULTS["groups"]
    with pytest.raises(TypeError):  # no reading by key: a leaf given a plain dict fails, no table passes as one
        settings.hash["max_distance"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.hash.max_distance = 9
    # a changed copy is checked as the entry checks a table
    assert dataclasses.replace(settings.fetch, allowed_hosts=["a", "b"]).allowed_hosts == ("a", "b")
    with pytest.raises(ValueError, match=r"cosine\.k must be an integer, got 2\.5"):
        dataclasses.replace(settings.cosine, k=2.5)
    assert default_table("hash", max_distance=5) == dataclasses.replace(settings.hash, max_distance=5)
    with pytest.raises(ValueError, match=r"unknown setting: hash\.max_dist"):
        default_table("hash", max_dist=5)
    with pytest.raises(ValueError, match=r"unknown settings table: nope"):
        typed({**load_config(), "nope": {}})


def test_the_run_command_refuses_a_wrong_type_before_spark(tmp_path, capsys):
    from jobs.dedup_job import main

    path = tmp_path / "p.toml"
    path.write_text("[cosine]\nk = 'five'\n")
    assert main(["--catalog", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(path)]) == 2
    assert "cosine.k must be an integer, got 'five'" in capsys.readouterr().err
