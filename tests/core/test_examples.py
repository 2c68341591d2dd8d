"""Every pipeline under examples/ validates against the installed plugins (components, parameters, wiring)."""

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.toml"))


#: examples whose inputs are another run's outputs: validated beside stand-ins of those folders
NEEDS_RUN = {"merge.toml": ["runs/sft-kto/stages/sft/out/model", "runs/sft-kto/stages/kto/out/model"]}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path, plinth_cmd, monkeypatch, tmp_path):
    monkeypatch.delenv("PLINTH_PLUGINS", raising=False)
    if path.name in NEEDS_RUN:
        res = plinth_cmd("validate", str(path), cwd=REPO)  # before that run: its missing folders, nothing else
        missing = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2 and missing and all("does not exist" in line for line in missing), res.stderr
        (tmp_path / "examples").mkdir()
        path = Path(shutil.copy(path, tmp_path / "examples" / path.name))
        for folder in NEEDS_RUN[path.name]:
            (tmp_path / folder).mkdir(parents=True)
            (tmp_path / folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 8}')
    res = plinth_cmd("validate", str(path), cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "valid —" in res.stdout


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"quickstart.toml", "sft-kto.toml", "merge.toml", "teacher-data.toml"}


def test_paper_recipe_resolves_every_component_and_parameter():
    """examples/zhai2024-qwen2-0.5b.toml, offline: every stage's component, strategy and parameters resolve (unknown
    keys are errors), the teacher's server settings validate, every input names a declared output, and the
    harness knows every lm-eval task it asks for."""
    from plinth.pipeline import build_plan
    from plinth.plugins import load_plugins
    from plinth.registry import load_registry

    plan = build_plan(REPO / "examples" / "zhai2024-qwen2-0.5b.toml", load_plugins(refresh=True), load_registry(None))
    by_id = {st.id: st for st in plan.stages}
    assert {st.component_name for st in plan.stages} == {"teacher", "sft", "kto", "ties", "linear", "lm-eval",
                                                         "humaneval"}
    for st in plan.stages:
        assert set(st.params) <= set(type(st.component).Config.model_fields) | {"lambda"}, st.id
        for value in st.inputs.values():
            for ref in value if isinstance(value, list) else [value]:
                outputs = type(by_id[ref[1]].component).outputs
                assert ref[0] == "ref" and (not outputs or ref[2] in outputs), (st.id, ref)
    assert {st.id for st in plan.stages if st.strategy_name == "deepspeed"} == {"sft", "kto", "sft_kto"}
    assert by_id["sft"].strategy.config.zero_stage == 2
    sft = by_id["sft"].component.config  # the paper's SFT settings (shared/papers.md)
    assert (sft.learning_rate, sft.lr_scheduler, sft.warmup_steps, sft.epochs, sft.batch_size,
            sft.gradient_accumulation_steps, sft.max_length, sft.precision, sft.chat_template) == (
        5e-8, "cosine", 10, 3, 4, 250, 1024, "bf16", "qwen2")
    from plinth_teacher.openai_backend import OpenAIChat

    for name in ("data", "onpolicy"):
        OpenAIChat.Config.model_validate(by_id[name].component.config.teacher)
    assert by_id["linear"].component.config.weight == [0.5, 0.5]
    pytest.importorskip("lm_eval")

    tasks_dir = Path(__import__("lm_eval").__file__).parent / "tasks"
    known = set()
    for path in tasks_dir.rglob("*.yaml"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if line.startswith(("task:", "group:")) and len(line.split(":", 1)[1].strip()) > 0:
                known.add(line.split(":", 1)[1].strip().strip("'\""))
    for st in plan.stages:
        if st.component_name == "lm-eval":
            assert set(st.component.config.tasks) <= known, st.component.config.tasks
    assert by_id["gsm8k"].component.config.num_fewshot == 4
