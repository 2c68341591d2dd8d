"""The cluster file: parsing, units, overrides, profile arguments, and a clear error for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plinth import ConfigError
from plinth_sparsepipe.pipe.cluster import load_cluster, parse_quantity
from plinth_sparsepipe.pipe.planner import make_plan
from plinth_sparsepipe.pipe.profile import save_profile

from .plan_helpers import profile

REPO = Path(__file__).resolve().parents[2]

GOOD = """
name = "two"
inter_server_bandwidth = "100 MB/s"

[types.fast]
profile = "p/fast.json"
memory = "16 GB"

[types.slow]
profile = "p/fast.json"
speed = 0.5

[[servers]]
name = "a"
intra_server_bandwidth = 1.2e10
devices = { fast = 2 }

[[servers]]
name = "b"
intra_server_bandwidth = "12 GB/s"
devices = { fast = 1, slow = 1 }
"""


@pytest.fixture
def files(tmp_path):
    save_profile(profile([1, 2, 3], [4, 5, 6], feats=[1, 1, 0], device_type="fast"), tmp_path / "p" / "fast.json")
    save_profile(profile([1, 2, 3], [4, 5, 6], device_type="other"), tmp_path / "p" / "other.json")
    save_profile(profile([1, 2], [4, 5], device_type="fast"), tmp_path / "p" / "short.json")
    (tmp_path / "c.toml").write_text(GOOD)
    return tmp_path


def write(tmp_path, text) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_units_speed_and_memory(files):
    c = load_cluster(files / "c.toml")
    assert c.name == "two" and c.inter_bandwidth == 1e8
    assert [(s.name, s.intra_bandwidth, s.devices) for s in c.servers] == [
        ("a", 1.2e10, {"fast": 2}), ("b", 1.2e10, {"fast": 1, "slow": 1})]
    assert c.types["fast"].memory == 16e9 and c.types["slow"].memory is None
    assert c.types["slow"].profile.total_time_s == pytest.approx(12.0)  # 6 s at speed 0.5
    assert c.types["slow"].profile.source == "scaled"
    assert [d.id for d in c.devices()] == ["a/fast/0", "a/fast/1", "b/fast/0", "b/slow/0"]
    assert c.layer_names == ["l0", "l1", "l2"] and c.batch_size == 1


@pytest.mark.parametrize("text, value", [
    ("10 GB/s", 1e10), ("100MB/s", 1e8), ("12 GiB", 12 * 2**30), ("1.5e3 kB", 1.5e6), ("10 Gbit/s", 1.25e9),
    (7e9, 7e9),
])
def test_quantities(text, value):
    assert parse_quantity(text) == pytest.approx(value)


def test_overrides_reach_every_level(files):
    c = load_cluster(files / "c.toml", overrides=[
        'inter_server_bandwidth="1 GB/s"', "types.slow.speed=0.25", "servers.b.devices.fast=3",
        "servers.0.intra_server_bandwidth=5e9",
    ])
    assert c.inter_bandwidth == 1e9
    assert c.types["slow"].profile.total_time_s == pytest.approx(24.0)
    assert c.server("b").devices == {"fast": 3, "slow": 1} and c.server("a").intra_bandwidth == 5e9


def test_profile_arguments_replace_the_files(files):
    c = load_cluster(files / "c.toml", profiles=[f"slow={files / 'p' / 'other.json'}"])
    assert c.types["slow"].profile_path == files / "p" / "other.json"
    c = load_cluster(files / "c.toml", profiles=[f"fast,slow={files / 'p' / 'other.json'}"])
    assert {t.profile_path for t in c.types.values()} == {files / "p" / "other.json"}
    c = load_cluster(files / "c.toml", profiles=[str(files / "p" / "fast.json")])  # by its device_type
    assert c.types["fast"].profile_path == files / "p" / "fast.json"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('devices = { fast = 2 }', 'devices = { fats = 2 }'),
     r"bad.toml: servers\[0\].devices.fats: no device type 'fats' in \[types\] \(declared: fast, slow\)"),
    (lambda t: t.replace('devices = { fast = 2 }', 'devices = { fast = 0 }'),
     r"bad.toml: servers\[0\].devices.fast: Input should be greater than or equal to 1"),
    (lambda t: t.replace('devices = { fast = 2 }', 'devices = {}'), r"bad.toml: servers\[0\].devices: "),
    (lambda t: t.replace('inter_server_bandwidth = "100 MB/s"', ""),
     r"bad.toml: inter_server_bandwidth: required when there is more than one server"),
    (lambda t: t.replace('"100 MB/s"', '"fast"'), r"bad.toml: inter_server_bandwidth: expected a number of bytes"),
    (lambda t: t.replace('"100 MB/s"', "-1"), r"bad.toml: inter_server_bandwidth: Input should be greater than 0"),
    (lambda t: t.replace("speed = 0.5", "speed = 0"), r"bad.toml: types.slow.speed: Input should be greater than 0"),
    (lambda t: t.replace('memory = "16 GB"', 'memroy = "16 GB"'), r"bad.toml: types.fast.memroy: unknown key"),
    (lambda t: t.replace('name = "b"', 'name = "a"'), r"bad.toml: servers\[1\].name: 'a' is used by two servers"),
    (lambda t: t.replace('intra_server_bandwidth = 1.2e10\n', ''),
     r"bad.toml: servers\[0\].intra_server_bandwidth: Field required"),
    (lambda t: t.replace('profile = "p/fast.json"\nmemory', 'profile = "p/nope.json"\nmemory'),
     r"bad.toml: types.fast.profile: .*nope.json: no such profile file"),
    (lambda t: t.replace('profile = "p/fast.json"\nspeed', 'profile = "p/short.json"\nspeed'),
     r"bad.toml: types.slow.profile \(.*short.json\) vs types.fast.profile: layers\[2\] is '\(end\)', expected 'l2'"),
    (lambda t: t.replace('profile = "p/fast.json"\nmemory', 'memory'),
     r"bad.toml: types.fast.profile: missing; set it in the file or pass fast=PROFILE.json"),
    (lambda t: t + "\n[oops", r"bad.toml: TOML syntax error"),
    (lambda t: 'format = "plinth-sparsepipe-cluster/9"\n' + t, r"bad.toml: format: expected 'plinth-sparsepipe-cluster/1'"),
])
def test_bad_cluster_files_name_file_and_field(files, change, message):
    with pytest.raises(ConfigError, match=message):
        load_cluster(write(files, change(GOOD)))


def test_profiles_of_different_models_are_refused(files):
    save_profile(profile([1, 2, 3], [4, 5, 7], device_type="fast"), files / "p" / "params.json")
    save_profile(profile([1, 2, 3], [4, 5, 6], device_type="fast", batch_size=2), files / "p" / "batch.json")
    with pytest.raises(ConfigError, match=r"layers\[2\].parameter_bytes 7.0 != 6.0"):
        load_cluster(files / "c.toml", profiles=[f"slow={files / 'p' / 'params.json'}"])
    with pytest.raises(ConfigError, match="batch_size 2 != 1"):
        load_cluster(files / "c.toml", profiles=[f"slow={files / 'p' / 'batch.json'}"])


def test_bad_overrides_and_profile_arguments(files):
    with pytest.raises(ConfigError, match=r"--set 'servers.zz.devices.fast=1': .* no servers entry 'zz' \(a, b\)"):
        load_cluster(files / "c.toml", overrides=["servers.zz.devices.fast=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_cluster(files / "c.toml", overrides=["inter_server_bandwidth"])
    with pytest.raises(ConfigError, match=r"'gpu' is not a device type of .*c.toml \(fast, slow\)"):
        load_cluster(files / "c.toml", profiles=[f"gpu={files / 'p' / 'other.json'}"])
    with pytest.raises(ConfigError, match=r"its device_type 'other' is not a type .*assign it with TYPE="):
        load_cluster(files / "c.toml", profiles=[str(files / "p" / "other.json")])
    with pytest.raises(ConfigError, match="no such cluster file"):
        load_cluster(files / "missing.toml")


@pytest.mark.parametrize("name", ["paper-8gpu.toml", "cpu-emulated.toml"])
def test_example_clusters_plan(name):
    c = load_cluster(REPO / "examples" / "clusters" / name)
    plan = make_plan(c)
    assert plan.fits_memory and plan.speedup["data-parallel"] >= 1 and plan.speedup["even-split"] >= 1
    assert plan.world_size + len(plan.unused_devices) == len(c.devices())


def test_paper_example_matches_the_published_iteration_times():
    """The example scales one profile to 0.72 / 1.11 / 1.47 s per iteration (RTX / Titan V / Titan Xp)."""
    c = load_cluster(REPO / "examples" / "clusters" / "paper-8gpu.toml")
    totals = {t: round(x.profile.total_time_s, 2) for t, x in c.types.items()}
    assert totals == {"rtx": 0.72, "titan-v": 1.11, "titan-xp": 1.47}
    raw = json.loads((REPO / "examples" / "clusters" / "profiles" / "sparse-vgg16-bn-b64-estimate.json").read_text())
    assert raw["source"] == "estimate" and raw["batch_size"] == 64
