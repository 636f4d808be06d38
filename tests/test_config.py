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
