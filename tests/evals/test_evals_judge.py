"""judge: win rate against the baseline with a registered test back end that prefers longer answers."""

from __future__ import annotations

import re

import pytest

from plinth import ConfigError, hookimpl
from plinth.lm.chat import ChatBackend
from plinth.plugins import PluginInfo, load_plugins, reset
from plinth_evals.judge import Judge, parse_verdict

from .conftest import context, model_art, read_metrics, read_samples, write_jsonl


class LongerIsBetter(ChatBackend):
    """Prefers the longer answer; ties on equal length."""

    calls: list = []

    def chat(self, conversations, *, n=1, temperature=0.0, max_tokens=256, seed=None):
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            a = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]", text, re.S).group(1)
            b = re.search(r"\[Answer B\]\n(.*?)\n\nReply", text, re.S).group(1)
            verdict = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
            out.append([f"Longer wins. [[{verdict}]]"] * n)
        LongerIsBetter.calls.append(len(conversations))
        return out


class Mumbler(ChatBackend):
    def chat(self, conversations, *, n=1, temperature=0.0, max_tokens=256, seed=None):
        return [["I cannot decide."] * n for _ in conversations]


class FakeJudges:
    @hookimpl
    def plinth_register_chat_backends(self, register):
        register("test-longer", LongerIsBetter)
        register("test-mumbler", Mumbler)


@pytest.fixture
def judges():
    manager = load_plugins(refresh=True)
    manager.register_plugin(FakeJudges(), PluginInfo("fake-judges", "tests", "0", "tests.evals"))
    yield manager
    reset()


PROMPTS = [{"prompt": "Say a number."}, {"prompt": "Another number?"}, {"prompt": "One more"}]


def test_longer_answers_win(tmp_path, judges, answer42, answer4):
    task = write_jsonl(tmp_path / "chat.jsonl", PROMPTS)
    ctx = context(tmp_path, [model_art(answer42, stage="sft"), model_art(answer4, stage="same")],
                  baseline=model_art(answer4, label="baseline"))
    out = Judge({"task_file": str(task), "judge_backend": "test-longer", "max_new_tokens": 4}).evaluate(ctx)
    doc = read_metrics(out)
    sft = doc["models"]["sft"]["metrics"]["chat/win_rate"]
    assert sft["value"] == 1.0 and sft["n"] == 3 and sft["wins"] == 6 and sft["ci_method"] == "bootstrap"
    same = doc["models"]["same"]["metrics"]["chat/win_rate"]
    assert same["value"] == 0.5 and same["ties"] == 6
    assert doc["models"]["baseline"]["metrics"] == {}
    rows = read_samples(out, "sft")
    assert rows[0]["answer"] == "42" and rows[0]["baseline_answer"] == "4"
    assert [j["candidate_is"] for j in rows[0]["judgements"]] == ["A", "B"]  # both orders


def test_unparsed_verdicts_are_ties_and_counted(tmp_path, judges, answer42, answer4):
    task = write_jsonl(tmp_path / "chat.jsonl", PROMPTS[:2])
    ctx = context(tmp_path, [model_art(answer42, label="m")], baseline=model_art(answer4, label="b"))
    out = Judge({"task_file": str(task), "judge_backend": "test-mumbler", "max_new_tokens": 4, "swap": False}
                ).evaluate(ctx)
    m = read_metrics(out)["models"]["m"]["metrics"]["chat/win_rate"]
    assert m["value"] == 0.5 and m["unparsed"] == 2


def test_needs_baseline_and_known_backend(tmp_path, judges, answer42, answer4):
    task = write_jsonl(tmp_path / "chat.jsonl", PROMPTS)
    with pytest.raises(ConfigError, match="baseline"):
        Judge({"task_file": str(task), "judge_backend": "test-longer"}).evaluate(
            context(tmp_path, [model_art(answer42, label="m")]))
    with pytest.raises(ConfigError, match="did you mean 'test-longer'"):
        Judge({"task_file": str(task), "judge_backend": "test-longr"}).evaluate(
            context(tmp_path, [model_art(answer42, label="m")], baseline=model_art(answer4, label="b")))


def test_parse_verdict():
    assert parse_verdict("reason... [[B]]") == "B"
    assert parse_verdict("[[A]] no wait [[C]]") == "C"
    assert parse_verdict("B") == "B"
    assert parse_verdict("Both are fine") is None
