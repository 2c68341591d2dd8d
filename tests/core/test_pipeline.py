"""Pipeline validation: every problem is reported with file, stage and field, before anything runs."""

from pathlib import Path

import pytest

from plinth.errors import ConfigError
from plinth.pipeline import build_plan
from plinth.registry import Registry, load_registry


GOOD = "\n" + (Path(__file__).parents[1] / "fixtures" / "pipelines" / "good.toml").read_text()


@pytest.fixture
def pm(use_fixture_plugins):
    return use_fixture_plugins("good")


def plan(tmp_path, pm, text, overrides=None, registry=None):
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    return build_plan(path, pm, registry or Registry(None, {"trainer": "summer"}), overrides=overrides)


def test_valid_pipeline_plans_in_order(tmp_path, pm):
    p = plan(tmp_path, pm, GOOD)
    assert [s.id for s in p.stages] == ["data", "train"]
    assert p.stage("train").component_name == "summer"  # from the registry default
    assert p.stage("train").component.config.steps == 3
    assert p.stage("train").strategy_name == "single"
    assert p.run_dir == (tmp_path / "runs" / "t").resolve() or p.run_dir.name == "t"


def test_resolution_order_cli_over_file_over_registry(tmp_path, pm):
    bare = GOOD.replace("steps = 3\n", "")
    text = bare.replace('slot = "trainer"', 'slot = "trainer"\ncomponent = "summer"')
    reg = Registry(None, {"trainer": "allreduce"})
    assert plan(tmp_path, pm, bare, registry=reg).stage("train").component_name == "allreduce"
    assert plan(tmp_path, pm, text, registry=reg).stage("train").component_name == "summer"
    p = plan(tmp_path, pm, text, registry=reg, overrides=["train.component=allreduce"])
    assert p.stage("train").component_name == "allreduce"
    # allreduce has no `steps` parameter: the override is validated like the file
    with pytest.raises(ConfigError, match="stages.train.steps: unknown key"):
        plan(tmp_path, pm, text, overrides=["train.component=allreduce", "train.steps=7"])


def test_overrides_are_typed(tmp_path, pm):
    p = plan(tmp_path, pm, GOOD, overrides=["train.steps=7", "train.sleep=0.5", "data.n=2"])
    assert p.stage("train").component.config.steps == 7 and p.stage("train").component.config.sleep == 0.5
    with pytest.raises(ConfigError, match="no stage 'trian'"):
        plan(tmp_path, pm, GOOD, overrides=["trian.steps=7"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        plan(tmp_path, pm, GOOD, overrides=["train.steps"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[stages.data\nslot = 1", "TOML syntax error.*line 1"),
        ('[stages.data]\nslot = "teacher"\n', "stages.data.slot: unknown slot 'teacher'"),
        ('[stages.data]\nslot = "generator"\ncomponent = "number"\n', "did you mean 'numbers'"),
        ('[stages.data]\nslot = "generator"\ncomponent = "numbers"\nn = "many"\n', "stages.data.n: Input should be a valid integer"),
        ('[stages.data]\nslot = "generator"\ncomponent = "numbers"\nn = 0\n', "stages.data.n: Input should be greater than or equal to 1"),
        ('[stages.data]\nslot = "generator"\ncomponent = "numbers"\nnn = 3\n', "stages.data.nn: unknown key"),
        ('[stages.data]\nslot = "merger"\n', "no component named and registry.toml sets no default merger"),
        ('[stages.t]\nslot = "trainer"\ninputs = { dataset = "nowhere.dataset" }\n', "stages.t.inputs.dataset: no stage 'nowhere'"),
        ('[stages.t]\nslot = "trainer"\n', "needs input\\(s\\) \\['dataset'\\]"),
        ('[stages.t]\nslot = "trainer"\ninputs = { dataset = "data" }\n', "must be 'stage.output'"),
        ('[stages.t]\nslot = "trainer"\ninputs = { dataset = "data.dataset" }\n[stages.data]\nslot = "generator"\ncomponent = "numbers"\n', "does not run before 't'"),
        (GOOD.replace('"data.dataset"', '"data.rows"'), "stage 'data' \\(numbers\\) has no output 'rows'; it produces dataset"),
        (GOOD.replace("steps = 3", 'steps = 3\nstrategy = "dpp"'), "stages.train.strategy: unknown strategy 'dpp' — did you mean 'ddp'"),
        (GOOD.replace("steps = 3", 'steps = 3\nstrategy = { name = "ddp", nproc_per_node = 0 }'), "stages.train.strategy.nproc_per_node"),
        ("[run]\nname = 'x'\n", "stages: Field required"),
        (GOOD + "\n[extra]\n", "extra: unknown key"),
    ],
)
def test_bad_pipelines(tmp_path, pm, text, expected):
    with pytest.raises(ConfigError, match=expected) as exc:
        plan(tmp_path, pm, text)
    assert "pipeline.toml" in str(exc.value)


def test_all_problems_reported_at_once(tmp_path, pm):
    text = '[stages.a]\nslot = "generator"\ncomponent = "numbers"\nn = "x"\n[stages.b]\nslot = "oops"\n'
    with pytest.raises(ConfigError) as exc:
        plan(tmp_path, pm, text)
    assert "stages.a.n" in str(exc.value) and "stages.b.slot" in str(exc.value)


def test_repeat_expands_rounds_and_feeds_outputs_forward(tmp_path, pm):
    text = GOOD.replace('inputs = { dataset = "data.dataset" }', 'inputs = { dataset = "data.dataset" }') + """
[stages.eval]
slot = "evaluator"
component = "score"
inputs = { models = ["train.checkpoint"] }

[repeat]
stages = ["data", "train"]
rounds = 3
feed = { "train.dataset" = "data.dataset" }
"""
    p = plan(tmp_path, pm, text)
    assert [s.id for s in p.stages] == ["data@1", "train@1", "data@2", "train@2", "data@3", "train@3", "eval"]
    assert p.stage("train@2").inputs["dataset"] == ("ref", "data@1", "dataset")  # fed from the previous round
    assert p.stage("train@1").inputs["dataset"] == ("ref", "data@1", "dataset")
    assert p.stage("eval").inputs["models"] == [("ref", "train@3", "checkpoint")]  # after the group: last round


def test_cli_validate(tmp_path, use_fixture_plugins, plinth_cmd):
    use_fixture_plugins("good")
    (tmp_path / "registry.toml").write_text('[defaults]\ntrainer = "summer"\n')
    (tmp_path / "p.toml").write_text(GOOD)
    res = plinth_cmd("validate", "p.toml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "valid — 2 stage(s)" in res.stdout and "train: trainer 'summer'" in res.stdout
    res = plinth_cmd("validate", "p.toml", "--set", "train.steps=-1", cwd=tmp_path)
    assert res.returncode == 2 and "p.toml: stages.train.steps" in res.stderr
    (tmp_path / "registry.toml").write_text('[plugins]\nrequired = ["plinth-nonexistent>=0.1"]\n')
    res = plinth_cmd("validate", "p.toml", cwd=tmp_path)
    assert res.returncode == 2 and "plinth-nonexistent>=0.1 is not installed" in res.stderr
