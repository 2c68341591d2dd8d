"""The command line around validation: several files, messages instead of tracebacks for any bad input,
`--force` of an unknown stage, `--registry` after the subcommand, `describe` in TOML terms, tables at 80 columns."""

from __future__ import annotations

import re

import pytest


BROKEN = {
    "syntax.toml": "[stages.a\nslot = 1",
    "stages-number.toml": "stages = 3\n",
    "stage-number.toml": "[stages]\na = 1\n",
    "slot-number.toml": '[stages.a]\nslot = 3\n',
    "inputs-number.toml": '[stages.a]\nslot = "trainer"\ninputs = 5\n',
    "input-number.toml": '[stages.a]\nslot = "trainer"\ninputs = { dataset = [1] }\n',
    "strategy-number.toml": '[stages.a]\nslot = "trainer"\nstrategy = 5\ninputs = { dataset = "x.y" }\n',
    "component-list.toml": '[stages.a]\nslot = "trainer"\ncomponent = ["summer"]\n',
    "repeat-bad.toml": '[stages.a]\nslot = "generator"\ncomponent = "numbers"\n[repeat]\nstages = ["nope"]\nrounds = "x"\nfeed = 3\n',
    "external-bad.toml": '[stages.a]\nslot = "trainer"\ninputs = { dataset = { path = 3, kind = [] } }\n',
    "empty.toml": "",
    "run-table.toml": "run = 1\n[stages.a]\nslot = 'generator'\ncomponent = 'numbers'\n",
}


@pytest.fixture
def project(tmp_path, use_fixture_plugins, fixture_pipeline):
    use_fixture_plugins("good")
    (tmp_path / "registry.toml").write_text('[defaults]\ntrainer = "summer"\n')
    (tmp_path / "p.toml").write_text(fixture_pipeline)
    return tmp_path


def test_several_files_each_reported(project, plinth_cmd, fixture_pipeline):
    (project / "q.toml").write_text(fixture_pipeline.replace("n = 4", "n = 0"))
    res = plinth_cmd("validate", "p.toml", "q.toml", "p.toml", cwd=project)
    assert res.returncode == 2
    assert res.stdout.count("p.toml: valid — 2 stage(s)") == 2
    assert "q.toml: stages.data.n: Input should be greater than or equal to 1" in res.stderr
    assert "2 of 3 pipeline files valid; invalid: q.toml" in res.stderr
    res = plinth_cmd("validate", "p.toml", "p.toml", cwd=project)
    assert res.returncode == 0 and "2 of 2 pipeline files valid" in res.stdout


def test_non_utf8_file_and_folder_give_a_message(project, plinth_cmd):
    (project / "latin1.toml").write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))
    (project / "folder.toml").mkdir()
    res = plinth_cmd("validate", "latin1.toml", "folder.toml", "absent.toml", ".", cwd=project)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "latin1.toml: not UTF-8 text (byte 17); TOML files are UTF-8" in res.stderr
    assert ".: is a folder" in res.stderr
    assert "folder.toml: is a folder; give a pipeline file (.toml)" in res.stderr
    assert "absent.toml: no such pipeline file" in res.stderr


def test_no_traceback_for_broken_pipeline_files(project, plinth_cmd):
    for name, text in BROKEN.items():
        (project / name).write_text(text)
    res = plinth_cmd("validate", *BROKEN, cwd=project)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    for name in BROKEN:
        assert f"{name}: " in res.stderr, name
    for line in res.stderr.splitlines():  # one line per problem, each naming its file
        assert line.startswith(("plinth: error: ", *BROKEN, "0 of")), line


def test_force_of_an_unknown_stage_is_an_error(project, plinth_cmd):
    res = plinth_cmd("run", "p.toml", "--force", "trian", cwd=project)
    assert res.returncode == 2, res.stderr
    assert "p.toml: --force trian: no such stage; stages are data, train" in res.stderr
    assert not (project / "runs" / "t" / "manifest.json").exists()  # refused before anything ran


def test_registry_after_the_subcommand(project, plinth_cmd, fixture_pipeline):
    (project / "other.toml").write_text('[defaults]\ntrainer = "allreduce"\n')
    (project / "p.toml").write_text(fixture_pipeline.replace("steps = 3\n", ""))
    for args in (["--registry", "other.toml", "validate", "p.toml"], ["validate", "p.toml", "--registry", "other.toml"]):
        res = plinth_cmd(*args, cwd=project)
        assert res.returncode == 0, res.stderr
        assert "train: trainer 'allreduce'" in res.stdout
    res = plinth_cmd("validate", "p.toml", cwd=project)
    assert "train: trainer 'summer'" in res.stdout  # without it: ./registry.toml


def test_describe_shows_toml_keys_and_literal_choices(plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    res = plinth_cmd("describe", "merger", "ties", env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    names = [line.split("│")[1].strip() for line in res.stdout.splitlines() if line.startswith("│")]
    assert "copy" in names and "lambda" in names
    assert "copy_" not in names and "lambda_" not in names
    assert "'per_tensor' | 'global'" in res.stdout
    assert "'error' | 'common'" in res.stdout
    assert "inputs: models (model), base (model)" in res.stdout and "outputs: model (model)" in res.stdout
    res = plinth_cmd("describe", "generator", "teacher", env={"COLUMNS": "200"})
    assert "outputs: sft (dataset), kto (dataset), eval (dataset), items (dataset)" in res.stdout


def test_tables_never_cut_words_at_80_columns(plinth_cmd, monkeypatch):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    for args, words in ((["plugins"], ["register_strategies", "register_evaluators", "multiple-choice",
                                       "plinth-sparsepipe", "plinth-deepspeed"]),
                        (["registry"], ["modelnet40", "ply_points", "task_arithmetic", "dare_linear"]),
                        (["describe", "trainer", "sft"], ["gradient_accumulation_steps", "'constant_with_warmup'",
                                                          "smollm2-135m-instruct"])):
        res = plinth_cmd(*args, env={"COLUMNS": "80"})
        assert res.returncode == 0, res.stderr
        assert max(len(line) for line in res.stdout.splitlines()) <= 80
        text = re.sub(r"[│┃]", " ", res.stdout)
        for word in words:
            assert word in text, (args, word)


def test_bad_registry_files_give_a_message(project, plinth_cmd):
    (project / "registry.toml").write_bytes(b'[defaults]\ntrainer = "caf\xe9"\n')
    res = plinth_cmd("validate", "p.toml", cwd=project)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "registry.toml: not UTF-8 text" in res.stderr
    (project / "reg").mkdir()
    res = plinth_cmd("validate", "p.toml", "--registry", "reg", cwd=project)
    assert res.returncode == 2 and "registry file reg does not exist (it is a folder)" in res.stderr
