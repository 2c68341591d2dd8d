"""plinth.lm.chat.CachedChat: keys, atomic entries, partial results of a failing back end."""

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
