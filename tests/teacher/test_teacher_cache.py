"""plinth.lm.chat.CachedChat: keys, atomic entries, partial results of a failing back end."""

import json

from plinth.lm.chat import CachedChat, ChatBackend, ChatError, cache_key


class Counting(ChatBackend):
    def __init__(self, fail_after=None):
        super().__init__({})
        self.calls, self.fail_after = [], fail_after

    def chat(self, conversations, *, n=1, temperature=0.0, max_tokens=256, seed=None):
        out = {}
        for i, conv in enumerate(conversations):
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise ChatError("down", backend="counting", last_response="HTTP 503", partial=out)
            self.calls.append(conv[0]["content"])
            out[i] = [f"{conv[0]['content']}!{temperature}:{seed}"] * n
        return [out[i] for i in range(len(conversations))]


def conv(t):
    return [{"role": "user", "content": t}]


def test_key_covers_backend_messages_and_sampling():
    k = cache_key("a:m", conv("x"), n=1, temperature=0.0, max_tokens=8, seed=0)
    assert k == cache_key("a:m", conv("x"), n=1, temperature=0.0, max_tokens=8, seed=0)
    assert len({k, cache_key("b:m", conv("x"), n=1, temperature=0.0, max_tokens=8, seed=0),
                cache_key("a:m", conv("y"), n=1, temperature=0.0, max_tokens=8, seed=0),
                cache_key("a:m", conv("x"), n=2, temperature=0.0, max_tokens=8, seed=0),
                cache_key("a:m", conv("x"), n=1, temperature=0.5, max_tokens=8, seed=0),
                cache_key("a:m", conv("x"), n=1, temperature=0.0, max_tokens=8, seed=1)}) == 6


def test_second_call_is_free_and_sampling_change_is_not(tmp_path):
    inner = Counting()
    c = CachedChat(inner, tmp_path)
    first = c.chat([conv("a"), conv("b")], seed=1)
    assert c.chat([conv("b"), conv("a")], seed=1) == first[::-1]
    assert inner.calls == ["a", "b"] and c.hits == 2 and c.misses == 2
    c.chat([conv("a")], seed=2)
    assert inner.calls == ["a", "b", "a"]
    assert not list(tmp_path.rglob(".tmp-*"))  # no half-written entries


def test_partial_results_are_cached_and_remapped(tmp_path):
    c = CachedChat(Counting(), tmp_path)
    c.chat([conv("b")])
    c.inner = Counting(fail_after=1)
    try:
        c.chat([conv("a"), conv("b"), conv("c"), conv("d")])
        raise AssertionError("expected ChatError")
    except ChatError as exc:
        assert sorted(exc.partial) == [0]  # "a" finished; indices in the caller's numbering
    c.inner = Counting()
    c.chat([conv("a"), conv("b"), conv("c"), conv("d")])
    assert c.inner.calls == ["c", "d"]


# -- the hf back end's identity is the model's content -------------------------------------------------------
def _retrain(folder, seed):
    """Rewrite the weights in place, same path, same file size: what a re-run of the SFT stage does."""
    import torch
    from safetensors.torch import load_file, save_file

    f = folder / "model.safetensors"
    state = load_file(str(f))
    g = torch.Generator().manual_seed(seed)
    save_file({k: v + 0.5 * torch.randn(v.shape, generator=g).to(v.dtype) for k, v in state.items()}, str(f),
              metadata={"format": "pt"})


def test_hf_cache_misses_after_retraining_at_the_same_path(tiny_model, tmp_path):
    import shutil

    from plinth_teacher.hf_backend import HFChat

    model = tmp_path / "sft_model"
    shutil.copytree(tiny_model, model)
    cfg = {"model": str(model), "device": "cpu", "dtype": "fp32"}
    prompts = [conv("hello"), conv("two plus two")]

    first = CachedChat(HFChat(cfg), tmp_path / "cache")
    before = first.chat(prompts, max_tokens=6, seed=0)
    assert (first.hits, first.misses) == (0, 2)
    again = CachedChat(HFChat(cfg), tmp_path / "cache")  # same everything: served from disk
    assert again.chat(prompts, max_tokens=6, seed=0) == before and (again.hits, again.misses) == (2, 0)

    size = (model / "model.safetensors").stat().st_size
    _retrain(model, seed=1)
    assert (model / "model.safetensors").stat().st_size == size
    retrained = CachedChat(HFChat(cfg), tmp_path / "cache")
    after = retrained.chat(prompts, max_tokens=6, seed=0)
    assert (retrained.hits, retrained.misses) == (0, 2)  # the new model answers, not the old one's cache
    assert after != before


def test_hf_identity_covers_template_system_prompt_and_dtype(tiny_model, tmp_path):
    import shutil

    from plinth_teacher.hf_backend import HFChat

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    base = {"model": str(model), "device": "cpu"}

    def ident(**kw):
        return HFChat({**base, **kw}).identity

    same = ident(dtype="fp32")
    assert ident(dtype="fp32") == same
    assert ident(dtype="auto") == same  # auto is fp32 on this CPU machine: the same weights run
    others = [ident(dtype="fp16"), ident(dtype="fp32", system_prompt="Be terse."),
              ident(dtype="fp32", chat_template="qwen2")]
    assert len({same, *others}) == 4
    # the tokenizer's own template is content too: editing it in the folder changes the identity
    tc = model / "tokenizer_config.json"
    cfg = json.loads(tc.read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tc.write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    assert ident(dtype="fp32") != same
