"""The `openai` back end against a real loopback chat-completions server: answers, concurrency, faults."""

import time

import pytest

from plinth.lm.chat import CachedChat, ChatError
from plinth_teacher.openai_backend import OpenAIChat
from plinth_teacher.testing_server import ChatServer, ModelPolicy, RulePolicy

Q = [{"role": "user", "content": "Calculate 2 + 3 * 4."}]


def backend(srv, **kw):
    cfg = {"base_url": srv.base_url, "model": "rule", "backoff": 0.01, "timeout": 5, "concurrency": 4}
    cfg.update(kw)
    return OpenAIChat(cfg)


def test_answers_in_order_with_n_samples(rule_server):
    b = backend(rule_server)
    convs = [[{"role": "user", "content": f"Calculate {i} * 3."}] for i in range(12)]
    out = b.chat(convs, n=2, temperature=0.5, seed=3)
    assert [o[0].rsplit(" ", 1)[1] for o in out] == [str(3 * i) for i in range(12)]
    assert all(len(o) == 2 for o in out)
    assert rule_server.counts["answered"] == 12  # n travels in one request
    b.close()


def test_server_ignoring_n_and_loop_mode(rule_server):
    b = backend(rule_server, native_n=False)
    assert len(b.chat([Q], n=3, temperature=0.7, seed=0)[0]) == 3
    assert rule_server.counts["answered"] == 3
    b.close()


def test_serves_a_small_model_over_the_protocol(tiny_model):
    from plinth_teacher.hf_backend import HFChat

    with ChatServer(ModelPolicy(HFChat({"model": str(tiny_model)}))) as srv:
        b = backend(srv, model="tiny")
        out = b.chat([Q, [{"role": "user", "content": "hi"}]], max_tokens=8)
        assert len(out) == 2 and all(isinstance(o[0], str) for o in out)
        # greedy decoding of the same model in-process gives the same text
        direct = HFChat({"model": str(tiny_model)}).chat([Q], max_tokens=8)
        assert out[0] == direct[0]
        b.close()


@pytest.mark.parametrize("fault", ["500", "503", "garbage", "badjson", "close"])
def test_transient_faults_are_retried(rule_server, fault):
    rule_server.faults.extend([fault, fault])
    b = backend(rule_server, concurrency=1)
    assert b.chat([Q]) == [["Let me work it out step by step.\nAnswer: 14"]]
    assert rule_server.counts[f"fault:{fault}"] == 2
    b.close()


def test_429_honours_retry_after(rule_server):
    rule_server.faults.append("429:0.6")
    b = backend(rule_server, concurrency=1, backoff=0.001)
    t = time.perf_counter()
    b.chat([Q])
    assert time.perf_counter() - t >= 0.6
    assert rule_server.counts["fault:429:0.6"] == 1
    b.close()


def test_timeout_then_retry(rule_server):
    rule_server.faults.append("timeout:1.5")
    b = backend(rule_server, concurrency=1, timeout=0.4)
    t = time.perf_counter()
    assert b.chat([Q])[0][0].endswith("14")
    assert time.perf_counter() - t < 1.4  # it did not wait for the stalled answer
    b.close()


def test_gives_up_with_clear_error_naming_backend_and_last_response(rule_server, monkeypatch):
    monkeypatch.setenv("SECRET_KEY_FOR_TEST", "sk-very-secret")
    rule_server.faults.extend(["503"] * 4)
    b = backend(rule_server, concurrency=1, max_retries=3, api_key_env="SECRET_KEY_FOR_TEST")
    with pytest.raises(ChatError) as err:
        b.chat([Q])
    msg = str(err.value)
    assert "openai back end" in msg and rule_server.base_url in msg and "gave up after 4 tries" in msg
    assert "HTTP 503" in msg and "injected" in err.value.last_response
    assert "sk-very-secret" not in msg + repr(b.config) + b.identity
    b.close()


def test_api_key_from_env_and_401_is_not_retried(monkeypatch):
    with ChatServer(RulePolicy(), api_key="sk-good") as srv:
        monkeypatch.setenv("PLINTH_TEST_KEY", "sk-good")
        assert backend(srv, api_key_env="PLINTH_TEST_KEY").chat([Q])[0][0].endswith("14")
        monkeypatch.setenv("PLINTH_TEST_KEY", "sk-bad")
        with pytest.raises(ChatError, match="refused: HTTP 401"):
            backend(srv, api_key_env="PLINTH_TEST_KEY").chat([Q])
        assert srv.counts["requests"] == 2
        assert "sk-bad" not in str(srv.counts)


def test_server_down_is_a_clear_error():
    srv = ChatServer(RulePolicy())
    url = srv.base_url
    srv.stop()
    b = OpenAIChat({"base_url": url, "model": "m", "max_retries": 1, "backoff": 0.01, "timeout": 1})
    with pytest.raises(ChatError, match="connection failed"):
        b.chat([Q])


def test_killed_mid_run_keeps_partial_then_resumes_from_cache(tmp_path):
    convs = [[{"role": "user", "content": f"Calculate {i} + 1."}] for i in range(20)]
    with ChatServer(RulePolicy(), kill_after=7, latency=0.01) as srv:
        cached = CachedChat(backend(srv, concurrency=2, max_retries=2, timeout=1), tmp_path / "cache")
        with pytest.raises(ChatError) as err:
            cached.chat(convs)
        done = err.value.partial
        assert 5 <= len(done) <= 8 and all(v[0].endswith(str(i + 1)) for i, v in done.items())
        cached.close()
    with ChatServer(RulePolicy()) as srv2:  # restarted on another port: same model, same cache entries
        cached = CachedChat(backend(srv2), tmp_path / "cache")
        out = cached.chat(convs)
        assert [o[0].rsplit(" ", 1)[1] for o in out] == [str(i + 1) for i in range(20)]
        assert srv2.counts["answered"] == 20 - len(done) and cached.hits == len(done)
        cached.close()


def test_concurrency_overlaps_requests():
    with ChatServer(RulePolicy(), latency=0.05) as srv:
        convs = [[{"role": "user", "content": f"Calculate {i} + 1."}] for i in range(16)]
        t = time.perf_counter()
        backend(srv, concurrency=8).chat(convs)
        fast = time.perf_counter() - t
        assert fast < 16 * 0.05 / 3  # sequential would take 0.8 s


def test_identity_covers_extra_body_but_not_the_address():
    """Cached samples are keyed on what shapes them: extra_body (top_p, template kwargs) does, the port does not."""
    plain = OpenAIChat({"base_url": "http://127.0.0.1:1/v1", "model": "m"}).identity
    moved = OpenAIChat({"base_url": "http://127.0.0.1:2/v1", "model": "m"}).identity
    top_p = OpenAIChat({"base_url": "http://127.0.0.1:1/v1", "model": "m", "extra_body": {"top_p": 0.5}}).identity
    top_p9 = OpenAIChat({"base_url": "http://127.0.0.1:1/v1", "model": "m", "extra_body": {"top_p": 0.9}}).identity
    assert plain == moved == "openai:m"
    assert len({plain, top_p, top_p9}) == 3
    reordered = {"extra_body": {"b": 1, "a": 2}}, {"extra_body": {"a": 2, "b": 1}}
    ids = [OpenAIChat({"base_url": "http://h/v1", "model": "m", **r}).identity for r in reordered]
    assert ids[0] == ids[1]
