"""Tiny real language models for tests and benchmarks, built offline in milliseconds: a character-level
tokenizer with a ChatML template and small causal LMs saved as Hugging Face folders."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHARS = list(string.ascii_letters + string.digits + string.punctuation + " \n")


def tiny_tokenizer(path: str | Path | None = None) -> Any:
    """A character-level tokenizer with a ChatML chat template (pad, unk, <|im_start|>, <|im_end|>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    if path is not None:
        fast.save_pretrained(str(path))
    return fast


def tiny_causal_lm(
    path: str | Path,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    tie_word_embeddings: bool = True,
    dtype: str = "float32",
    architecture: str = "llama",
) -> Path:
    """Save a tiny random causal LM (~22k parameters) with a character tokenizer to `path`; returns `path`.

    It is a real Hugging Face folder (safetensors, config, tokenizer, chat template, generation config) that
    `AutoModelForCausalLM` and `AutoTokenizer` load offline. `architecture` is "llama" (SmolLM2's, the default
    student) or "qwen2" (Qwen2-0.5B's). Note: transformers 5 loads any qwen2 folder's tokenizer as
    Qwen2Tokenizer, whose byte-level pre-tokenizer drops this character vocabulary's spaces through
    AutoTokenizer; use "llama" wherever text round-trips matter."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    if architecture not in classes:
        raise ValueError(f"architecture must be one of {sorted(classes)}, got {architecture!r}")
    config_cls, model_cls = classes[architecture]
    path = Path(path)
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    config = config_cls(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    model = model_cls(config).to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False
    )
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path
