"""LLM backends: the real openai client against a fake server on 127.0.0.1, and a tiny local causal LM."""

from __future__ import annotations

import math
import os
import threading
import time

import pytest
import torch

from augment_support import DOG, DOOR, KETTLE, RAIN, STREET, THUNDER, FakeLLMServer, make_tiny_causal_lm
from dcase9.augment.backends import (BackendFatalError, HFBackend, LLMRequest, LLMResult, OpenAIBackend, RateLimiter,
                                      Redactor, SeededRowSampler, bound_answer)
from dcase9.augment.config import BackendConfig, SamplingConfig
from dcase9.errors import ConfigError

pytest.importorskip("openai")


def _request(caption: str, seed: int = 1) -> LLMRequest:
    return LLMRequest(key=caption, prompt=f'Rewrite.\nCaption: "{caption}"\nThanks.', seed=seed)


def _api(server: FakeLLMServer, **settings) -> OpenAIBackend:
    config = dict(kind="openai", model="fake-gpt", base_url=server.base_url, concurrency=2, timeout_s=1.0,
                  max_retries=2, retry_backoff_s=0.01)
    config.update(settings)
    return OpenAIBackend(BackendConfig(**config), SamplingConfig(temperature=0.5, top_p=0.9, max_new_tokens=64))


def test_api_answers_with_retries_on_429_500_and_timeouts(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    with FakeLLMServer() as server:
        backend = _api(server)
        results = {r.key: r for r in backend.run([_request(c, seed=i) for i, c in enumerate([DOG, RAIN, STREET,
                                                                                             THUNDER, DOOR])])}
    assert {k: r.status for k, r in results.items()} == {DOG: "ok", RAIN: "ok", STREET: "ok", THUNDER: "ok",
                                                         DOOR: "malformed"}
    assert results[RAIN].text == server.answers[RAIN] and results[RAIN].finish_reason == "stop"
    assert results[DOG].prompt_tokens > 0 and results[DOG].completion_tokens > 0
    assert (RAIN, 429) in server.statuses and (STREET, 500) in server.statuses and (THUNDER, 0) in server.statuses
    assert server.answered[RAIN] == server.answered[STREET] == server.answered[THUNDER] == 1
    sent = {b["messages"][0]["content"].split('"')[1]: b for b in server.bodies}
    assert [sent[c]["seed"] for c in (DOG, RAIN, STREET)] == [0, 1, 2]
    assert sent[DOG]["temperature"] == 0.5 and sent[DOG]["top_p"] == 0.9 and sent[DOG]["max_tokens"] == 64
    assert all(h["authorization"] == "Bearer sk-test-key" for h in server.headers)


def test_our_retries_take_over_when_the_client_gives_up(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeLLMServer() as server:
        server.always_fail = {KETTLE: 503}
        backend = _api(server, max_retries=0, retry_attempts=2)
        results = {r.key: r for r in backend.run([_request(RAIN), _request(THUNDER), _request(KETTLE)])}
    assert results[RAIN].status == "ok" and results[RAIN].attempts == 2  # 429, then our retry
    assert results[THUNDER].status == "ok" and results[THUNDER].attempts == 2  # timeout, then our retry
    assert results[KETTLE].status == "failed" and results[KETTLE].attempts == 3
    assert "HTTP 503" in results[KETTLE].error and server.calls[KETTLE] == 3


def test_a_bad_request_fails_that_request_only_and_is_not_retried(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeLLMServer() as server:
        server.always_fail = {KETTLE: 400}
        results = {r.key: r for r in _api(server).run([_request(KETTLE), _request(DOG)])}
    assert results[KETTLE].status == "failed" and "HTTP 400" in results[KETTLE].error
    assert server.calls[KETTLE] == 1 and results[DOG].status == "ok"


def test_authentication_failure_stops_the_run(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeLLMServer() as server:
        server.always_fail = {DOG: 401}
        with pytest.raises(BackendFatalError, match="AuthenticationError \\(HTTP 401\\)"):
            list(_api(server).run([_request(DOG)]))


@pytest.mark.parametrize("status", [401, 500, 400])
def test_a_key_the_server_echoes_is_redacted(monkeypatch, status):
    key = "sk-echoed-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with FakeLLMServer() as server:
        server.always_fail = {DOG: status}
        server.echo_key = True
        backend = _api(server, max_retries=0, retry_attempts=0)
        if status == 401:
            with pytest.raises(BackendFatalError) as raised:
                list(backend.run([_request(DOG)]))
            message = str(raised.value)
        else:
            [result] = list(backend.run([_request(DOG)]))
            assert result.status == "failed"
            message = result.error
    assert key not in message and "you sent Bearer <value of OPENAI_API_KEY redacted>" in message
    assert f"HTTP {status}" in message


def test_api_key_comes_from_the_environment_only(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="set the environment variable OPENAI_API_KEY"):
        OpenAIBackend(BackendConfig(kind="openai", model="gpt-4o"), SamplingConfig())
    monkeypatch.setenv("MY_KEY", "sk-mine")
    backend = OpenAIBackend(BackendConfig(kind="openai", model="gpt-4o", api_key_env="MY_KEY"), SamplingConfig())
    assert backend.client.api_key == "sk-mine"
    # Local servers need no key.
    OpenAIBackend(BackendConfig(kind="openai", model="m", base_url="http://127.0.0.1:9/v1"), SamplingConfig())


def test_rate_limiter_spaces_requests_across_threads():
    limiter = RateLimiter(per_minute=1200)  # one start every 50 ms
    starts: list[float] = []

    def work() -> None:
        for _ in range(2):
            limiter.wait()
            starts.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts.sort()
    assert starts[-1] - starts[0] >= 5 * 0.05 - 0.01
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.04


# --------------------------------------------------------------------------------------------------
# Local causal LM


def test_row_sampler_draws_from_the_softmax_within_the_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 4000
    scores = probs.log().expand(rows, -1).clone()
    draws = SeededRowSampler(list(range(rows)), temperature=1.0, top_p=1.0)(None, scores).argmax(dim=-1)
    frequencies = torch.bincount(draws, minlength=4).float() / rows
    assert torch.allclose(frequencies, probs, atol=0.03)
    # top_p 0.8 keeps the two most likely tokens (0.5 + 0.3), renormalised to 0.625 / 0.375.
    draws = SeededRowSampler(list(range(rows)), temperature=1.0, top_p=0.8)(None, scores).argmax(dim=-1)
    frequencies = torch.bincount(draws, minlength=4).float() / rows
    assert frequencies[2:].sum() == 0 and math.isclose(frequencies[0], 0.625, abs_tol=0.03)
    # Temperature 0 is greedy; the same seed draws the same token.
    assert SeededRowSampler([1, 2], 0.0, 1.0)(None, scores[:2]).argmax(dim=-1).tolist() == [0, 0]
    again = SeededRowSampler([7], 1.0, 1.0)
    assert again(None, scores[:1]).argmax() == SeededRowSampler([7], 1.0, 1.0)(None, scores[:1]).argmax()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


def _hf(folder, batch_size: int, max_new_tokens: int = 24) -> HFBackend:
    return HFBackend(BackendConfig(kind="hf", model=str(folder), batch_size=batch_size, device="cpu"),
                     SamplingConfig(max_new_tokens=max_new_tokens))


def test_local_lm_answers_do_not_depend_on_batch_or_order(tiny_lm):
    requests = [_request(DOG, seed=11), _request("Rain.", seed=22), _request(STREET, seed=33)]
    batched = {r.key: r for r in _hf(tiny_lm, batch_size=3).run(requests)}
    single = {r.key: r for r in _hf(tiny_lm, batch_size=1).run(requests[::-1])}
    assert {k: r.text for k, r in batched.items()} == {k: r.text for k, r in single.items()}
    assert all(r.status == "ok" and r.text for r in batched.values())
    reseeded = list(_hf(tiny_lm, batch_size=1).run([_request(DOG, seed=12)]))[0]
    assert reseeded.text != batched[DOG].text


def test_local_lm_wraps_prompts_in_the_phi2_format_and_counts_tokens(tiny_lm):
    backend = _hf(tiny_lm, batch_size=2, max_new_tokens=8)
    result = list(backend.run([_request(DOG)]))[0]
    formatted = f"Instruct: {_request(DOG).prompt}\nOutput:"
    assert result.prompt_tokens == len(backend.tokenizer(formatted)["input_ids"])
    assert result.completion_tokens <= 8
    assert result.finish_reason == ("length" if result.completion_tokens == 8 else "stop")
    assert backend.tokenizer.padding_side == "left"


def test_local_lm_that_cannot_load_says_how_to_work_offline(tmp_path):
    with pytest.raises(ConfigError, match="cannot load the LLM.*local folder with --model"):
        HFBackend(BackendConfig(kind="hf", model=str(tmp_path / "missing")), SamplingConfig())


# --------------------------------------------------------------------------------------------------
# A slow or oversized server: the timeout bounds each whole attempt, an answer is bounded in size


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_the_timeout_bounds_a_whole_attempt_against_a_trickling_server(monkeypatch, headers_too):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeLLMServer() as server:
        server.trickle = {DOG: 0.1, KETTLE: 0.1}  # each answer would take a minute or more
        server.trickle_headers = headers_too
        threads, fds = threading.active_count(), _open_fds()
        backend = _api(server, timeout_s=1.0, max_retries=1, retry_attempts=0)
        started = time.monotonic()
        results = {r.key: r for r in backend.run([_request(DOG), _request(KETTLE), _request(STREET)])}
        elapsed = time.monotonic() - started
        backend.close()
        for _ in range(50):  # the server notices a hang-up at its next byte or two
            if len(server.trickled) == 4 and threading.active_count() <= threads:
                break
            time.sleep(0.1)
        assert threading.active_count() <= threads and _open_fds() <= fds  # no thread, no socket left behind
    assert results[STREET].status == "ok"
    for caption in (DOG, KETTLE):
        assert results[caption].status == "failed" and results[caption].attempts == 1
        assert "no complete answer within 1 s" in results[caption].error
        assert server.calls[caption] == 2  # the client's own retry, bounded the same way
    # Four attempts of 1 s on two threads, next to minutes of trickling; no attempt went on much past its second.
    assert elapsed < 15 and len(server.trickled) == 4 and max(server.trickled) < 30


def test_an_oversized_answer_is_cut_at_the_bound_and_not_read_whole(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeLLMServer() as server:
        server.oversized = {DOG: 10_000_000, RAIN: 20_000}  # 64 tokens asked: 1,024 bytes kept
        backend = _api(server, timeout_s=20.0)  # building 10 MB of JSON takes the server a while
        results = {r.key: r for r in backend.run([_request(DOG), _request(RAIN), _request(STREET)])}
    for caption in (DOG, RAIN):
        assert results[caption].status == "ok" and results[caption].cut
        assert len(results[caption].text.encode()) <= 1024 < len(server.answer_text(caption)) + 1000
        assert results[caption].text.startswith(server.answer_text(caption))  # the start is kept
    assert server.calls[DOG] == server.hung_up[DOG] == 1  # 10 MB: the client stopped reading at the body bound
    assert server.hung_up[RAIN] == 0  # 20 kB: read whole (under the body bound), the text cut
    assert results[RAIN].completion_tokens > 0 and results[RAIN].finish_reason == "stop"
    assert not results[STREET].cut and results[STREET].text == server.answer_text(STREET)


def test_a_compressed_answer_is_refused(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeLLMServer() as server:
        server.compress = {DOG}
        [result] = list(_api(server, max_retries=0, retry_attempts=0).run([_request(DOG)]))
    assert result.status == "failed" and "compressed its answer (Content-Encoding: gzip)" in result.error


def test_proxies_named_in_the_environment_are_used_with_the_same_bounds(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with FakeLLMServer() as server:
        server.trickle = {KETTLE: 0.1}
        monkeypatch.setenv("HTTP_PROXY", server.base_url.split("/")[2])  # host:port, no scheme: as curl takes it
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        backend = _api(server, base_url="http://llm.invalid:8000/v1", max_retries=0, retry_attempts=0)
        results = {r.key: r for r in backend.run([_request(DOG), _request(KETTLE)])}
    assert results[DOG].status == "ok" and "no complete answer within 1 s" in results[KETTLE].error
    assert server.proxied == ["http://llm.invalid:8000/v1/chat/completions"] * 2


def test_a_cut_answer_keeps_no_start_of_the_key():
    key = "sk-echoed-0123456789abcdef"
    redact = Redactor(key, "OPENAI_API_KEY")
    assert redact("you sent " + key[:12], cut=True) == "you sent " + redact.mask
    assert redact("ends with sk-", cut=True) == "ends with sk-"  # three characters say nothing
    assert redact("you sent " + key[:12]) == "you sent " + key[:12]  # a whole answer: only whole keys


def test_bound_answer_cuts_at_a_character_boundary():
    result = LLMResult("k", "ok", text="é" * 10)  # 2 bytes each
    assert bound_answer(result, 20) == result and not result.cut
    assert bound_answer(result, 7).text == "ééé" and bound_answer(result, 7).cut


@pytest.mark.parametrize("body, expected", [
    (b'{"choices": [{"message": {"content": "A dog barks. A cat', {"choices": [{"message": {"content": "A dog barks. A cat"}}]}),
    (b'{"a": "x\\u00', {"a": "x"}),  # cut inside an escape
    (b'{"a": "x\\', {"a": "x"}),
    (b'{"a": "\\\\', {"a": "\\"}),  # an escaped backslash is whole
    (b'{"a": [1, 2, 3', {"a": [1, 2]}),  # the last number may have had more digits
    (b'{"a": tr', {}),
    (b'{"a": "\xc3\xa9\xc3', {"a": "é"}),  # cut inside a character
    (b'{"a": {"b": true}, "c', {"a": {"b": True}}),
    (b'', None),
])
def test_parse_json_prefix_keeps_what_was_complete(body, expected):
    from dcase9.augment.bounded_http import parse_json_prefix

    assert parse_json_prefix(body) == expected


@pytest.mark.parametrize("body", [b'{"a" 1', b'{"a": x, "b": 1}', b'[' * 100, b'{"a": "x"] '])
def test_parse_json_prefix_refuses_what_is_not_json(body):
    from dcase9.augment.bounded_http import parse_json_prefix

    with pytest.raises(ValueError, match="not"):
        parse_json_prefix(body)


def test_local_lm_answers_are_bounded_too(tiny_lm):
    backend = _hf(tiny_lm, batch_size=1, max_new_tokens=8)  # 128 bytes kept
    backend.tokenizer.decode = lambda *args, **kwargs: "a caption " * 100  # tokens of a strange vocabulary
    [result] = list(backend.run([_request(DOG)]))
    assert result.cut and len(result.text) == 128
