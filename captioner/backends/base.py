"""The one interface every vision-language backend implements: a batch of chat requests in, texts out.

A :class:`ChatRequest` is an OpenAI-style conversation whose user content mixes text and images
(``numpy`` uint8 arrays, H×W×3 RGB). Backends turn it into what their model needs:

- ``hf``     — the model's own chat template via ``AutoProcessor.apply_chat_template`` (images as PIL);
- ``openai`` — ``chat.completions`` with images as base64 ``data:`` URLs;
- ``oracle`` — the synthworld detector on the images, answering in the oracle's caption style.

``task`` and ``fields`` repeat, in structured form, what the prompt text already says (which step
of DiffSW this is, the key-frame timestamps, the previous differential caption). Model backends
ignore them and read the text; the rule-based oracle cannot read prose, so it reads these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

TASKS = ("detail", "diff", "summary", "short", "fast", "clip_summary", "recaption", "claims", "verify", "chat")


@dataclass
class ChatRequest:
    """One conversation: ``messages`` as ``[{"role": ..., "content": str | [parts]}]``.

    A content part is ``{"type": "text", "text": str}`` or ``{"type": "image", "image": HxWx3 uint8}``.
    """

    messages: list[dict[str, Any]]
    task: str = "chat"
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"ChatRequest.task {self.task!r} is not one of {TASKS}")
        for m in self.messages:
            if m.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"ChatRequest message role {m.get('role')!r}: use system, user or assistant")
            for part in _parts(m):
                if part.get("type") == "image":
                    img = part.get("image")
                    if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3
                            and img.dtype == np.uint8):
                        raise ValueError(f"ChatRequest image must be an HxWx3 uint8 array, got "
                                         f"{type(img).__name__} {getattr(img, 'shape', '')}")
                elif part.get("type") != "text":
                    raise ValueError(f"ChatRequest content part type {part.get('type')!r}: use 'text' or 'image'")

    @property
    def images(self) -> list[np.ndarray]:
        """All images of the conversation, in order."""
        return [p["image"] for m in self.messages for p in _parts(m) if p.get("type") == "image"]

    @property
    def text(self) -> str:
        """All text of the conversation joined (for logs and text-only backends)."""
        return "\n".join(p["text"] for m in self.messages for p in _parts(m) if p.get("type") == "text")


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    c = message.get("content", "")
    return [{"type": "text", "text": c}] if isinstance(c, str) else list(c)


def user_request(parts: list[str | np.ndarray], system: str | None = None, task: str = "chat",
                 **fields: Any) -> ChatRequest:
    """A request with one user turn made of ``parts`` (strings become text, arrays become images)."""
    content = [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image", "image": p} for p in parts]
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return ChatRequest(messages, task=task, fields=fields)


class Answer(str):
    """A backend's text answer; ``truncated`` is True when generation stopped at the token limit
    (``max_new_tokens`` / ``max_tokens``) instead of ending the answer itself (EOS, ``finish_reason
    "stop"``). A ``str`` in every other respect, so callers that only want the text need not care.
    Note that ``str`` methods (``strip``...) return plain strings: read the flag first (:func:`is_truncated`)."""

    truncated: bool

    def __new__(cls, text: str, truncated: bool = False) -> Answer:
        obj = super().__new__(cls, text)
        obj.truncated = bool(truncated)
        return obj

    def __repr__(self) -> str:
        return f"Answer({str.__repr__(self)}, truncated={self.truncated})"


def is_truncated(answer: object) -> bool:
    """True for an :class:`Answer` cut at the token limit (a plain ``str`` is a complete answer)."""
    return bool(getattr(answer, "truncated", False))


class BackendError(RuntimeError):
    """A request that failed for good (after the backend's own retries); names the request and why."""


@runtime_checkable
class VLMBackend(Protocol):
    """``generate(requests) -> texts``: one answer per request, in order.

    An answer is a ``str``; a backend that knows it cut an answer at its token limit returns an
    :class:`Answer` with ``truncated=True`` (the captioner flags it in the record's ``meta.truncated``).
    Raise :class:`BackendError` for the batch, or return an ``Exception`` instance in place of a
    text to fail one request while the others succeed (the captioner turns it into an error
    record for that clip and goes on).
    """

    name: str

    def generate(self, requests: list[ChatRequest]) -> list[str | Exception]: ...
