"""The chat-completions client against the fake OpenAI server over real HTTP: what it
sends, the retries it makes (a 5xx once, a short 429), and the errors it gives (the
status the API answers, never the key)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.ai.client import AIError, ChatMessage, ChatModel
from tests.fakes.openai_api import DEFAULT_MODEL, OpenAIFake

KEY = "sk-test-" + "ClientKey0123456789abcdef"
ASK = [ChatMessage("system", "rules"), ChatMessage("user", "question")]


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIFake]:
    with OpenAIFake.running(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: OpenAIFake) -> OpenAIFake:
    server.reset()
    return server


def _model(fake: OpenAIFake, **kw: object) -> ChatModel:
    return ChatModel(fake.url, DEFAULT_MODEL, KEY, **kw)  # type: ignore[arg-type]


def test_sends_the_openai_request_and_reads_the_answer(fake: OpenAIFake) -> None:
    fake.reply("hello")
    assert _model(fake).complete(ASK) == "hello"
    (sent,) = fake.chat_requests()
    assert sent.body["model"] == DEFAULT_MODEL and sent.body["temperature"] == 0
    assert sent.messages == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "question"},
    ]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in sent.raw.decode()  # the key travels in the header only


def test_a_server_error_is_tried_once_more(fake: OpenAIFake) -> None:
    fake.fail(502)
    fake.reply("second time lucky")
    assert _model(fake).complete(ASK) == "second time lucky"
    assert len(fake.chat_requests()) == 2


def test_a_short_rate_limit_is_waited_out_a_long_one_is_reported(fake: OpenAIFake) -> None:
    fake.fail(429, retry_after=0.2)
    fake.reply("after the wait")
    assert _model(fake).complete(ASK) == "after the wait"
    fake.fail(429, retry_after=120)
    with pytest.raises(AIError) as raised:
        _model(fake).complete(ASK)
    assert (raised.value.status, raised.value.code) == (503, "ai_rate_limited")
    assert raised.value.retry_after == 120 and "120 s" in raised.value.message


def test_errors_say_what_went_wrong_and_never_show_the_key(fake: OpenAIFake) -> None:
    wrong = ChatModel(fake.url, DEFAULT_MODEL, "sk-wrong-" + "9" * 20)
    with pytest.raises(AIError) as raised:
        wrong.complete(ASK)
    assert (raised.value.status, raised.value.code) == (502, "ai_unauthorized")
    assert "9999" not in raised.value.message
    with pytest.raises(AIError) as raised:
        ChatModel(fake.url, "gpt-nope", KEY).complete(ASK)
    assert raised.value.status == 502 and "gpt-nope" in raised.value.message
    fake.fail(500, times=2, message=f"boom with {KEY}")
    with pytest.raises(AIError) as raised:
        _model(fake).complete(ASK)
    assert raised.value.code == "ai_failed" and KEY not in raised.value.message
    assert "***" in raised.value.message


def test_a_slow_server_is_a_504_and_an_unreachable_one_a_503(fake: OpenAIFake) -> None:
    fake.reply("too late", delay_s=1.0)
    with pytest.raises(AIError) as raised:
        _model(fake, timeout_s=0.2).complete(ASK)
    assert (raised.value.status, raised.value.code) == (504, "ai_timeout")
    with pytest.raises(AIError) as raised:
        ChatModel("http://127.0.0.1:9/v1", DEFAULT_MODEL).complete(ASK)
    assert (raised.value.status, raised.value.code) == (503, "ai_unavailable")


def test_azure_openai_gets_its_own_key_header_too() -> None:
    """Azure's v1 API is not something a test can run: its host decides the extra header."""
    import httpx

    seen: list[httpx.Request] = []

    def azure(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})

    model = ChatModel(
        "https://acme.openai.azure.com/openai/v1",
        "gpt-4o-mini",
        KEY,
        transport=httpx.MockTransport(azure),
    )
    assert model.complete(ASK) == "hi"
    (request,) = seen
    assert str(request.url) == "https://acme.openai.azure.com/openai/v1/chat/completions"
    assert request.headers["api-key"] == KEY and request.headers["authorization"] == f"Bearer {KEY}"
