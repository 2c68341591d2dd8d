"""A tiny Llama whose next token depends only on the last token: a hand-set bigram table.

Attention and MLP outputs are zeroed, so the final hidden state is the (one-hot) embedding of the current
token; the untied output head maps each token to the next one we choose. That gives a real Hugging Face model
folder with exactly known greedy outputs and log-probabilities — "a model forced to a known answer"."""

from __future__ import annotations

from pathlib import Path


def bigram_lm(path: Path, mapping: dict[str, str], default: str = "<|im_end|>", strength: float = 1.0) -> Path:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from plinth.lm.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    vocab = tok.get_vocab()
    v = len(tok)
    hidden = 128
    assert v <= hidden
    config = LlamaConfig(
        vocab_size=v, hidden_size=hidden, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :v] = torch.eye(v)
        head = torch.zeros(v, hidden)
        for tok_id in range(v):
            head[vocab[default], tok_id] = strength
        for src, dst in mapping.items():
            head[:, vocab[src]] = 0.0
            head[vocab[dst], vocab[src]] = strength
        model.lm_head.weight.copy_(head)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               do_sample=False)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return Path(path)

# Llama, not Qwen2: transformers 5.24 forces Qwen2Tokenizer (a byte-level pre-tokenizer) onto any qwen2 folder,
# which drops the spaces and newlines of plinth.testing's character tokenizer.
