"""Helpers that only language-model plugins use, kept out of the platform's top level.

| module | holds |
| --- | --- |
| `plinth.lm.hf` | model aliases (the offline SmolLM2 student), load/save Hugging Face folders, precision rules, `model_fingerprint` (content hash for caches) |
| `plinth.lm.training` | `TrainingConfig`, TrainingArguments builder, SFT/KTO row checks, resume, the shared fit-and-save tail |
| `plinth.lm.checks` | validate-time checks: a model name resolves, a dataset's first rows, merged models' shapes |
| `plinth.lm.chat` | `ChatBackend` interface, `CachedChat` disk cache, `make_backend` (teacher and judge share back ends) |
| `plinth.lm.gym_scoring` | `score_in_sandbox`: reasoning-gym scorers (which `eval` answer text) run on a batch of answers in `plinth.sandbox` |
| `plinth.lm.answers` | the one answer normaliser (numbers, `####`, `\\boxed{}`, `answers_match`): teacher verifier and exact-match agree |
| `plinth.lm.testing` | `tiny_tokenizer`, `tiny_causal_lm`: real tiny models for tests, built offline in milliseconds |

Nothing here is imported by the core's platform modules at import time; each imports transformers/trl lazily.
"""
