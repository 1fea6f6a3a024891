"""bayling-serve through the official ``openai`` client on 127.0.0.1: answers, streaming, concurrency, a client
that disconnects mid-stream, and malformed requests (a clear 4xx, and the server keeps serving)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from hostile import REPO, cli_env

pytestmark = pytest.mark.slow  # one server start (~20 s on a busy CPU) for the module

NAME = "bayling-tiny"
HELLO = [{"role": "user", "content": "Hello there"}]


class Server:
    def __init__(self, proc: subprocess.Popen, log, base: str) -> None:
        self.proc, self.log_file, self.base = proc, log, base
        self.client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(final_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "bayling.cli.serve", "--model", str(final_dir), "--port", "0",
                                 "--served-model-name", NAME, "--temperature", "0", "--max-context", "4096"],
                                cwd=REPO, env=cli_env(), stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    base = None
    while time.time() < deadline and proc.poll() is None and base is None:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", log.read_text(encoding="utf-8"))
        base = found.group(1) if found else None
        time.sleep(0.2)
    assert base, f"server did not start:\n{log.read_text()}"
    srv = Server(proc, log, base)
    while time.time() < deadline:
        try:
            if srv.raw("GET", "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    yield srv
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def ask(srv: Server, messages, max_tokens: int = 12, **kw):
    return srv.client.chat.completions.create(model=NAME, messages=messages, max_tokens=max_tokens, **kw)


def stream_text(srv: Server, messages, max_tokens: int = 12) -> str:
    chunks = ask(srv, messages, max_tokens, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_models_lists_the_served_name(server):
    assert [m.id for m in server.client.models.list()] == [NAME]


def test_completion_has_openai_shape_and_stream_carries_the_same_answer(server):
    r = ask(server, HELLO)
    assert r.object == "chat.completion" and r.model == NAME and len(r.choices) == 1
    assert r.choices[0].message.role == "assistant" and r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (58, 12, 70)
    chunks = list(ask(server, HELLO, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == r.choices[0].message.content
    assert len({c.id for c in chunks}) == 1


def test_concurrent_requests_each_get_their_own_answer(server):
    prompts = [[{"role": "user", "content": f"Question number {i}?"}] for i in range(4)]
    alone = [ask(server, p).choices[0].message.content for p in prompts]
    assert len(set(alone)) > 1  # different prompts, different answers: a mix-up would show
    with ThreadPoolExecutor(8) as pool:
        plain = [pool.submit(lambda p=p: ask(server, p).choices[0].message.content) for p in prompts]
        streamed = [pool.submit(stream_text, server, p) for p in prompts]
        assert [f.result() for f in plain] == alone
        assert [f.result() for f in streamed] == alone


def test_a_client_that_disconnects_mid_stream_frees_the_model(server):
    stream = ask(server, HELLO, max_tokens=3000, stream=True)
    rid = None
    for i, chunk in enumerate(stream):
        rid = chunk.id
        if i == 3:
            break
    stream.close()
    deadline = time.time() + 60
    done = None
    while time.time() < deadline and done is None:
        done = re.search(rf"{rid}: \d+ prompt tokens, (\d+) new tokens, finish_reason=cancelled", server.log())
        time.sleep(0.1)
    assert done, server.log()[-2000:]
    assert int(done.group(1)) < 3000
    assert "client disconnected" in server.log()
    assert ask(server, HELLO).choices[0].finish_reason == "length"  # still serving


BAD = [
    ({"messages": []}, 400, "messages: List should have at least 1 item"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
    ({"messages": [{"role": "user"}]}, 400, "messages.0.content: Field required"),
    ({"messages": [{"role": "user", "content": 3}]}, 400, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
     "messages.0.content"),
    ({"messages": [*HELLO, {"role": "system", "content": "late"}]}, 400,
     "messages.1: a system message is only allowed first"),
    ({"temperature": 3}, 400, "temperature: Input should be less than or equal to 2"),
    ({"top_p": 0}, 400, "top_p"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 5000}, 400, "the model's context is 4096 tokens"),
    ({"n": 2}, 400, "n: Input should be less than or equal to 1"),
    ({"presence_penalty": 0.5}, 400, "presence_penalty=0.5 is not supported"),
    ({"stop": ["\n"]}, 400, "stop=[\"\\n\"] is not supported"),
    ({"extra_body": {"best_of": 3}}, 400, "unknown parameter 'best_of'"),
    ({"model": "gpt-4o"}, 404, "the model 'gpt-4o' does not exist; this server serves 'bayling-tiny'"),
]


@pytest.mark.parametrize("change,status,needle", BAD, ids=[f"{list(c)[0]}-{i}" for i, (c, _, _) in enumerate(BAD)])
def test_malformed_request_gets_a_clear_4xx_and_serving_continues(server, change, status, needle):
    args = {"model": NAME, "messages": HELLO, "max_tokens": 4, **change}
    with pytest.raises(openai.APIStatusError) as err:
        server.client.chat.completions.create(**args)
    assert err.value.status_code == status
    assert needle in err.value.body["message"], err.value.body
    assert err.value.body["type"] in ("invalid_request_error", "not_found_error")
    assert server.proc.poll() is None


@pytest.mark.parametrize("body,needle", [
    (b"{not json", "the request body is not valid JSON"),
    (b"[1, 2]", "request body: Input should be a valid dictionary"),
    (b'{"model": "bayling-tiny"}', "messages: Field required"),
    ("{\"model\": \"bayling-tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"\udcff\"}]}"
     .encode("utf-8", "surrogatepass"), "messages.0: content is not valid Unicode"),
    (b'{"model": "bayling-tiny", "messages": [{"role": "user", "content": "\\udcff"}]}',
     "messages.0: content is not valid Unicode (surrogates not allowed at character 0)"),
])
def test_unparseable_bodies_get_400_with_an_openai_error_object(server, body, needle):
    status, reply = server.raw("POST", "/v1/chat/completions", body)
    assert status == 400 and needle in reply["error"]["message"], reply
    assert server.raw("GET", "/health") == (200, {"status": "ok", "model": NAME})


def test_unknown_route_and_wrong_method_are_4xx_in_the_same_format(server):
    assert server.raw("GET", "/v1/nothing")[0] == 404
    status, reply = server.raw("GET", "/v1/chat/completions")
    assert status == 405 and reply["error"]["type"] == "invalid_request_error"
