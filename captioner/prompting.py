"""Prompts as editable files, and the chat requests of each captioning step.

Each task's prompt lives in ``captioner/prompts/<task>.txt`` (or a folder the config names), in the
paper's four-part structure — role, skills, constraints (the system turn) and structured input
(the user turn)::

    version: diff-v1
    --- system
    ## Role ...
    --- user
    ## Structured input ... {t_prev:.1f} ... {previous}

Placeholders are ``str.format`` fields. Every record notes the versions of the prompts that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from captioner.backends.base import ChatRequest, user_request

PROMPT_DIR = Path(__file__).parent / "prompts"
PROMPT_TASKS = ("detail", "diff", "summary", "short", "fast", "clip_summary", "recaption", "claims", "verify")


@dataclass(frozen=True)
class Prompt:
    task: str
    version: str
    system: str
    user: str

    def render(self, **values) -> tuple[str, str]:
        try:
            return self.system.format(**values), self.user.format(**values)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"prompt {self.task} ({self.version}): cannot fill placeholder {e}") from None


def parse_prompt(text: str, task: str, where: str) -> Prompt:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("version:"):
        raise ValueError(f"{where}: the first line must be 'version: <name>'")
    version = lines[0].split(":", 1)[1].strip()
    sections: dict[str, list[str]] = {}
    current = None
    for line in lines[1:]:
        if line.startswith("--- "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    missing = {"system", "user"} - set(sections)
    if missing:
        raise ValueError(f"{where}: missing section(s) {sorted(missing)} (use '--- system' and '--- user')")
    return Prompt(task, version, "\n".join(sections["system"]).strip(), "\n".join(sections["user"]).strip())


class PromptSet:
    """The prompts of every task, from ``folder`` (default: the packaged ones)."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = resolve_prompts(folder)
        self.prompts: dict[str, Prompt] = {}
        for task in PROMPT_TASKS:
            path = self.folder / f"{task}.txt"
            if not path.is_file():
                path = PROMPT_DIR / f"{task}.txt"  # a custom folder may override only some tasks
            self.prompts[task] = parse_prompt(path.read_text(), task, str(path))

    def __getitem__(self, task: str) -> Prompt:
        return self.prompts[task]

    def version(self, tasks: tuple[str, ...]) -> str:
        return ",".join(self.prompts[t].version for t in tasks)

    # --------------------------------------------------------------------- requests
    def _request(self, task: str, images: list[np.ndarray], values: dict, fields: dict) -> ChatRequest:
        system, user = self.prompts[task].render(**values)
        return user_request([*images, user], system=system, task=task, **fields)

    def detail(self, image: np.ndarray, t: float) -> ChatRequest:
        return self._request("detail", [image], {"t": fmt_t(t)}, {"t": t})

    def diff(self, prev: np.ndarray, cur: np.ndarray, t_prev: float, t: float, previous: str) -> ChatRequest:
        v = {"t_prev": t_prev, "t": t, "previous": previous}
        return self._request("diff", [prev, cur], {**v, "t_prev": fmt_t(t_prev), "t": fmt_t(t)}, v)

    def summary(self, keyframes: list[dict], duration: float) -> ChatRequest:
        return self._request("summary", [], {"timeline": timeline_text(keyframes), "duration": duration},
                             {"keyframes": keyframes, "duration": duration})

    def short(self, keyframes: list[dict], duration: float) -> ChatRequest:
        return self._request("short", [], {"timeline": timeline_text(keyframes), "duration": duration},
                             {"keyframes": keyframes, "duration": duration})

    def short_from_grid(self, grid: np.ndarray, layout: dict, times: list[float], duration: float,
                        dense: str) -> ChatRequest:
        """Fast mode's short caption: the grid again, with the dense caption as the description."""
        return self._request("short", [grid], {"timeline": f"[whole video] {dense}", "duration": duration},
                             {**layout, "times": times, "duration": duration})

    def fast(self, grid: np.ndarray, layout: dict, times: list[float], duration: float) -> ChatRequest:
        v = {"n": len(times), "rows": layout["rows"], "cols": layout["cols"], "duration": duration,
             "times": ", ".join(f"{fmt_t(t)}s" for t in times)}
        return self._request("fast", [grid], v, {**layout, "times": times, "duration": duration})

    def clip_summary(self, keyframes: list[dict], duration: float, start: float, end: float) -> ChatRequest:
        v = {"timeline": timeline_text(keyframes), "duration": duration, "start": fmt_t(start), "end": fmt_t(end)}
        return self._request("clip_summary", [], v, {"keyframes": keyframes, "duration": duration,
                                                      "start": start, "end": end})

    def recaption(self, prompt: str, duration: float) -> ChatRequest:
        v = {"prompt": prompt, "duration": duration}
        return self._request("recaption", [], v, v)

    def claims(self, prompt: str) -> ChatRequest:
        """A judge's text-only call: a video prompt → its atomic claims, one JSON object per line."""
        return self._request("claims", [], {"prompt": prompt}, {"prompt": prompt})

    def verify(self, caption: str, claim: str, tolerance: float) -> ChatRequest:
        """A judge's text-only call: is ``claim`` true of the video ``caption`` describes? (yes / no)"""
        v = {"caption": caption, "claim": claim, "tolerance": tolerance}
        return self._request("verify", [], v, v)


def resolve_prompts(folder: str | Path | None) -> Path:
    """A prompt folder: ``folder`` itself, or — a bare name such as ``compact`` — the packaged set
    ``captioner/prompts/<name>/``; None: the packaged default prompts."""
    if not folder:
        return PROMPT_DIR
    path = Path(folder)
    if path.is_dir():
        return path
    if path.parent == Path(".") and (PROMPT_DIR / path.name).is_dir():
        return PROMPT_DIR / path.name
    sets = sorted(p.name for p in PROMPT_DIR.iterdir() if p.is_dir())
    raise ValueError(f"run.prompts={str(folder)!r}: no such folder, nor a packaged prompt set ({', '.join(sets)})")


def fmt_t(t: float) -> str:
    """Seconds as prompts and captions write them: ``1.5``, ``0.0``, ``1.25`` (two decimals when needed)."""
    s = f"{float(t):.2f}"
    return s[:-1] if s.endswith("0") else s


def timeline_text(keyframes: list[dict]) -> str:
    """``[0.0s] caption`` lines: the structured input of the summary calls."""
    return "\n".join(f"[{fmt_t(k['t'])}s] {k['caption']}" for k in keyframes)
