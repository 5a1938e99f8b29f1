"""The ``openai`` backend against a local OpenAI-compatible server that injects faults on demand.

The server answers ``POST /v1/chat/completions`` like vLLM, echoing the request's text so that order can
be checked. A test scripts faults per prompt text: ``server.faults["p"] = ["500", "ok"]`` makes the first
call whose user text is ``p`` fail with HTTP 500 and the second succeed; calls past the script get
``server.default`` ("ok": they succeed).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from captioner.backends.base import ChatRequest, VLMBackend, user_request
from captioner.backends.openai_api import OpenAIBackend, OpenAIRequestError

KEY = "sk-test-0123456789abcdefSECRET"
SLOW_SECONDS = 0.8  # the "slow" fault; tests using it set timeout=0.5
LATE_SECONDS = 0.15  # the "late" fault: an answer that is late but within the timeout


class FakeServer:
    """State shared with the handler threads: recorded calls, scripted faults, in-flight counter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict] = []  # {"headers": {lowercase name: value}, "body": {...}}
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.delay = 0.0  # seconds every answer takes
        self.default = "ok"  # the fault of calls past their script
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""

    def calls_for(self, text: str) -> int:
        return sum(_user_text(c["body"]) == text for c in self.calls)


def _user_text(body: dict) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(p["text"] for p in content if p["type"] == "text")


def _make_handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", (headers or {}).pop("Content-Type", "application/json"))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = _user_text(body)
            with state.lock:
                state.calls.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                script = state.faults.get(text)
                fault = script.popleft() if script else state.default
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                time.sleep(state.delay + {"slow": SLOW_SECONDS, "late": LATE_SECONDS}.get(fault, 0.0))
                self._answer(fault, body, text)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _answer(self, fault: str, body: dict, text: str) -> None:
            if self.path != "/v1/chat/completions":
                return self._send(404, b'{"object": "error", "message": "not found"}')
            if fault == "500":
                return self._send(500, b'{"object": "error", "message": "engine crashed", "code": 500}')
            if fault == "429":
                return self._send(429, b'{"error": {"message": "rate limited"}}')
            if fault == "429-retry-after":
                return self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "1"})
            if fault == "401":  # like api.openai.com, the message echoes the key it got
                got = self.headers.get("Authorization", "").removeprefix("Bearer ")
                msg = {"error": {"message": f"Incorrect API key provided: {got}", "code": "invalid_api_key"}}
                return self._send(401, json.dumps(msg).encode())
            if fault == "malformed":
                return self._send(200, b'{"id": "chatcmpl-1", "choices": [{"message": ')
            if fault == "no-choices":
                return self._send(200, b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": []}')
            if fault == "null-content":
                return self._send(200, json.dumps(_completion(body, None)).encode())
            if fault == "html":
                return self._send(200, b"<html>502 Bad Gateway</html>", {"Content-Type": "text/html"})
            assert fault in ("ok", "slow", "late", "length"), fault
            n_images = sum(p["type"] == "image_url" for m in body["messages"]
                           if isinstance(m["content"], list) for p in m["content"])
            # "length": the answer ran into max_tokens, as vLLM reports it
            finish = "length" if fault == "length" else "stop"
            self._send(200, json.dumps(_completion(body, f"echo: {text} [{n_images} images]", finish)).encode())

    return Handler


def _completion(body: dict, content: str | None, finish_reason: str = "stop") -> dict:
    """A chat completion as vLLM's OpenAI server writes it."""
    return {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": []},
                         "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}],
            "usage": {"prompt_tokens": 10, "total_tokens": 12, "completion_tokens": 2}, "prompt_logprobs": None}


@pytest.fixture
def server():
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def make_backend(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    made = []

    def make(**kw) -> OpenAIBackend:
        kw = {"model": "qwen-vl", "base_url": server.url, "max_retries": 1, "timeout": 5.0} | kw
        made.append(OpenAIBackend(**kw))
        return made[-1]

    yield make
    for b in made:
        b.close()


def _req(text: str) -> ChatRequest:
    return user_request([text])


def test_batch_answers_in_order(server, make_backend):
    backend = make_backend(concurrency=8)
    assert isinstance(backend, VLMBackend) and backend.name == "openai"
    texts = [f"prompt {i}" for i in range(8)]
    for t in texts[:4]:  # the first half answers last
        server.faults[t].append("late")
    assert backend.generate([_req(t) for t in texts]) == [f"echo: {t} [0 images]" for t in texts]
    assert backend.generate([]) == []


def test_request_body_and_images(server, make_backend):
    rng = np.random.default_rng(0)
    img1 = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    img2 = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    req = ChatRequest([{"role": "system", "content": [{"type": "text", "text": "You are a captioner."}]},
                       {"role": "user", "content": "earlier question"},
                       {"role": "assistant", "content": "earlier answer"},
                       {"role": "user", "content": [{"type": "image", "image": img1}, {"type": "text", "text": "a"},
                                                    {"type": "image", "image": img2}]}])
    backend = make_backend(max_tokens=77, temperature=0.3)
    assert backend.generate([req]) == ["echo: a [2 images]"]

    body = server.calls[0]["body"]
    assert body["model"] == "qwen-vl" and body["max_tokens"] == 77 and body["temperature"] == 0.3
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == "You are a captioner." and msgs[2]["content"] == "earlier answer"
    parts = msgs[3]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text", "image_url"] and parts[1]["text"] == "a"
    for part, img in [(parts[0], img1), (parts[2], img2)]:
        header, data = part["image_url"]["url"].split(",", 1)
        assert header == "data:image/png;base64"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))), img)

    make_backend(image_format="jpeg").generate([req])
    url = server.calls[1]["body"]["messages"][3]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).format == "JPEG"


def test_concurrency_is_bounded(server, make_backend):
    server.delay = 0.2
    backend = make_backend(concurrency=2)
    texts = [f"slow-ish {i}" for i in range(6)]
    assert backend.generate([_req(t) for t in texts]) == [f"echo: {t} [0 images]" for t in texts]
    assert server.max_in_flight == 2


@pytest.mark.parametrize("fault", ["500", "429"])
def test_retryable_status_then_success(server, make_backend, caplog, fault):
    server.faults["p"].extend([fault, "ok"])
    with caplog.at_level(logging.WARNING, logger="captioner.backends.openai"):
        assert make_backend().generate([_req("p")]) == ["echo: p [0 images]"]
    assert server.calls_for("p") == 2
    assert any(f"HTTP {fault}" in r.getMessage() for r in caplog.records)


def test_retry_after_is_honoured(server, make_backend):
    server.faults["p"].extend(["429-retry-after", "ok"])
    t0 = time.monotonic()
    assert make_backend().generate([_req("p")]) == ["echo: p [0 images]"]
    # the SDK's own backoff would wait at most 0.5 s; Retry-After asked for 1 s
    assert time.monotonic() - t0 >= 0.95
    assert server.calls_for("p") == 2


def test_persistent_500_fails_only_its_slot(server, make_backend):
    server.faults["bad"].extend(["500"] * 5)
    out = make_backend(max_retries=1).generate([_req("good 1"), _req("bad"), _req("good 2")])
    assert out[0] == "echo: good 1 [0 images]" and out[2] == "echo: good 2 [0 images]"
    assert isinstance(out[1], OpenAIRequestError)
    assert out[1].status_code == 500 and out[1].kind == "status"
    assert "HTTP 500" in str(out[1]) and "engine crashed" in str(out[1]) and "2 attempts" in str(out[1])
    assert server.calls_for("bad") == 2  # 1 + max_retries


def test_slow_answer_times_out_then_retries(server, make_backend, caplog):
    server.faults["p"].extend(["slow", "ok"])
    with caplog.at_level(logging.WARNING, logger="captioner.backends.openai"):
        assert make_backend(timeout=0.5).generate([_req("p")]) == ["echo: p [0 images]"]
    assert server.calls_for("p") == 2
    assert any("Timeout" in r.getMessage() for r in caplog.records)


def test_slow_answer_every_time_is_a_timeout_error(server, make_backend):
    server.faults["p"].extend(["slow"])
    (err,) = make_backend(timeout=0.5, max_retries=0).generate([_req("p")])
    assert isinstance(err, OpenAIRequestError) and err.kind == "timeout" and "timeout=0.5" in str(err)


def test_malformed_json_then_success(server, make_backend, monkeypatch):
    monkeypatch.setattr("captioner.backends.openai_api.MALFORMED_RETRY_DELAY", 0.01)
    server.faults["p"].extend(["malformed", "ok"])
    assert make_backend(max_retries=2).generate([_req("p")]) == ["echo: p [0 images]"]
    assert server.calls_for("p") == 2


@pytest.mark.parametrize("fault, what", [("malformed", "not valid JSON"), ("no-choices", "no choices"),
                                         ("null-content", "no text content"), ("html", "not JSON")])
def test_malformed_for_good_is_a_clear_error(server, make_backend, monkeypatch, fault, what):
    monkeypatch.setattr("captioner.backends.openai_api.MALFORMED_RETRY_DELAY", 0.01)
    server.faults["p"].extend([fault] * 5)
    ok, err = make_backend(max_retries=2).generate([_req("fine"), _req("p")])
    assert ok == "echo: fine [0 images]"
    assert isinstance(err, OpenAIRequestError) and err.kind == "malformed"
    assert "malformed answer" in str(err) and what in str(err) and "3 attempts" in str(err)
    assert server.calls_for("p") == 3


def test_401_is_not_retried_and_hides_the_key(server, make_backend, caplog):
    server.faults["p"].extend(["401"] * 5)
    with caplog.at_level(logging.DEBUG):
        backend = make_backend(max_retries=3)
        (err,) = backend.generate([_req("p")])
    assert server.calls_for("p") == 1
    assert isinstance(err, OpenAIRequestError) and err.status_code == 401
    assert "HTTP 401" in str(err) and "Incorrect API key provided" in str(err) and "OPENAI_API_KEY" in str(err)
    assert err.__cause__ is None and err.__context__ is None  # the SDK's error holds the request headers
    for text in (str(err), repr(err), repr(err.args), caplog.text, repr(backend), str(vars(backend))):
        assert KEY not in text and KEY[3:12] not in text


def test_key_from_env_var(server, monkeypatch):
    monkeypatch.setenv("MY_VLLM_KEY", "sk-from-env-var-42")
    with OpenAIBackend("qwen-vl", base_url=server.url, api_key_env="MY_VLLM_KEY") as backend:
        assert backend.generate([_req("p")]) == ["echo: p [0 images]"]
    assert server.calls[0]["headers"]["authorization"] == "Bearer sk-from-env-var-42"

    monkeypatch.delenv("MY_MISSING_KEY", raising=False)
    with pytest.raises(ValueError, match="MY_MISSING_KEY"):
        OpenAIBackend("qwen-vl", base_url=server.url, api_key_env="MY_MISSING_KEY")


@pytest.mark.parametrize("kw, name", [({"concurrency": 0}, "concurrency"), ({"max_retries": -1}, "max_retries"),
                                      ({"timeout": 0}, "timeout"), ({"image_format": "gif"}, "image_format"),
                                      ({"temperature": 3.0}, "temperature"), ({"model": ""}, "model"),
                                      ({"base_url": "localhost:8000"}, "base_url"), ({"max_tokens": 0}, "max_tokens")])
def test_bad_arguments_name_themselves(monkeypatch, kw, name):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    kw = {"model": "m"} | kw
    with pytest.raises(ValueError, match=name) as info:
        OpenAIBackend(**kw)
    assert repr(kw[name]) in str(info.value)


def test_finish_reason_length_is_flagged(server, make_backend, caplog):
    from captioner.backends.base import Answer, is_truncated

    server.faults["cut"].append("length")
    with caplog.at_level(logging.WARNING, logger="captioner.backends.openai"):
        whole, cut = make_backend(max_tokens=5).generate([_req("whole"), _req("cut")])
    assert whole == "echo: whole [0 images]" and not is_truncated(whole)
    assert isinstance(cut, Answer) and cut.truncated and cut == "echo: cut [0 images]"  # kept, flagged
    assert "cut at max_tokens=5" in caplog.text


def test_max_pixels_bounds_the_uploaded_images(server, make_backend):
    img = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # 1200 pixels
    make_backend(max_pixels=300).generate([user_request([img, "what is this"])])
    make_backend().generate([user_request([img, "what is this"])])
    sizes = [Image.open(io.BytesIO(base64.b64decode(c["body"]["messages"][-1]["content"][0]["image_url"]["url"]
                                                    .split(",", 1)[1]))).size for c in server.calls]
    assert sizes == [(20, 15), (40, 30)]  # aspect kept; without max_pixels as given


def test_truncated_answers_are_flagged_in_the_records_and_counted(server, make_backend, tmp_path):
    """DiffSW over the openai backend: every step's answer comes back cut ("length") -> meta.truncated."""
    from captioner.config import load_captioner_config
    from captioner.prompting import fmt_t
    from captioner.run import run_captioner, tasks_from_manifest
    from synthworld.dataset import write_synth_dataset

    manifest = write_synth_dataset(tmp_path / "syn", 2, seed=3, size=32, fps=4, seconds=2, progress=False).manifest
    cfg = load_captioner_config(None, ["backend.kind=openai", "backend.model=qwen-vl", "keyframes.interval=1.0",
                                       "keyframes.threshold=1.0"])
    out = tmp_path / "captions.jsonl"
    server.default = "length"
    s = run_captioner(cfg, tasks_from_manifest(manifest, out)[:1], out, backend=make_backend(), progress=False)
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["status"] == "ok" and rec["captions"]["dense"].startswith("echo: ")  # kept, not an error
    times = [k["t"] for k in rec["keyframes"]]
    assert len(times) == 3 and rec["meta"]["truncated"] == ["detail@0.0", *[f"diff@{fmt_t(t)}" for t in times[1:]],
                                                             "summary", "short"]
    assert (s.ok, s.truncated) == (1, 1) and "1 with answers cut at max_new_tokens" in str(s)
