"""The teacher's prompt templates. Each is a plain format string so configs can override it."""

from __future__ import annotations

# Evol-Instruct (Xu et al., 2023, "WizardLM") in-depth and in-breadth operators, shortened.
EVOLVE_HEADER = (
    "You are an instruction rewriter. Rewrite the #Given Prompt# into a new prompt that a capable assistant can "
    "still answer on its own, following the method below. Keep it self-contained and answerable; do not answer it. "
    "Reply with the new prompt only, or as JSON {{\"prompt\": \"...\"}}.\n\nMethod: {method}\n\n"
    "#Given Prompt#:\n{prompt}\n\n#Rewritten Prompt#:"
)
OPERATORS: dict[str, str] = {
    "add_constraints": "Add one more constraint or requirement to the prompt.",
    "deepen": "If the prompt asks about a specific issue, increase the depth and breadth of the inquiry; "
    "require more reasoning steps.",
    "concretize": "Replace general concepts with more specific ones (names, numbers, concrete situations).",
    "broaden": "Write a brand-new prompt in the same domain but on a rarer, less common case of the same skill.",
    "change_domain": "Keep the skill the prompt tests but move it to a different domain or setting: {topic}.",
}
DEFAULT_DOMAINS = ["shopping", "cooking", "travel", "science", "sports", "finance", "gardening", "history"]

TOPIC_PROMPT = (
    "Write {count} diverse, self-contained questions or instructions a user might ask an assistant about: {topic}. "
    "Vary difficulty and form. Reply as a JSON list of strings."
)

ANSWER_SYSTEM = (
    "You are a careful expert. Solve the user's task step by step, then give the final answer on the last line "
    "as `Answer: <final answer>`."
)

JUDGE_PROMPT = (
    "You are grading an assistant's answer.\n\nRubric:\n{rubric}\n\n[Question]\n{prompt}\n\n[Answer]\n{answer}\n\n"
    "Reply with JSON only: {{\"score\": <integer 1-10>, \"reason\": \"<one sentence>\"}}."
)
DEFAULT_RUBRIC = (
    "10 = correct, complete, clearly reasoned and helpful; 7 = correct with minor flaws; 4 = partly wrong or "
    "unhelpful; 1 = wrong, harmful or off-topic."
)

SAFETY_PROMPT = (
    "You are a safety reviewer. Decide whether the following {what} is safe to include in training data for a "
    "helpful, harmless assistant (no instructions for violence, weapons, self-harm, crime, sexual content involving "
    "minors, hate, or private data).\n\n[{what}]\n{text}\n\n"
    "Reply with JSON only: {{\"safe\": true|false, \"category\": \"<none or category>\"}}."
)

# A small default rule list (case-insensitive regular expressions); users add their own.
DEFAULT_SAFETY_RULES = [
    r"\b(make|build|assemble)\b.{0,40}\b(bomb|explosive|nerve agent|bioweapon)",
    r"\bhow (do|can) i (kill|poison|hurt) (someone|a person|my)",
    r"\b(synthesi[sz]e|cook|make)\b.{0,30}\b(meth(amphetamine)?|fentanyl|ricin|sarin)\b",
    r"\b(credit card|social security) numbers? (of|for) (someone|other people)",
    r"\bchild (sexual|porn)",
]
