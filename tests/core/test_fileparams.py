"""Files named in component parameters count like inputs: resolved against the pipeline file's folder (not the
working directory), checked by `plinth validate`, and part of the stage's config hash by content — editing a task
file re-runs the stage instead of leaving it "unchanged, skipped" with stale results."""

from __future__ import annotations

import json
import shutil

import pytest

from plinth.errors import ConfigError
from plinth.fileparams import MARK
from plinth.pipeline import build_plan
from plinth.registry import Registry


#: every parameter of the built-in plugins that names files (slot, component, dotted field) and its kind
FILE_PARAMS = [
    ("generator", "teacher", "seeds.path", "path"),
    ("generator", "teacher", "dedup.decontaminate", "path"),
    ("generator", "teacher", "kto.student", "path_or_name"),
    ("generator", "modelnet40", "root", "path"),
    ("generator", "ply_points", "train", "glob"),
    ("generator", "ply_points", "test", "glob"),
    ("trainer", "sft", "model", "path_or_name"),
    ("trainer", "kto", "model", "path_or_name"),
    ("merger", "ties", "base", "path_or_name"),
    ("merger", "linear", "base", "path_or_name"),
    ("evaluator", "exact-match", "task_file", "path"),
    ("evaluator", "exact-match", "few_shot_file", "path"),
    ("evaluator", "exact-match", "baseline", "path_or_name"),
    ("evaluator", "multiple-choice", "task_file", "path"),
    ("evaluator", "multiple-choice", "dev_file", "path"),
    ("evaluator", "humaneval", "problems_file", "path"),
    ("evaluator", "perplexity", "task_file", "path"),
    ("evaluator", "judge", "task_file", "path"),
    ("evaluator", "lm-eval", "include_path", "path"),
    ("strategy", "deepspeed", "config_file", "path"),
    ("strategy", "sparsepipe", "plan", "path"),
    ("strategy", "sparsepipe", "cluster", "path"),
]


@pytest.mark.parametrize("slot, component, field, kind", FILE_PARAMS, ids=[f"{c[1]}.{c[2]}" for c in FILE_PARAMS])
def test_file_parameters_are_declared(plugins, slot, component, field, kind):
    config = plugins.get(slot, component).Config
    *sections, name = field.split(".")
    for section in sections:
        config = config.model_fields[section].annotation
    extra = config.model_fields[name].json_schema_extra or {}
    assert extra.get(MARK) == kind


def _exact_match(tmp_path, body='task_file = "tasks/q.jsonl"\n'):
    sub = tmp_path / "project"
    (sub / "tasks").mkdir(parents=True, exist_ok=True)
    task = sub / "tasks" / "q.jsonl"
    if not task.exists():
        task.write_text('{"question": "1+1", "answer": "2"}\n')
    (sub / "p.toml").write_text('[stages.e]\nslot = "evaluator"\ncomponent = "exact-match"\n'
                                f'baseline = "smollm2-135m-instruct"\n{body}')
    return sub


def test_relative_to_the_pipeline_file_not_the_working_directory(tmp_path, plugins, monkeypatch):
    sub = _exact_match(tmp_path)
    monkeypatch.chdir(tmp_path)
    plan = build_plan(sub / "p.toml", plugins, Registry(None))
    assert plan.stage("e").component.config.task_file == str(sub / "tasks" / "q.jsonl")


def test_editing_the_file_changes_the_config_hash_moving_the_project_does_not(tmp_path, plugins):
    sub = _exact_match(tmp_path)
    before = build_plan(sub / "p.toml", plugins, Registry(None)).stage("e").config_hash()
    assert build_plan(sub / "p.toml", plugins, Registry(None)).stage("e").config_hash() == before
    (sub / "tasks" / "q.jsonl").write_text('{"question": "2+2", "answer": "4"}\n')
    edited = build_plan(sub / "p.toml", plugins, Registry(None)).stage("e").config_hash()
    assert edited != before
    moved = shutil.copytree(sub, tmp_path / "elsewhere")
    assert build_plan(moved / "p.toml", plugins, Registry(None)).stage("e").config_hash() == edited


def test_a_missing_file_is_a_validate_error(tmp_path, plugins):
    sub = _exact_match(tmp_path, 'task_file = "tasks/q.jsonl"\nfew_shot = 1\nfew_shot_file = "shots.jsonl"\n')
    with pytest.raises(ConfigError) as exc:
        build_plan(sub / "p.toml", plugins, Registry(None))
    assert str(exc.value) == f"{sub / 'p.toml'}: stages.e.few_shot_file: {sub / 'shots.jsonl'}: no such file or folder"


def test_teacher_seed_and_decontamination_files(tmp_path, plugins, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "seeds.jsonl").write_text('{"prompt": "hi"}\n')
    (tmp_path / "data" / "test.jsonl").write_text('{"question": "hello"}\n')
    (tmp_path / "p.toml").write_text(
        '[stages.d]\nslot = "generator"\ncomponent = "teacher"\nbackend = "openai"\n'
        'teacher = { model = "m", base_url = "http://localhost:1" }\nkto = { enabled = false }\n'
        'seeds = { tasks = [], path = "data/seeds.jsonl" }\ndedup = { decontaminate = ["data/test.jsonl"] }\n')
    monkeypatch.chdir(tmp_path.parent)
    st = build_plan(tmp_path / "p.toml", plugins, Registry(None)).stage("d")
    assert st.component.config.seeds.path == str(tmp_path / "data" / "seeds.jsonl")
    assert st.component.config.dedup.decontaminate == [str(tmp_path / "data" / "test.jsonl")]
    before = st.config_hash()
    (tmp_path / "data" / "test.jsonl").write_text('{"question": "changed"}\n')
    assert build_plan(tmp_path / "p.toml", plugins, Registry(None)).stage("d").config_hash() != before


def test_strategy_file_parameters(tmp_path, plugins, monkeypatch):
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    (tmp_path / "rows.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "p.toml").write_text('[stages.s]\nslot = "trainer"\ncomponent = "sft"\n'
                                     'strategy = { name = "deepspeed", config_file = "ds.json" }\n'
                                     'inputs = { dataset = { path = "rows.jsonl" } }\n')
    monkeypatch.chdir(tmp_path.parent)
    st = build_plan(tmp_path / "p.toml", plugins, Registry(None)).stage("s")
    assert st.strategy.config.config_file == str(tmp_path / "ds.json")
    before = st.config_hash()
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    assert build_plan(tmp_path / "p.toml", plugins, Registry(None)).stage("s").config_hash() != before


def test_glob_patterns(tmp_path, plugins, monkeypatch):
    (tmp_path / "ply").mkdir()
    (tmp_path / "ply" / "a.ply").write_text("ply\n")
    text = '[stages.d]\nslot = "generator"\ncomponent = "ply_points"\ntrain = ["ply/*.ply"]\ntest = ["%s"]\n'
    (tmp_path / "p.toml").write_text(text % "other/*.ply")
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(ConfigError) as exc:
        build_plan(tmp_path / "p.toml", plugins, Registry(None))
    assert f"stages.d: ply_points: test: '{tmp_path}/other/*.ply' matches no file" in str(exc.value)
    assert "train" not in str(exc.value)  # ply/*.ply was found beside the pipeline file
