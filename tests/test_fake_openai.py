"""The fake OpenAI server behaves, for the real ``openai`` client, like a real server does.

Every test talks to 127.0.0.1 only, is bounded in time (client timeouts, bounded
hangs) and in count (scripted replies; an unscripted call fails at once).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator

import openai
import pytest

from tests.fake_openai import FakeOpenAI, answer_json, completion, count_prompt_tokens, disconnect, error, hang

API_KEY = "sk-test-0123456789"
MESSAGES = [{"role": "system", "content": "You manage a paper portfolio."}, {"role": "user", "content": "Brief."}]
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "decision", "strict": True, "schema": {"type": "object", "properties": {}}},
}


def _fake_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fake-openai")]


def _wait_until(predicate: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    assert _wait_until(lambda: not _fake_threads(), 1.0), _fake_threads()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server
    assert server.internal_errors == []


@pytest.fixture
def make_client(fake: FakeOpenAI) -> Iterator[Callable[..., openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(*, max_retries: int = 0, timeout: float = 5.0) -> openai.OpenAI:
        client = openai.OpenAI(api_key=API_KEY, base_url=fake.base_url, max_retries=max_retries, timeout=timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def ask(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(model=kwargs.pop("model", "test-model"), messages=MESSAGES, **kwargs)


# ------------------------------------------------------------------ happy path and shape


def test_completion_parses_into_chat_completion(fake, make_client):
    fake.script(
        completion("hello", prompt_tokens=1000, completion_tokens=42),
        completion(None, refusal="I can't help with that.", finish_reason="content_filter", model="served-model"),
        answer_json({"orders": [{"ticker": "SPY", "side": "buy"}]}),
    )
    client = make_client()

    first = ask(client)
    assert isinstance(first, openai.types.chat.ChatCompletion)
    assert first.object == "chat.completion"
    assert first.model == "test-model"  # echoes the request's model
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].message.content == "hello"
    assert first.choices[0].message.refusal is None
    assert first.choices[0].finish_reason == "stop"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (1000, 42, 1042)
    assert first._request_id == "req_fake_000000"

    refused = ask(client)
    assert refused.choices[0].message.content is None
    assert refused.choices[0].message.refusal == "I can't help with that."
    assert refused.choices[0].finish_reason == "content_filter"
    assert refused.model == "served-model"
    # Defaults: the prompt counted from the request's messages, 150 completion tokens.
    assert (refused.usage.prompt_tokens, refused.usage.completion_tokens) == (count_prompt_tokens(fake.requests[1]), 150)
    assert refused.usage.prompt_tokens > 0

    as_json = ask(client)
    assert json.loads(as_json.choices[0].message.content) == {"orders": [{"ticker": "SPY", "side": "buy"}]}
    assert fake.pending == 0 and fake.unscripted == 0


def test_requests_record_body_and_bearer_key(fake, make_client):
    fake.script(answer_json({}))
    ask(make_client(), model="gpt-x", response_format=JSON_SCHEMA, temperature=0.2, seed=7)

    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert body["model"] == "gpt-x"
    assert body["messages"] == MESSAGES
    assert body["response_format"] == JSON_SCHEMA
    assert request.response_format_type == "json_schema"
    assert body["temperature"] == 0.2
    assert body["seed"] == 7
    assert API_KEY.encode() not in request.body  # the key travels in the header only


# ------------------------------------------------------------------ retries, as the client does them


def test_500_then_completion_succeeds_through_the_clients_retry(fake, make_client):
    fake.script(error(500), completion("recovered"))

    reply = ask(make_client(max_retries=2))

    assert reply.choices[0].message.content == "recovered"
    first, second = fake.requests
    assert [first.headers["x-stainless-retry-count"], second.headers["x-stainless-retry-count"]] == ["0", "1"]
    # No Retry-After: the client's own backoff, 0.5 s minus up to 25 % jitter.
    assert 0.37 <= second.received_at - first.received_at < 2.0


@pytest.mark.parametrize(
    ("header", "value", "wait"),
    [("retry-after-ms", "900", 0.9), ("retry-after", "1", 1.0)],
)
def test_429_retry_after_is_honoured(fake, make_client, header, value, wait):
    fake.script(error(429, "Rate limit reached", type_="rate_limit_error", headers={header: value}), completion("ok"))

    reply = ask(make_client(max_retries=1))

    assert reply.choices[0].message.content == "ok"
    first, second = fake.requests
    gap = second.received_at - first.received_at
    # At least the server's delay, which is longer than the default first backoff (<= 0.5 s):
    # only a lower bound, so a slow machine cannot make this fail.
    assert wait <= gap < wait + 5, gap


def test_hang_longer_than_timeout_raises_api_timeout_after_all_attempts(fake, make_client):
    fake.script(hang(10), hang(10))
    client = make_client(max_retries=1, timeout=0.2)

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(client)

    assert len(fake.requests) == 2  # max_retries + 1
    assert time.monotonic() - started < 3.0
    assert fake.pending == 0
    # The client hung up after each timeout; the hung handlers notice and stop waiting.
    assert _wait_until(lambda: not [n for n in _fake_threads() if n.startswith("fake-openai-conn")], 1.0)


def test_server_that_never_recovers_raises_internal_server_error(fake, make_client):
    fast = {"retry-after-ms": "10"}  # keeps the three attempts quick
    fake.script(*[error(500, "engine overloaded", headers=fast)] * 3)

    with pytest.raises(openai.InternalServerError) as caught:
        ask(make_client(max_retries=2))

    assert len(fake.requests) == 3  # max_retries + 1
    assert caught.value.status_code == 500
    assert caught.value.body == {"message": "engine overloaded", "type": "server_error", "param": None, "code": None}
    assert "engine overloaded" in str(caught.value)


def test_unscripted_call_fails_at_once_without_retries(fake, make_client):
    with pytest.raises(openai.InternalServerError, match="no scripted reply"):
        ask(make_client(max_retries=2))

    assert len(fake.requests) == 1  # x-should-retry: false stops the client's retries (and their backoff)
    assert fake.unscripted == 1


# ------------------------------------------------------------------ response-format rejection


def test_rejected_json_schema_is_a_bad_request_and_the_plain_request_succeeds(fake, make_client):
    fake.reject_response_formats("json_schema", "json_object")
    fake.script(answer_json({"orders": []}))
    client = make_client(max_retries=2)

    with pytest.raises(openai.BadRequestError) as schema_err:
        ask(client, response_format=JSON_SCHEMA)
    with pytest.raises(openai.BadRequestError):
        ask(client, response_format={"type": "json_object"})
    assert fake.pending == 1  # rejections consume no scripted reply
    reply = ask(client)

    assert json.loads(reply.choices[0].message.content) == {"orders": []}
    assert schema_err.value.status_code == 400
    assert schema_err.value.param == "response_format"
    assert "'json_schema' is not supported" in schema_err.value.message
    assert [r.response_format_type for r in fake.requests] == ["json_schema", "json_object", None]  # no retries of 400s


def test_json_object_still_accepted_when_only_json_schema_is_rejected(fake, make_client):
    fake.reject_response_formats("json_schema")
    fake.script(answer_json({"a": 1}), answer_json({"a": 2}))
    client = make_client()

    with pytest.raises(openai.BadRequestError):
        ask(client, response_format=JSON_SCHEMA)
    assert json.loads(ask(client, response_format={"type": "json_object"}).choices[0].message.content) == {"a": 1}
    fake.reject_response_formats()  # the server now accepts everything
    assert json.loads(ask(client, response_format=JSON_SCHEMA).choices[0].message.content) == {"a": 2}


# ------------------------------------------------------------------ server mechanics


def test_hang_answers_after_the_delay(fake, make_client):
    fake.script(hang(0.1, then=completion("late")))

    started = time.monotonic()
    reply = ask(make_client(timeout=2.0))

    assert reply.choices[0].message.content == "late"
    assert 0.1 <= time.monotonic() - started < 1.5


def test_hang_does_not_block_other_requests_and_close_interrupts_it():
    fake = FakeOpenAI()
    fake.script(hang(30), completion("served meanwhile"))
    slow = openai.OpenAI(api_key=API_KEY, base_url=fake.base_url, max_retries=0, timeout=10)
    quick = openai.OpenAI(api_key=API_KEY, base_url=fake.base_url, max_retries=0, timeout=2)
    outcome: list[BaseException] = []

    def hung_call() -> None:
        try:
            ask(slow)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    caller = threading.Thread(target=hung_call)
    try:
        caller.start()
        assert _wait_until(lambda: len(fake.requests) == 1)  # the hang took the first reply
        assert ask(quick).choices[0].message.content == "served meanwhile"

        started = time.monotonic()
        fake.close()
        assert time.monotonic() - started < 1.0
        caller.join(2.0)
        assert not caller.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], openai.APIConnectionError)
    finally:
        fake.close()
        caller.join(5.0)
        slow.close()
        quick.close()


def test_disconnect_is_a_connection_error(fake, make_client):
    fake.script(disconnect(), completion("back"))
    client = make_client()

    with pytest.raises(openai.APIConnectionError):
        ask(client)
    assert ask(client).choices[0].message.content == "back"
    assert len(fake.requests) == 2


def test_large_bodies_over_one_keep_alive_connection(fake, make_client):
    big = "x" * 3_000_000
    fake.script(*[completion(big)] * 3)
    client = make_client()

    for _ in range(3):
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": big}])
        assert reply.choices[0].message.content == big

    assert all(r.json["messages"][0]["content"] == big for r in fake.requests)
    assert len({r.peer for r in fake.requests}) == 1  # one connection, reused


def test_unknown_path_and_bad_json(fake, make_client):
    with pytest.raises(openai.NotFoundError):
        make_client().models.list()

    conn = http.client.HTTPConnection("127.0.0.1", int(fake.base_url.rsplit(":", 1)[1].split("/")[0]), timeout=2)
    try:
        conn.request("POST", "/v1/chat/completions", body=b"{not json", headers={"Content-Type": "application/json"})
        bad = conn.getresponse()
        assert bad.status == 400
        assert json.loads(bad.read())["error"]["type"] == "invalid_request_error"
        conn.request("POST", "/v1/embeddings?x=1", body=b"{}")  # same connection: framing is right
        missing = conn.getresponse()
        assert missing.status == 404
        assert json.loads(missing.read())["error"]["code"] == "unknown_url"
    finally:
        conn.close()

    assert [(r.method, r.path, r.query) for r in fake.requests] == [
        ("GET", "/v1/models", ""),
        ("POST", "/v1/chat/completions", ""),
        ("POST", "/v1/embeddings", "x=1"),
    ]
    assert fake.requests[1].json is None and fake.requests[1].body == b"{not json"
    assert fake.pending == 0 and fake.unscripted == 0


# ------------------------------------------------------------------ strict profiles

def test_the_reasoning_profile_answers_with_openai_s_error_bodies(fake, make_client):
    from engine.llm.client import error_detail

    fake.use_profile("openai-reasoning")
    client = make_client()
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, max_tokens=100)
    assert error_detail(e.value) == ("max_tokens", "unsupported_parameter", "Unsupported parameter: 'max_tokens' "
                                     "is not supported with this model. Use 'max_completion_tokens' instead.")
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, max_completion_tokens=100, temperature=0.2)
    assert error_detail(e.value)[:2] == ("temperature", "unsupported_value")
    cut = ask(client, max_completion_tokens=1000)  # medium effort by default: 6,000 reasoning tokens
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content == ""
    assert cut.usage.completion_tokens_details.reasoning_tokens == 1000
    assert fake.pending == 0 and fake.unscripted == 0  # none of it consumed the script


def test_mistral_s_422_names_the_field_in_fastapi_s_shape(fake, make_client):
    from engine.llm.client import error_detail

    fake.use_profile("mistral")
    with pytest.raises(openai.UnprocessableEntityError) as e:
        ask(make_client(), seed=7)
    param, _, message = error_detail(e.value)
    assert param == "seed" and "extra_forbidden" in message


def test_the_models_list_and_a_wrong_key(fake, make_client):
    fake.models = ["gpt-6-luna"]
    assert [m.id for m in make_client().models.list()] == ["gpt-6-luna"]
    fake.key = "sk-another"
    with pytest.raises(openai.AuthenticationError):
        ask(make_client())
