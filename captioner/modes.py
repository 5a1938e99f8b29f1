"""Captioning modes that reuse stored work or need no video: clip summary and prompt re-captioning.

- :func:`clip_summary` — the dense caption of a sub-span ``[start, end]`` of an already captioned
  clip, from its stored differential captions (no video decoding, one text-only call), as the
  paper does to caption arbitrary clips of a long video cheaply.
- :func:`recaption` — a short user prompt → a dense caption in the style the model was trained on
  (used by ``t2v generate --recaption``).
"""

from __future__ import annotations

import logging
from typing import Any

from captioner.backends.base import is_truncated
from captioner.prompting import PromptSet

log = logging.getLogger(__name__)


def _answers(backend, requests) -> list[str]:
    out = backend.generate(requests)
    for r, a in zip(requests, out):
        if isinstance(a, Exception):
            raise RuntimeError(f"{backend.name} backend failed on the {r.task} request: {a}") from a
        if is_truncated(a):
            log.warning("%s backend: the %s answer was cut at its token limit (backend.max_new_tokens); "
                        "it ends mid-caption", backend.name, r.task)
    return [str(a).strip() for a in out]


def clip_summary(record: dict[str, Any], start: float, end: float, backend, prompts: PromptSet | None = None) -> str:
    """Dense caption of ``[start, end]`` (seconds from the record's start, as its key-frame times are) from a
    record's key-frame captions. A record without ``end`` (an imported one) spans at least its last key-frame."""
    rid = record.get("id")
    if record.get("status") != "ok" or not record.get("keyframes"):
        raise ValueError(f"clip_summary: record {rid!r} has no stored key-frame captions")
    kfs = [k for k in record["keyframes"] if k.get("caption")]
    if not kfs:
        raise ValueError(f"clip_summary: record {rid!r} was captioned in fast mode "
                         "(no per-key-frame captions to summarise)")
    if any(k.get("t") is None for k in kfs):
        raise ValueError(f"clip_summary: record {rid!r} has key-frame captions without times (imported without "
                         "one timestamp per key-frame), so no sub-span of it can be told apart")
    if record.get("end") is not None:
        duration = float(record["end"]) - float(record.get("start") or 0.0)
    else:
        duration = max(float(end), max(float(k["t"]) for k in kfs))
    if not 0 <= start < end <= duration + 1e-6:
        raise ValueError(f"clip_summary: span [{start}, {end}] must satisfy 0 <= start < end <= {duration:.2f} "
                         f"(seconds from the start of record {rid!r})")
    used = [k for k in kfs if float(k["t"]) <= end + 1e-6]  # what happens after `end` is not needed
    p = prompts or PromptSet()
    return _answers(backend, [p.clip_summary(used, duration, start, end)])[0]


def recaption(prompts_in: list[str], backend, duration: float = 4.0, prompts: PromptSet | None = None) -> list[str]:
    """Short prompts → dense captions (one batch)."""
    bad = [i for i, s in enumerate(prompts_in) if not isinstance(s, str) or not s.strip()]
    if bad:
        raise ValueError(f"recaption: prompt(s) {bad} are empty")
    p = prompts or PromptSet()
    return _answers(backend, [p.recaption(s, duration) for s in prompts_in])
