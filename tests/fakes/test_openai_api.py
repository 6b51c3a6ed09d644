"""The OpenAI fake over real HTTP: the wire shapes, errors and script the AI client relies on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.openai_api import DEFAULT_MODEL, OpenAIFake

KEY = "sk-test-0123456789abcdef"


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIFake]:
    with OpenAIFake.running(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: OpenAIFake) -> OpenAIFake:
    server.reset()
    return server


def _chat(fake: OpenAIFake, key: str = KEY, **body: object) -> httpx.Response:
    payload = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(
        f"{fake.url}/chat/completions", json=payload, headers={"Authorization": f"Bearer {key}"}
    )


def test_answers_the_script_in_order_and_records_what_was_sent(fake: OpenAIFake) -> None:
    fake.reply("first")
    fake.reply_sql("select 1", "one")
    one = _chat(
        fake, messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "q1"}]
    )
    two = _chat(fake)
    assert one.status_code == 200
    body = one.json()
    assert body["object"] == "chat.completion" and body["model"] == DEFAULT_MODEL
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "first",
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    assert (
        two.json()["choices"][0]["message"]["content"]
        == '{"sql": "select 1", "explanation": "one"}'
    )
    sent = fake.chat_requests()
    assert [m["content"] for m in sent[0].messages] == ["sys", "q1"]
    assert sent[0].headers["authorization"] == f"Bearer {KEY}"
    # the script is used up: a request beyond it fails loudly
    extra = _chat(fake)
    assert extra.status_code == 500 and "script is empty" in extra.json()["error"]["message"]


def test_wrong_key_is_401_with_openais_body_and_the_key_masked(fake: OpenAIFake) -> None:
    fake.reply("never")
    r = _chat(fake, key="sk-wrong-key-987654321")
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "sk-wrong-key-987654321" not in r.text
    assert fake.pending() == 1  # a refused request does not use up the script


def test_rate_limit_and_server_errors_come_from_the_script(fake: OpenAIFake) -> None:
    fake.fail(429, retry_after=3)
    fake.fail(503, times=2)
    fake.reply("ok")
    limited = _chat(fake)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert [_chat(fake).status_code for _ in range(2)] == [503, 503]
    assert _chat(fake).json()["choices"][0]["message"]["content"] == "ok"


def test_bad_requests_are_400_naming_the_field_and_unknown_models_404(fake: OpenAIFake) -> None:
    r = _chat(fake, messages=[])
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = _chat(fake, messages=[{"role": "user"}])
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0]"
    r = _chat(fake, model="gpt-unknown")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    models = httpx.get(f"{fake.url}/models", headers={"Authorization": f"Bearer {KEY}"})
    assert [m["id"] for m in models.json()["data"]] == [DEFAULT_MODEL]


def test_a_slow_reply_takes_its_delay_and_default_answers_an_empty_script(fake: OpenAIFake) -> None:
    fake.reply("late", delay_s=0.6)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{fake.url}/chat/completions",
            json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=0.2,
        )
    fake.default = lambda request: f"echo {request.messages[-1]['content']}"
    assert _chat(fake).json()["choices"][0]["message"]["content"] == "echo hi"
