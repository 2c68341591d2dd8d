"""Evol-Instruct rewrites through a real chat back end: operator rotation, topic steering, parsing of replies."""

from plinth_teacher.config import EvolveConfig
from plinth_teacher.evolve import evolve, parse_rewrite
from plinth_teacher.items import Item
from plinth_teacher.openai_backend import OpenAIChat


def test_parse_rewrite():
    assert parse_rewrite('{"prompt": "Add 2 and 3, then double it."}', "Add 2 and 3.") == "Add 2 and 3, then double it."
    assert parse_rewrite("#Rewritten Prompt#: Add 2 and 3 twice.", "Add 2 and 3.") == "Add 2 and 3 twice."
    assert parse_rewrite("Add 2 and 3.", "add 2 and 3.") is None  # unchanged
    assert parse_rewrite("", "x") is None and parse_rewrite("ok", "x") is None  # empty / too short


def test_operators_rotate_and_rounds_chain(rule_server):
    seeds = [Item(id=f"s{i}", prompt=f"Calculate {i} + 4.", source="file", group="math") for i in range(4)]
    teacher = OpenAIChat({"base_url": rule_server.base_url, "model": "rule"})
    cfg = EvolveConfig(enabled=True, operators=["add_constraints", "change_domain"], domains=["cooking", "travel"],
                       rounds=2)
    made, st = evolve(seeds, teacher, cfg, seed=0)
    assert st == {"generated": 8, "failed": 0, "by_operator": {"add_constraints": 4, "change_domain": 4}}
    first = [m for m in made if m.meta["round"] == 1]
    second = [m for m in made if m.meta["round"] == 2]
    assert [m.meta["operator"] for m in first] == ["add_constraints", "change_domain"] * 2
    assert {m.meta["domain"] for m in made if "domain" in m.meta} == {"cooking", "travel"}
    assert all(m.meta["parent"] in {f.id for f in first} for m in second)  # round 2 rewrites round 1
    assert all(m.group == "math" and m.source == "evolved" and m.reference is None for m in made)
    teacher.close()
