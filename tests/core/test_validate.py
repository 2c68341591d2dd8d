"""`plinth validate` catches, before any stage works, what used to fail only after upstream stages trained:
misspelled outputs, inputs of the wrong kind, missing paths, model names that do not resolve, merges of models
that do not fit together, datasets without the fields a trainer reads. Real plugins, tiny files, no training."""

from __future__ import annotations

import json

import pytest

from plinth.errors import ConfigError
from plinth.pipeline import build_plan
from plinth.registry import Registry

HEAD = '[run]\nname = "v"\n'
TEACHER = """
[stages.data]
slot = "generator"
component = "teacher"
seeds = { tasks = ["basic_arithmetic"], size = 4 }
kto = { enabled = false }
"""
SFT = """
[stages.sft]
slot = "trainer"
component = "sft"
max_steps = 2
inputs = { dataset = "data.sft" }
"""


def validate(tmp_path, plugins, text):
    path = tmp_path / "pipeline.toml"
    path.write_text(HEAD + text)
    return build_plan(path, plugins, Registry(None))


def errors(tmp_path, plugins, text) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate(tmp_path, plugins, text)
    lines = str(exc.value).splitlines()
    assert all(line.startswith(f"{tmp_path / 'pipeline.toml'}: ") for line in lines), lines
    return lines


def model_folder(path, **config):
    path.mkdir(parents=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 100}
    (path / "config.json").write_text(json.dumps({**cfg, **config}))
    return path


def test_every_builtin_component_declares_outputs_and_input_kinds(plugins):
    for slot in ("generator", "trainer", "merger", "evaluator"):
        for name in plugins.components[slot]:
            cls = plugins.get(slot, name)
            assert isinstance(cls.outputs, dict) and cls.outputs, (slot, name)
            assert all(cls.outputs.values()), (slot, name)  # every output has a kind
            assert cls.input_kinds is not None, (slot, name)


def test_a_good_pipeline_still_validates(tmp_path, plugins):
    plan = validate(tmp_path, plugins, TEACHER + SFT)
    assert [s.id for s in plan.stages] == ["data", "sft"]


def test_output_name_typo(tmp_path, plugins):
    lines = errors(tmp_path, plugins, TEACHER + SFT + """
[stages.eval]
slot = "evaluator"
component = "exact-match"
reasoning_gym = "basic_arithmetic"
inputs = { models = ["sft.modle"] }
""")
    assert lines == [f"{tmp_path / 'pipeline.toml'}: stages.eval.inputs.models: stage 'sft' (sft) has no output "
                     "'modle'; it produces model, metrics"]


def test_outputs_follow_the_config(tmp_path, plugins):
    """The teacher writes `kto` only with kto.enabled, and `eval` only with output.eval_size."""
    lines = errors(tmp_path, plugins, TEACHER + SFT.replace('"data.sft"', '"data.kto"'))
    assert "stage 'data' (teacher) has no output 'kto'" in lines[0]
    lines = errors(tmp_path, plugins, TEACHER + SFT.replace('"data.sft"', '"data.eval"'))
    assert "has no output 'eval'" in lines[0]


def test_input_of_the_wrong_kind(tmp_path, plugins):
    lines = errors(tmp_path, plugins, TEACHER + SFT + """
[stages.kto]
slot = "trainer"
component = "kto"
inputs = { dataset = "sft.model" }
""")
    assert lines == [f"{tmp_path / 'pipeline.toml'}: stages.kto.inputs.dataset: 'sft.model' is a 'model' artifact; "
                     "this input takes 'dataset'"]


def test_input_name_the_component_does_not_read(tmp_path, plugins):
    lines = errors(tmp_path, plugins, TEACHER + SFT.replace("dataset = ", "datset = "))
    assert any("stages.sft.inputs.datset: component 'sft' reads no input 'datset'" in line for line in lines)


def test_missing_dataset_and_model_paths(tmp_path, plugins):
    lines = errors(tmp_path, plugins, """
[stages.sft]
slot = "trainer"
component = "sft"
inputs = { dataset = { path = "data/missing.jsonl" } }

[stages.eval]
slot = "evaluator"
component = "exact-match"
reasoning_gym = "basic_arithmetic"
inputs = { models = [{ path = "models/gone" }] }
""")
    assert f"stages.sft.inputs.dataset: path {tmp_path / 'data/missing.jsonl'} does not exist" in lines[0]
    assert f"stages.eval.inputs.models: path {tmp_path / 'models/gone'} does not exist" in lines[1]


def test_external_input_takes_the_kind_its_consumer_reads(tmp_path, plugins):
    (tmp_path / "rows.jsonl").write_text('{"prompt": "1+1", "completion": "2"}\n')
    plan = validate(tmp_path, plugins, SFT.replace('"data.sft"', '{ path = "rows.jsonl" }'))
    assert plan.stage("sft").inputs["dataset"][1].kind == "dataset"  # no kind written: not the default 'model'
    lines = errors(tmp_path, plugins, SFT.replace('"data.sft"', '{ path = "rows.jsonl", kind = "metrics" }'))
    assert "is a 'metrics' artifact; this input takes 'dataset'" in lines[0]


def with_model(value: str) -> str:
    return TEACHER + SFT.replace("max_steps = 2", f"max_steps = 2\nmodel = {value!r}")


@pytest.mark.parametrize("where, text", [
    ("stages.sft.model", with_model("smollm-135m-instruct")),  # a typo of the alias
    ("stages.sft.model", with_model("./no/such/folder")),
    ("stages.sft.model", with_model("nobody/not-cached-model-xyz")),  # a hub id, and the hub is offline
    ("stages.m.base", TEACHER + SFT + '[stages.m]\nslot = "merger"\ncomponent = "ties"\nbase = "smolm2"\n'
                      'inputs = { models = ["sft.model"] }\n'),
    ("stages.e.baseline", '[stages.e]\nslot = "evaluator"\ncomponent = "exact-match"\nbaseline = "qwen-0.5b"\n'
                          'reasoning_gym = "basic_arithmetic"\n'),
    ("stages.data.kto.student", TEACHER.replace("kto = { enabled = false }", 'kto = { student = "tiny" }')),
])
def test_model_names_that_do_not_resolve(tmp_path, plugins, where, text, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lines = errors(tmp_path, plugins, text)
    assert len(lines) == 1 and f"{where}: model '" in lines[0], lines


def test_model_folder_given_relative_to_the_pipeline_file(tmp_path, plugins, monkeypatch):
    model_folder(tmp_path / "models" / "start")
    monkeypatch.chdir(tmp_path.parent)  # not the pipeline's folder
    plan = validate(tmp_path, plugins, TEACHER + SFT.replace("max_steps = 2", 'max_steps = 2\nmodel = "models/start"'))
    assert plan.stage("sft").component.config.model == str(tmp_path / "models" / "start")
    model_folder(tmp_path / "empty", vocab_size=1)
    (tmp_path / "empty" / "config.json").unlink()
    lines = errors(tmp_path, plugins, TEACHER + SFT.replace("max_steps = 2", 'max_steps = 2\nmodel = "empty"'))
    assert "holds no config.json" in lines[0]


def test_merge_of_models_with_different_shapes(tmp_path, plugins):
    model_folder(tmp_path / "a")
    model_folder(tmp_path / "b", hidden_size=32)
    model_folder(tmp_path / "c", vocab_size=120)  # vocab differences are vocab_mismatch's business, not an error
    text = '[stages.m]\nslot = "merger"\ncomponent = "linear"\ninputs = { models = [{ path = "a" }, { path = "%s" }] }\n'
    lines = errors(tmp_path, plugins, text % "b")
    assert lines == [f"{tmp_path / 'pipeline.toml'}: stages.m.inputs: models 'models[0]' and 'models[1]' differ "
                     "(hidden_size 64 vs 32); they cannot be merged"]
    validate(tmp_path, plugins, text % "c")


def test_merge_needs_a_base_where_the_method_does(tmp_path, plugins):
    model_folder(tmp_path / "a")
    lines = errors(tmp_path, plugins, '[stages.m]\nslot = "merger"\ncomponent = "ties"\n'
                                      'inputs = { models = [{ path = "a" }] }\n')
    assert "stages.m.base: 'ties' needs a base model" in lines[0]


def test_dataset_first_rows_lack_the_fields(tmp_path, plugins):
    (tmp_path / "sft.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    (tmp_path / "kto.jsonl").write_text('{"prompt": "1+1", "completion": "2"}\n')
    lines = errors(tmp_path, plugins, SFT.replace('"data.sft"', '{ path = "sft.jsonl" }') + """
[stages.kto]
slot = "trainer"
component = "kto"
inputs = { dataset = { path = "kto.jsonl" } }
""")
    assert "stages.sft.inputs.dataset: dataset" in lines[0] and "no known fields" in lines[0]
    assert "stages.kto.inputs.dataset: dataset" in lines[1] and "missing field(s) ['label']" in lines[1]


def test_task_file_first_row_lacks_the_fields(tmp_path, plugins):
    (tmp_path / "task.jsonl").write_text('{"q": "1+1", "answer": "2"}\n')
    lines = errors(tmp_path, plugins, '[stages.e]\nslot = "evaluator"\ncomponent = "exact-match"\n'
                                      'task_file = "task.jsonl"\nbaseline = "smollm2-135m-instruct"\n')
    assert len(lines) == 1 and "stages.e.task_file: task file" in lines[0] and "question_field" in lines[0]


def test_round_names_cannot_be_declared(tmp_path, plugins):
    lines = errors(tmp_path, plugins, TEACHER.replace("[stages.data]", '[stages."data@2"]'))
    assert "stages.data@2: '@' is reserved for the rounds the runner names" in lines[0]
    lines = errors(tmp_path, plugins, TEACHER.replace("[stages.data]", '[stages."data.v2"]'))
    assert "stage names use letters, digits" in lines[0]


def test_every_problem_at_once_one_line_each(tmp_path, plugins):
    lines = errors(tmp_path, plugins, TEACHER + SFT.replace("max_steps = 2", "max_steps = 0") + """
[stages.kto]
slot = "trainer"
component = "kto"
model = "no-such-alias"
inputs = { dataset = "sft.model" }

[stages.merge]
slot = "merger"
component = "linear"
inputs = { models = ["sft.modle", "kto.model"] }

[stages.eval]
slot = "evaluator"
component = "exact-match"
task_file = "missing.jsonl"
inputs = { models = ["merge.model"] }
""")
    text = "\n".join(lines)
    for expected in ("stages.sft.max_steps", "stages.kto.model: model 'no-such-alias'",
                     "stages.eval.task_file: ", "missing.jsonl: no such file"):
        assert expected in text, text
    assert len(lines) == 3  # sft's config failed, so references to its outputs cannot be judged yet


def test_repeat_feed_is_checked_like_inputs(tmp_path, plugins):
    base = TEACHER.replace("kto = { enabled = false }", "") + SFT
    lines = errors(tmp_path, plugins, base + '[repeat]\nstages = ["data", "sft"]\nrounds = 2\n'
                                              'feed = { "data.student" = "sft.modle" }\n')
    assert lines == [f"{tmp_path / 'pipeline.toml'}: repeat.feed.data.student: stage 'sft' (sft) has no output "
                     "'modle'; it produces model, metrics"]
    lines = errors(tmp_path, plugins, base + '[repeat]\nstages = ["data", "sft"]\nrounds = 2\n'
                                              'feed = { "data.student" = "sft.metrics" }\n')
    assert "'sft.metrics' is a 'metrics' artifact; this input takes 'model'" in lines[0]
    validate(tmp_path, plugins, base + '[repeat]\nstages = ["data", "sft"]\nrounds = 2\n'
                                       'feed = { "data.student" = "sft.model" }\n')


def test_judge_back_end_must_be_registered(tmp_path, plugins):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    text = ('[stages.j]\nslot = "evaluator"\ncomponent = "judge"\ntask_file = "prompts.jsonl"\n'
            'baseline = "smollm2-135m-instruct"\njudge_backend = "%s"\njudge = { model = "m" }\n')
    lines = errors(tmp_path, plugins, text % "opneai")
    assert len(lines) == 1 and "stages.j.judge_backend: " in lines[0] and "did you mean 'openai'" in lines[0], lines
    validate(tmp_path, plugins, text % "openai")
