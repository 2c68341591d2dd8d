"""plinth-evals: evaluators (exact-match, multiple-choice, humaneval, perplexity, judge, lm-eval) and the report."""

__version__ = "0.1.0"
