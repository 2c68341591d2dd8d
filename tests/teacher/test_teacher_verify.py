"""Exact verifiers: reasoning-gym scorers, reference matching, HumanEval tests run in a subprocess."""

from plinth_teacher.gym import gym_items, oracle_answer
from plinth_teacher.items import Item
from plinth_teacher.seeds import humaneval_items
from plinth_teacher.verify import verify


def test_gym_verifier_and_oracle():
    items = gym_items(["basic_arithmetic", "gsm_symbolic"], 3, 0)
    assert [i.group for i in items[:2]] == ["basic_arithmetic", "gsm_symbolic"]  # interleaved
    for item in items:
        assert verify(item, oracle_answer(item)) is True
        assert verify(item, f"Answer: {item.reference}1") is False
        assert verify(item, "") is False
    assert "step by step" in oracle_answer(items[1]) and oracle_answer(items[1]).endswith(f"Answer: {items[1].reference}")


def test_reference_match_and_no_verifier():
    item = Item(id="x", prompt="p", source="file", group="g", reference="1,000", verifier="match")
    assert verify(item, "so... Answer: 1000") is True and verify(item, "Answer: 999") is False
    assert verify(Item(id="y", prompt="p", source="file", group="g"), "anything") is None


def test_humaneval_runs_tests_in_subprocess():
    item = humaneval_items(1)[0]  # HumanEval/0 has_close_elements
    good = ("```python\ndef has_close_elements(numbers, threshold):\n"
            "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```")
    assert verify(item, good) is True
    assert verify(item, "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```") is False
    body_only = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    assert verify(item, body_only) is True
    assert verify(item, "```python\nwhile True: pass\n```", timeout=1) is False


WRONG = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"


def test_humaneval_verifier_needs_check_to_return(tmp_path):
    """Teacher and student code runs in the core sandbox: leaving before check() or escaping it is a fail."""
    item = humaneval_items(1)[0]
    for exit_code in ("import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"):
        assert verify(item, WRONG.replace("```python\n", f"```python\n{exit_code}\n")) is False, exit_code
        assert verify(item, WRONG.replace("\n```", f"\n{exit_code}\n```")) is False, exit_code
    outside = tmp_path / "written-by-the-student"
    escape = (f"```python\nopen({str(outside)!r}, 'w').write('x')\n"
              "def has_close_elements(numbers, threshold):\n"
              "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```")
    assert verify(item, escape) is False and not outside.exists()
