"""``openai``: any OpenAI-compatible chat-completions endpoint (GPT-4o, ``vllm serve``, SGLang).

What the official ``openai`` SDK already does, and we configure rather than rewrite
(``openai._base_client.SyncAPIClient.request`` / ``_should_retry``):

- retries, up to ``max_retries`` times, on HTTP 408, 409, 429 and every 5xx, on timeouts and on
  connection errors; it does *not* retry 400/401/403/404/422;
- waits ``0.5 s · 2^n`` (capped at 8 s) minus up to 25 % jitter between tries, or what the server asks
  for in ``Retry-After`` / ``retry-after-ms`` (up to 120 s; a longer ``Retry-After`` is not retried);
- applies ``timeout`` to each try (connect, read, write), not to the whole call.

What we add:

1. Messages: numpy images become base64 ``data:image/png;base64,...`` ``image_url`` parts; system and
   assistant turns are sent as plain strings.
2. Bounded concurrency: a thread pool of ``concurrency`` workers over the batch; answers in request order.
3. Malformed answers (a body that is not JSON, no ``choices``, no text content) are retried up to
   ``max_retries`` times with the SDK's backoff; the SDK does not retry them, since HTTP said 200.
4. One failed request does not fail the batch: its slot holds an :class:`OpenAIRequestError` saying what
   went wrong (HTTP status and the server's message, timeout, connection, malformed answer).
5. A warning (logger ``captioner.backends.openai``) for every failure the SDK is about to retry; the
   SDK itself only logs them at info level and without the cause.
6. The API key comes from an environment variable and never appears in reprs, logs or errors
   (errors are built fresh, not chained to the SDK's exception, whose request holds the header).
7. An answer the server cut at ``max_tokens`` (``finish_reason == "length"``) comes back as an
   :class:`~captioner.backends.base.Answer` with ``truncated=True`` (and a warning).
8. ``max_pixels``: images are scaled down (aspect kept) to at most that many pixels before encoding,
   so the upload (and what the server sees) is bounded.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from captioner.backends.base import Answer, BackendError, ChatRequest
from clipio.images import fit_within

try:
    import openai
except ImportError as e:  # the [api] extra
    raise ImportError("the openai backend needs the `openai` package: pip install -e '.[api]'") from e

log = logging.getLogger("captioner.backends.openai")

IMAGE_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
JPEG_QUALITY = 90
# Backoff between retries of malformed answers: the SDK's own schedule (openai/_constants.py).
MALFORMED_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# Status codes the SDK retries (besides 5xx), see ``_should_retry``.
SDK_RETRIED_STATUS = (408, 409, 429)


class OpenAIRequestError(BackendError):
    """One request failed for good.

    ``kind`` is ``"status"`` (the server answered an HTTP error; ``status_code`` is set), ``"timeout"``,
    ``"connection"``, ``"malformed"`` (HTTP 200 with an unusable body) or ``"sdk"`` (another SDK error).
    """

    def __init__(self, message: str, *, kind: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code


class _Malformed(Exception):
    """An HTTP 200 answer we cannot use (internal; becomes an OpenAIRequestError after the retries)."""


class _Secret:
    """Holds the API key so that printing the holder never shows it."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _http_lib() -> Any:
    """The HTTP library the installed SDK is built on (``httpx`` in openai 1.x/2.x, ``httpx2`` in 3.x)."""
    base = next(c for c in openai.DefaultHttpxClient.__mro__
                if c.__name__ == "Client" and not c.__module__.startswith("openai"))
    return importlib.import_module(base.__module__.partition(".")[0])


_HTTP = _http_lib()


class _RetryLoggingTransport(_HTTP.BaseTransport):
    """The default HTTP transport, plus a warning for each failure the SDK retries (never the headers)."""

    def __init__(self, inner: Any, max_retries: int) -> None:
        self.inner = inner
        self.max_retries = max_retries

    def _where(self, request: Any) -> str:
        # the SDK numbers its tries in this header; it is absent in old SDK versions
        n = request.headers.get("x-stainless-retry-count")
        if n is None or not n.isdigit():
            return f"{request.url.host}{request.url.path}"
        attempt, total = int(n) + 1, self.max_retries + 1
        action = "the SDK retries" if attempt < total else "giving up"
        return f"{request.url.host}{request.url.path} (attempt {attempt} of {total}, {action})"

    def handle_request(self, request: Any) -> Any:
        try:
            response = self.inner.handle_request(request)
        except _HTTP.TransportError as e:  # timeouts, refused or dropped connections
            log.warning("openai backend: %s on %s", type(e).__name__, self._where(request))
            raise
        if response.status_code in SDK_RETRIED_STATUS or response.status_code >= 500:
            retry_after = response.headers.get("retry-after")
            log.warning("openai backend: HTTP %d%s from %s", response.status_code,
                        f" (Retry-After: {retry_after})" if retry_after else "", self._where(request))
        return response

    def close(self) -> None:
        self.inner.close()


class OpenAIBackend:
    """Chat completions against an OpenAI-compatible server; see the module docstring.

    The API key is read from the environment variable ``api_key_env`` (never from a config file). It
    must be set and non-empty; a local vLLM/SGLang server started without ``--api-key`` accepts any
    placeholder, e.g. ``export OPENAI_API_KEY=EMPTY``. ``base_url=None`` means the SDK's default
    (``$OPENAI_BASE_URL``, else api.openai.com); a vLLM server is ``http://host:8000/v1``.
    """

    name = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, max_retries: int = 5, timeout: float = 60.0, max_tokens: int = 512,
                 temperature: float = 0.0, image_format: str = "png", max_pixels: int | None = None) -> None:
        # 1. Check arguments
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty model name, got {model!r}")
        if base_url is not None and not (isinstance(base_url, str) and re.match(r"https?://", base_url)):
            raise ValueError(f"base_url must be None or an http(s):// URL such as http://localhost:8000/v1, "
                             f"got {base_url!r}")
        if not isinstance(api_key_env, str) or not api_key_env:
            raise ValueError(f"api_key_env must name an environment variable, got {api_key_env!r}")
        for arg, value, low in [("concurrency", concurrency, 1), ("max_retries", max_retries, 0),
                                ("max_tokens", max_tokens, 1)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be a number in [0, 2], got {temperature!r}")
        if image_format not in IMAGE_MIME:
            raise ValueError(f"image_format must be one of {tuple(IMAGE_MIME)}, got {image_format!r}")
        fit_within(1, 1, max_pixels=max_pixels)  # checks it

        # 2. The key, from the environment only
        key = os.environ.get(api_key_env)
        if not key:
            raise ValueError(
                f"api_key_env: the environment variable {api_key_env!r} is not set or empty; the openai backend "
                f"reads its API key from it. Export it (export {api_key_env}=sk-...); for a local vLLM/SGLang "
                f"server without authentication any placeholder works (export {api_key_env}=EMPTY).")

        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, float(timeout)
        self.max_tokens, self.temperature, self.image_format = max_tokens, float(temperature), image_format
        self.max_pixels = max_pixels
        self._key = _Secret(key)

        # 3. One SDK client shared by the worker threads (it is thread-safe); it does the HTTP retries
        transport = _RetryLoggingTransport(
            _HTTP.HTTPTransport(limits=_HTTP.Limits(max_connections=concurrency,
                                                    max_keepalive_connections=concurrency)), max_retries)
        http_client = openai.DefaultHttpxClient(transport=transport, timeout=self.timeout)
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=self.timeout,
                                     max_retries=max_retries, http_client=http_client)

    def __repr__(self) -> str:
        return (f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency}, "
                f"max_retries={self.max_retries}, timeout={self.timeout})")

    def generate(self, requests: list[ChatRequest]) -> list[str | Exception]:
        """One answer per request, in order; a request that failed for good is an OpenAIRequestError."""
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                thread_name_prefix="openai-backend") as pool:
            return list(pool.map(self._generate_one, requests))

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ------------------------------------------------------------------------------

    def _generate_one(self, request: ChatRequest) -> str | Exception:
        messages = to_openai_messages(request, self.image_format, self.max_pixels)
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            # 1. Call; the SDK retries 408/409/429/5xx, timeouts and connection errors itself
            try:
                completion = self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=self.max_tokens,
                    temperature=self.temperature)
                text, finish_reason = _answer_text(completion)
            except openai.APIStatusError as e:
                return self._status_error(e)
            except openai.APITimeoutError:
                return OpenAIRequestError(
                    f"openai backend: no answer within timeout={self.timeout}s from {self._where()} "
                    f"on any of {attempts} attempts", kind="timeout")
            except openai.APIConnectionError as e:
                cause = type(e.__cause__).__name__ if e.__cause__ else "connection error"
                return OpenAIRequestError(
                    f"openai backend: could not reach {self._where()} ({cause}) on any of {attempts} attempts",
                    kind="connection")
            except (_Malformed, json.JSONDecodeError, UnicodeDecodeError, openai.APIResponseValidationError) as e:
                problem = str(e) if isinstance(e, _Malformed) else f"the body is not valid JSON ({e})"
                problem = self._redact(problem)
                # 2. Malformed answer: the SDK saw HTTP 200 and will not retry, so we do
                if attempt + 1 < attempts:
                    log.warning("openai backend: malformed answer from %s: %s (attempt %d of %d, retrying)",
                                self._where(), problem, attempt + 1, attempts)
                    time.sleep(_backoff(attempt))
                    continue
                return OpenAIRequestError(
                    f"openai backend: malformed answer from {self._where()} on all {attempts} attempts; "
                    f"last: {problem}", kind="malformed")
            except openai.OpenAIError as e:
                return OpenAIRequestError(f"openai backend: {type(e).__name__}: {self._redact(str(e))}",
                                          kind="sdk")
            # 3. Done
            if finish_reason == "length":
                log.warning("openai backend: answer cut at max_tokens=%d (model %s, task %s)", self.max_tokens,
                            self.model, request.task)
            return Answer(text, truncated=finish_reason == "length")
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def _status_error(self, e: openai.APIStatusError) -> OpenAIRequestError:
        """HTTP error after the SDK's retries (or none, for 4xx): status, server message, a hint."""
        code = e.status_code
        body = e.body
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            server = body["message"]
        elif isinstance(body, str) and body:
            server = body[:300]
        else:
            server = e.message
        retried = code in SDK_RETRIED_STATUS or code >= 500
        tries = f"gave up after {self.max_retries + 1} attempts" if retried else "not retried"
        hint = {401: f"; check the key in ${self.api_key_env}",
                403: f"; check the key in ${self.api_key_env} and its permissions",
                404: f"; check model={self.model!r} and base_url={self.base_url!r}"}.get(code, "")
        return OpenAIRequestError(
            f"openai backend: HTTP {code} from {self._where()} ({tries}): {self._redact(server)}{hint}",
            kind="status", status_code=code)

    def _where(self) -> str:
        return str(self._client.base_url).rstrip("/")

    def _redact(self, text: str) -> str:
        """``text`` without the API key (nor OpenAI's half-masked echo of it, ``sk-ab***wxyz``)."""
        if len(self._key.value) >= 4:
            text = text.replace(self._key.value, "***")
        return re.sub(r"sk-[A-Za-z0-9_*\-]{3,}", "sk-***", text)


def to_openai_messages(request: ChatRequest, image_format: str = "png",
                       max_pixels: int | None = None) -> list[dict[str, Any]]:
    """``ChatRequest.messages`` as chat-completions messages: images as base64 ``data:`` URL parts
    (scaled down to at most ``max_pixels`` pixels when it is set)."""
    out = []
    for m in request.messages:
        content = m.get("content", "")
        if m["role"] != "user":  # system and assistant turns: plain strings
            if not isinstance(content, str):
                if any(p.get("type") == "image" for p in content):
                    raise ValueError(f"ChatRequest: a {m['role']} message has an image; only user turns can")
                content = "\n".join(p["text"] for p in content)
            out.append({"role": m["role"], "content": content})
            continue
        if isinstance(content, str):
            out.append({"role": "user", "content": content})
            continue
        parts = [{"type": "text", "text": p["text"]} if p["type"] == "text"
                 else {"type": "image_url",
                       "image_url": {"url": image_data_url(p["image"], image_format, max_pixels)}}
                 for p in content]
        out.append({"role": "user", "content": parts})
    return out


def image_data_url(image: np.ndarray, image_format: str = "png", max_pixels: int | None = None) -> str:
    """An HxWx3 uint8 RGB array as ``data:image/<format>;base64,...`` (at most ``max_pixels`` pixels)."""
    buf = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image))  # (H, W, 3) uint8 -> RGB
    size = fit_within(pil.width, pil.height, max_pixels=max_pixels)
    if size != pil.size:
        pil = pil.resize(size, Image.Resampling.BICUBIC)
    if image_format == "jpeg":
        pil.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        pil.save(buf, format="PNG")
    return f"data:{IMAGE_MIME[image_format]};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _answer_text(completion: Any) -> tuple[str, str | None]:
    """The first choice's text and finish reason; :class:`_Malformed` says what is missing."""
    if isinstance(completion, str):  # the SDK returns the body as text when it is not JSON
        raise _Malformed(f"the body is not JSON: {completion[:120]!r}")
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise _Malformed(f"the response has no choices (choices={choices!r})")
    content = getattr(getattr(choices[0], "message", None), "content", None)
    if not isinstance(content, str) or not content.strip():
        raise _Malformed(f"the first choice has no text content (content={content!r})")
    return content, getattr(choices[0], "finish_reason", None)


def _backoff(attempt: int) -> float:
    """Seconds before retry ``attempt + 1`` of a malformed answer: the SDK's exponential backoff."""
    return min(MALFORMED_RETRY_DELAY * 2.0 ** attempt, MAX_RETRY_DELAY) * (1 - 0.25 * random.random())
