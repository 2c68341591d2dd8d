"""The `teacher` generator end to end on tiny inputs: gym (offline oracle), openai (loopback server), hf."""

import json

import pytest
from pydantic import ValidationError

from plinth.lm.chat import ChatError
from plinth.errors import ConfigError
from plinth_teacher.generator import TeacherGenerator
from plinth_teacher.testing_server import ChatServer, RulePolicy


def openai_teacher(srv, **kw):
    cfg = {"base_url": srv.base_url, "model": "rule", "concurrency": 4, "backoff": 0.01, "timeout": 5}
    cfg.update(kw)
    return cfg


def stats_of(out):
    return json.loads(out["stats"].path.read_text())


def rows(art):
    return [json.loads(line) for line in art.path.read_text().splitlines()]


def test_gym_offline_end_to_end(ctx, tiny_model):
    from datasets import load_dataset

    gen = TeacherGenerator({
        "seeds": {"tasks": ["basic_arithmetic", "gsm_symbolic"], "size": 6},
        "kto": {"student": str(tiny_model), "samples": 2, "max_tokens": 12},
        "output": {"eval_size": 2},
    })
    out = gen.generate(ctx)
    assert set(out) == {"sft", "kto", "eval", "items", "stats", "decisions"}
    st = stats_of(out)
    assert st["seeds"]["loaded"] == 12 and st["seeds"]["held_out"] == 2
    assert st["accuracy"]["accepted"] == 10 and st["outputs"]["sft"] == 10
    assert st["diversity"]["before"]["groups_covered"] == 2 and "distinct_2" in st["diversity"]["after"]
    sft = load_dataset("json", data_files=str(out["sft"].path), split="train")
    assert sft.column_names == ["messages"] and sft[0]["messages"][1]["role"] == "assistant"
    kto = load_dataset("json", data_files=str(out["kto"].path), split="train")
    assert set(kto.column_names) == {"prompt", "completion", "label"}
    nd, nu = sum(kto["label"]), len(kto) - sum(kto["label"])
    assert nu > 0 and 1 <= nd / nu <= 4 / 3 and st["kto"]["balanced"]
    lab = st["kto"]["labelled"]  # 10 prompts x 2 samples, each labelled by the verifier or skipped as a repeat
    assert lab["by_verifier"] + lab.get("empty_or_repeat", 0) == 20
    assert st["kto"]["student_desirable"] + st["kto"]["student_undesirable"] == lab["by_verifier"]
    # the held-out eval set is disjoint from the training prompts
    ev = rows(out["eval"])
    train_prompts = {r["messages"][0]["content"] for r in rows(out["sft"])}
    assert len(ev) == 2 and all(r["answer"] for r in ev) and not {r["prompt"] for r in ev} & train_prompts
    # gsm_symbolic answers carry reasoning-gym's worked solution
    assert any("step by step" in r["messages"][1]["content"] for r in rows(out["sft"]))


def test_gym_parquet_and_prompt_completion(ctx):
    from datasets import load_dataset

    out = TeacherGenerator({"seeds": {"tasks": ["chain_sum"], "size": 4}, "kto": {"enabled": False},
                            "output": {"file_format": "parquet", "sft_format": "prompt_completion"}}).generate(ctx)
    assert "kto" not in out and out["sft"].path.suffix == ".parquet"
    ds = load_dataset("parquet", data_files=str(out["sft"].path), split="train")
    assert ds.column_names == ["prompt", "completion"] and len(ds) == 4


def test_openai_teacher_full_pipeline_and_free_rerun(tmp_path, tiny_model):
    from plinth.testing import make_context

    evalset = tmp_path / "eval.jsonl"
    evalset.write_text(json.dumps({"question": "Calculate 6 * 7."}) + "\n")
    seeds = tmp_path / "seeds.jsonl"
    lines = [{"prompt": f"Calculate {i} + {i * 2}.", "answer": str(3 * i)} for i in range(1, 7)]
    lines += [{"prompt": "Calculate 6 * 7."}, {"prompt": "How do I make a bomb at home?"},
              {"prompt": "Calculate 10 + 20.", "answer": "31"}]  # wrong reference: the verifier rejects it
    seeds.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    cfg = {
        "backend": "openai",
        "seeds": {"tasks": [], "path": str(seeds)},
        "evolve": {"enabled": True, "operators": ["add_constraints", "change_domain"], "domains": ["cooking"]},
        "dedup": {"decontaminate": [str(evalset)], "method": "jaccard"},
        "accuracy": {"samples": 3, "agreement": 0.6, "judge": True, "judge_threshold": 5},
        "safety": {"judge": True, "rules": []},
        "kto": {"student": str(tiny_model), "samples": 2, "max_tokens": 8},
    }
    with ChatServer(RulePolicy(wrong_rate=0.2)) as srv:
        cfg["teacher"] = openai_teacher(srv)
        out = TeacherGenerator(cfg).generate(make_context(tmp_path / "run", stage="data"))
        st = stats_of(out)
        assert st["seeds"]["loaded"] == 9
        assert st["evolve"]["generated"] == 9 and st["evolve"]["by_operator"]["change_domain"] >= 4
        assert st["dedup"]["contaminated"] >= 1  # "Calculate 6 * 7." is in the eval set
        assert st["safety_prompts"]["unsafe_judge"] >= 1  # the bomb prompt and its rewrite
        assert st["accuracy"]["rejected"].get("verifier_failed", 0) >= 1  # 10 + 20 is not 31
        assert st["accuracy"]["accepted"] >= 8
        decisions = rows(out["decisions"])
        assert {d["reason"] for d in decisions} >= {"contaminated", "unsafe", "verifier_failed"}
        sft_prompts = [r["messages"][0]["content"] for r in rows(out["sft"])]
        assert not any("bomb" in p for p in sft_prompts) and any("cooking" in p for p in sft_prompts)
        assert all(r["messages"][1]["content"].startswith("Let me") for r in rows(out["sft"]))
        kto_rows = rows(out["kto"])
        assert {r["label"] for r in kto_rows} == {True, False}
        first = srv.counts["answered"]
        # same config again (the runner would skip it; a forced re-run is free): every call hits the cache
        out2 = TeacherGenerator(cfg).generate(make_context(tmp_path / "run", stage="data"))
        assert srv.counts["answered"] == first and stats_of(out2)["cache"]["misses"] == 0
        assert out2["sft"].path.read_text() == out["sft"].path.read_text()


def test_judge_threshold_keeps_and_rejects_known_items(ctx):
    seeds = ctx.run_dir / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"prompt": f"Calculate {i} + 0.", "topic": "t"}) for i in range(1, 9)))

    def score(q, a):  # the judge gives each prompt's number as its score: 1..8
        return int(q.split()[1])

    with ChatServer(RulePolicy(judge_score=score)) as srv:
        out = TeacherGenerator({"backend": "openai", "teacher": openai_teacher(srv), "kto": {"enabled": False},
                                "seeds": {"tasks": [], "path": str(seeds), "group_field": "topic"},
                                "accuracy": {"judge": True, "judge_threshold": 6}}).generate(ctx)
    st = stats_of(out)
    assert st["accuracy"]["accepted"] == 3 and st["accuracy"]["rejected"] == {"judge_low": 5}
    assert sorted(r["messages"][0]["content"] for r in rows(out["sft"])) == [f"Calculate {i} + 0." for i in (6, 7, 8)]


def test_self_consistency_threshold(ctx):
    seeds = ctx.run_dir / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"prompt": f"Calculate {i} + 5."}) for i in range(30)))
    with ChatServer(RulePolicy(wrong_rate=0.5)) as srv:
        cfg = {"backend": "openai", "teacher": openai_teacher(srv), "kto": {"enabled": False},
               "seeds": {"tasks": [], "path": str(seeds)}, "dedup": {"enabled": False},
               "accuracy": {"samples": 4, "agreement": 0.75}}
        st = stats_of(TeacherGenerator(cfg).generate(ctx))
        strict = st["accuracy"]["accepted"]
        assert 0 < strict < 30 and st["accuracy"]["rejected"]["no_agreement"] == 30 - strict
        cfg["accuracy"]["agreement"] = 0.25
        st = stats_of(TeacherGenerator(cfg).generate(ctx))
        assert st["accuracy"]["accepted"] == 30


def test_safety_flag_mode_keeps_rows(ctx):
    seeds = ctx.run_dir / "seeds.jsonl"
    seeds.write_text(json.dumps({"prompt": "How do I build a bomb?"}) + "\n" + json.dumps({"prompt": "Calculate 1 + 1."}))
    with ChatServer(RulePolicy()) as srv:
        out = TeacherGenerator({"backend": "openai", "teacher": openai_teacher(srv), "kto": {"enabled": False},
                                "seeds": {"tasks": [], "path": str(seeds)}, "accuracy": {"agreement": 0.0},
                                "safety": {"action": "flag"}}).generate(ctx)
    st = stats_of(out)
    assert st["safety_prompts"]["unsafe_rule"] == 1 and st["safety_prompts"]["flagged"] == 1
    assert st["outputs"]["sft"] == 2
    flagged = [d for d in rows(out["decisions"]) if d["reason"] == "flagged_unsafe"]
    assert len(flagged) == 1 and flagged[0]["kept"] and "bomb" in flagged[0]["prompt"]


def test_topic_seeds(ctx):
    with ChatServer(RulePolicy()) as srv:
        out = TeacherGenerator({"backend": "openai", "teacher": openai_teacher(srv), "kto": {"enabled": False},
                                "seeds": {"tasks": [], "topics": ["ducks", "trains"], "per_topic": 3}}).generate(ctx)
    st = stats_of(out)
    assert st["topics"]["prompts"] == 6 and st["diversity"]["before"]["coverage"] == {"ducks": 3, "trains": 3}


def test_killed_teacher_then_resume(tmp_path):
    from plinth.testing import make_context

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps({"prompt": f"Calculate {i} * 2 + 1."}) for i in range(150)))
    cfg = {"backend": "openai", "seeds": {"tasks": [], "path": str(seeds)}, "kto": {"enabled": False},
           "dedup": {"enabled": False}}
    with ChatServer(RulePolicy(), kill_after=100) as srv:
        cfg["teacher"] = openai_teacher(srv, max_retries=1, timeout=1)
        ctx = make_context(tmp_path / "run", stage="data")
        with pytest.raises(ChatError) as err:
            TeacherGenerator(cfg).generate(ctx)
    msg = str(err.value)
    assert "openai back end" in msg and "rows accepted so far" in msg and "re-run resumes" in msg
    accepted = (ctx.work_dir / "accepted.jsonl").read_text().splitlines()
    assert len(accepted) == 64  # the first chunk reached disk before the teacher died
    with ChatServer(RulePolicy()) as srv2:
        cfg["teacher"] = openai_teacher(srv2)
        ctx = make_context(tmp_path / "run", stage="data")
        st = stats_of(TeacherGenerator(cfg).generate(ctx))
        assert st["outputs"]["sft"] == 150
        assert srv2.counts["answered"] <= 150 - 100 + 4 and st["cache"]["hits"] >= 96


def test_hf_teacher_end_to_end(ctx, tiny_model):
    out = TeacherGenerator({"backend": "hf", "teacher": {"model": str(tiny_model), "batch_size": 4},
                            "seeds": {"tasks": ["basic_arithmetic"], "size": 4},
                            "accuracy": {"samples": 2, "temperature": 1.0, "agreement": 0.0, "verify": False,
                                         "max_tokens": 12},
                            "kto": {"student": str(tiny_model), "samples": 2, "max_tokens": 8}}).generate(ctx)
    st = stats_of(out)
    assert st["teacher"].startswith(f"hf:{tiny_model}:") and st["accuracy"]["input"] == 4
    assert st["outputs"]["sft"] == st["accuracy"]["accepted"]
    assert st["kto"]["labelled"].get("by_teacher_answer", 0) + st["kto"]["labelled"].get("by_verifier", 0) >= 0


def test_config_errors_are_clear_and_early(ctx, tmp_path):
    with pytest.raises(ValidationError, match="need a chat teacher"):
        TeacherGenerator({"evolve": {"enabled": True}})
    with pytest.raises(ValidationError, match="unknown evolve operator"):
        TeacherGenerator({"backend": "openai", "teacher": {"model": "m"}, "evolve": {"operators": ["shout"]}})
    with pytest.raises(ValidationError, match="needs teacher.model"):
        TeacherGenerator({"backend": "openai"})
    with pytest.raises(ConfigError, match="missing.jsonl does not exist"):
        TeacherGenerator({"dedup": {"decontaminate": [str(tmp_path / "missing.jsonl")]}}).generate(ctx)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"oops": 1}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl, line 2: no prompt"):
        TeacherGenerator({"backend": "openai", "teacher": {"model": "m"},
                          "seeds": {"tasks": [], "path": str(bad)}}).generate(ctx)
    with pytest.raises(ConfigError, match="cannot build task 'no_such_task'"):
        TeacherGenerator({"seeds": {"tasks": ["no_such_task"]}}).generate(ctx)
    with pytest.raises(ConfigError, match="kto.student: model '/no/such/student'"):
        TeacherGenerator({"kto": {"student": "/no/such/student"}}).generate(ctx)
    assert not list(ctx.output_dir.iterdir())  # nothing written


def test_openai_teacher_serving_a_tiny_model(ctx, tiny_model):
    """The whole generator against a loopback server that runs a real (tiny) model behind chat completions."""
    from plinth_teacher.hf_backend import HFChat
    from plinth_teacher.testing_server import ModelPolicy

    with ChatServer(ModelPolicy(HFChat({"model": str(tiny_model)}))) as srv:
        out = TeacherGenerator({"backend": "openai", "teacher": openai_teacher(srv, model="tiny"),
                                "seeds": {"tasks": ["basic_arithmetic"], "size": 3},
                                "accuracy": {"samples": 2, "temperature": 0.9, "agreement": 0.0, "verify": False,
                                             "max_tokens": 10},
                                "kto": {"enabled": False}}).generate(ctx)
        assert srv.counts["answered"] == 3  # one request per prompt carrying n = 2
    st = stats_of(out)
    assert st["teacher"] == "openai:tiny" and st["accuracy"]["input"] == 3
    assert st["outputs"]["sft"] == st["accuracy"]["accepted"]
