"""reasoning-gym task settings reach the seeds and the verifier rebuilds the same dataset from them."""

from plinth_teacher.gym import gym_items, gym_verify


def test_task_options_shape_the_problems_and_verify():
    opts = {"basic_arithmetic": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    items = gym_items(["basic_arithmetic"], 8, 0, opts)
    default = gym_items(["basic_arithmetic"], 8, 0)
    assert [i.prompt for i in items] != [i.prompt for i in default]
    for item in items:
        assert all(len(tok.strip("()-")) <= 1 for tok in item.prompt.removeprefix("Calculate ").rstrip(".").split()
                   if tok.strip("()-").isdigit())
        assert gym_verify(item, f"Answer: {item.reference}")
        assert not gym_verify(item, f"Answer: {item.reference}1")
