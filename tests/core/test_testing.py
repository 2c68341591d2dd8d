"""plinth.testing's tiny models are real Hugging Face folders whose tokenizer round-trips text."""

import pytest


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_tiny_model_reloads_and_generates(tmp_path, architecture):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from plinth.lm.testing import tiny_causal_lm

    path = tiny_causal_lm(tmp_path / "m", architecture=architecture)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == architecture
    assert sum(p.numel() for p in model.parameters()) < 100_000
    ids = tok.apply_chat_template([{"role": "user", "content": "hi 1+2"}], add_generation_prompt=True,
                                  return_dict=True, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3
    if architecture == "llama":
        assert tok.decode(tok("a b\nc")["input_ids"]) == "a b\nc"
