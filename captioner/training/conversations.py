"""Training conversations of ShareCaptioner-Video's four modes, from a manifest record's annotations.

Every conversation is built by the *same* request builders inference uses (:class:`PromptSet`,
:func:`key_frame_grid`, :func:`extract_job`), so a model trained on them is asked at inference exactly
what it was taught to answer. The answer is the annotation:

================  =====================================================  ===========================
mode              request (what inference sends)                         answer
================  =====================================================  ===========================
``fast``          the key-frame grid of ``captioner run --mode fast``    ``captions.dense``
                  (its short-caption request too)                        (``captions.short``)
``sliding``       DiffSW step k: key-frames k-1 and k, both times, the   ``keyframes[k].caption``
                  previous caption (step 0: the detail request)
``summary``       DiffSW's summary of the timestamped list (text only)   ``captions.dense``
                  (and its short-caption request)                        (``captions.short``)
``recaption``     ``t2v generate --recaption``: the short caption        ``captions.dense``
================  =====================================================  ===========================

Tokenised for a causal LM as inference sees it: the prompt is the processor's chat template with the
generation prompt (images expanded to their placeholder tokens by the processor), the answer's tokens
and an end-of-sequence token follow, and only those carry a loss (labels ``-100`` elsewhere).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captioner.backends.base import ChatRequest
from captioner.backends.hf import chat_prompt
from captioner.diffsw import ClipTask, extract_job, key_frame_grid
from captioner.prompting import PromptSet

MODES = ("fast", "sliding", "summary", "recaption")

# Mirror images of captions: a caption's spatial words swapped along an axis. A horizontally flipped clip is
# described by its caption mirrored "horizontal" (training's `data.hflip`, as MDETR and GLIP flip images and swap
# "left"/"right" in their texts); the mirrored caption of the same image is a hard negative (NegCLIP, Yuksekgonul
# et al. 2023: vision pretraining's `hard_negatives`)
_MIRRORS = {"horizontal": {"left": "right", "right": "left", "leftward": "rightward", "rightward": "leftward",
                           "leftwards": "rightwards", "rightwards": "leftwards"},
            "vertical": {"top": "bottom", "bottom": "top", "upper": "lower", "lower": "upper", "up": "down", "down": "up",
                         "upward": "downward", "downward": "upward", "upwards": "downwards",
                         "downwards": "upwards", "above": "below", "below": "above"}}
# spatial words that say no place here: "pops up", "Right from the start" (the oracle's "immediately")
_NOT_A_PLACE = re.compile(r"\b(?:pops|shows|turns|comes) (up)\b|\b(right) (?:from|away|after)\b", re.IGNORECASE)


def mirrored(text: str, axis: str) -> str:
    """``text`` with its spatial words swapped along ``axis`` ("horizontal" or "vertical"); words that name no
    place ("pops up", "right from the start") are kept. A text without such words comes back unchanged."""
    table = _MIRRORS[axis]
    keep = {m.start(g) for m in _NOT_A_PLACE.finditer(text) for g in (1, 2) if m.group(g)}

    def swap(m: re.Match) -> str:
        word = m.group(0)
        if m.start() in keep or word.lower() not in table:
            return word
        out = table[word.lower()]
        return out.capitalize() if word[0].isupper() else out

    return re.sub(r"[A-Za-z]+", swap, text)


IGNORE_INDEX = -100


@dataclass
class Conversation:
    """A request and the answer the model should give to it."""

    request: ChatRequest
    answer: str
    mode: str
    record_id: str


def has_mode(record: dict[str, Any], mode: str) -> bool:
    """Whether a record's annotations can teach ``mode`` (sliding and summary need key-frame captions)."""
    if record.get("status") != "ok" or not (record.get("captions") or {}).get("dense"):
        return False
    if mode in ("sliding", "summary"):
        kfs = record.get("keyframes") or []
        return bool(kfs) and all(k.get("caption") and k.get("t") is not None for k in kfs)
    if mode == "recaption":
        return bool(record["captions"].get("short"))
    return mode == "fast"


def count_items(record: dict[str, Any], mode: str) -> int:
    """How many conversations ``mode`` makes of a record (0 when it cannot teach it)."""
    if not has_mode(record, mode):
        return 0
    short = 1 if record["captions"].get("short") else 0
    return {"fast": 1 + short, "sliding": len(record.get("keyframes") or []), "summary": 1 + short,
            "recaption": 1}[mode]


def _duration(record: dict[str, Any]) -> float:
    if record.get("end") is not None:
        return float(record["end"]) - float(record.get("start") or 0.0)
    return max(float(k["t"]) for k in record["keyframes"])


def mirror_record(record: dict[str, Any]) -> dict[str, Any]:
    """The annotations of ``record``'s clip flipped left to right: every caption mirrored "horizontal"."""
    caps = {k: mirrored(v, "horizontal") if isinstance(v, str) else v for k, v in (record.get("captions") or {}).items()}
    kfs = [{**k, "caption": mirrored(k["caption"], "horizontal")} if k.get("caption") else k
           for k in record.get("keyframes") or []]
    return {**record, "captions": caps, "keyframes": kfs}


def conversation(record: dict[str, Any], mode: str, index: int, prompts: PromptSet, frames: FrameSource,
                 mirror: bool = False) -> Conversation:
    """Conversation ``index`` (``0 <= index < count_items(record, mode)``) of ``mode`` for ``record``;
    ``mirror``: of the clip's mirror image (key-frames flipped left to right, captions mirrored to match)."""
    rid = record.get("id")
    n = count_items(record, mode)
    if not 0 <= index < n:
        raise IndexError(f"record {rid!r}: {mode} conversation {index} of {n}")
    if mirror:
        record = mirror_record(record)
    caps = record["captions"]
    duration = _duration(record)
    if mode == "fast":
        grid, layout, times = frames.grid(record, flip=mirror)
        if index == 0:
            return Conversation(prompts.fast(grid, layout, times, duration), caps["dense"], mode, rid)
        return Conversation(prompts.short_from_grid(grid, layout, times, duration, caps["dense"]),
                            caps["short"], mode, rid)
    if mode == "sliding":
        kfs = record["keyframes"]
        if index == 0:
            (img,) = frames.at(record, [kfs[0]["t"]], flip=mirror)
            return Conversation(prompts.detail(img, kfs[0]["t"]), kfs[0]["caption"], mode, rid)
        prev, cur = frames.at(record, [kfs[index - 1]["t"], kfs[index]["t"]], flip=mirror)
        req = prompts.diff(prev, cur, kfs[index - 1]["t"], kfs[index]["t"], kfs[index - 1]["caption"])
        return Conversation(req, kfs[index]["caption"], mode, rid)
    if mode == "summary":
        timeline = [{"t": k["t"], "caption": k["caption"]} for k in record["keyframes"]]
        if index == 0:
            return Conversation(prompts.summary(timeline, duration), caps["dense"], mode, rid)
        return Conversation(prompts.short(timeline, duration), caps["short"], mode, rid)
    return Conversation(prompts.recaption(caps["short"], duration), caps["dense"], mode, rid)


class FrameSource:
    """Decodes the images a record's conversations need, as inference would decode them.

    ``at`` gives frames at a record's key-frame times (seconds from its start); ``grid`` runs fast mode's
    own key-frame extraction (the captioner config's ``keyframes`` settings) and builds its grid. Records
    name their video by an absolute path (:func:`captioner.training.train.load_records` resolves them). The
    last ``cache_clips`` clips' images are kept (a small world fits in memory; a corpus streams).
    """

    def __init__(self, ccfg, cache_clips: int = 0):
        from captioner.embed import build_embedder

        self.ccfg = ccfg
        self.cache_clips = cache_clips
        kc = ccfg.keyframes
        self.embedder = build_embedder(kc.embedder, kc.clip_path, device=kc.device)
        self._cache: dict[tuple, Any] = {}

    def _task(self, record: dict[str, Any]) -> ClipTask:
        p = Path(record["video"])
        if not p.is_absolute():
            raise ValueError(f"record {record.get('id')!r}: video {p} is relative; read records with load_records")
        return ClipTask(record["id"], p, record["video"], float(record.get("start") or 0.0), record.get("end"))

    def _cached(self, key: tuple, make):
        if key in self._cache:
            return self._cache[key]
        value = make()
        if self.cache_clips > 0:
            if len(self._cache) >= self.cache_clips:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = value
        return value

    def at(self, record: dict[str, Any], times: list[float], flip: bool = False) -> list[np.ndarray]:
        """The frames at ``times``; ``flip``: mirrored left to right."""
        all_times = [float(k["t"]) for k in record["keyframes"]]
        frames = self._cached(("kf", record["id"]), lambda: self._decode(record, all_times))
        out = [frames[all_times.index(float(t))] for t in times]
        return [np.ascontiguousarray(f[:, ::-1]) for f in out] if flip else out

    def _decode(self, record: dict[str, Any], times: list[float]) -> np.ndarray:
        from clipio.video import open_video

        task, kc, rc = self._task(record), self.ccfg.keyframes, self.ccfg.run
        with open_video(task.path, backend=rc.video_backend, timeout=rc.decode_timeout, max_side=kc.max_side,
                        max_pixels=self.ccfg.backend.max_pixels) as reader:
            return reader.frames_at([task.start + t for t in times])

    def grid(self, record: dict[str, Any], flip: bool = False) -> tuple[np.ndarray, dict, list[float]]:
        """Fast mode's key-frame grid; ``flip``: of the key-frames mirrored left to right (the time labels
        read as before)."""
        def make():
            quiet = logging.getLogger("captioner.keyframes")
            level = quiet.level
            quiet.setLevel(max(level, logging.WARNING))  # one INFO line per clip per epoch is noise here
            try:
                job = extract_job(self._task(record), self.ccfg, self.embedder)
            finally:
                quiet.setLevel(level)
            return job.images, job.times
        images, times = self._cached(("grid", record["id"]), make)
        if flip:
            images = [np.ascontiguousarray(im[:, ::-1]) for im in images]
        g, layout = key_frame_grid(images, times, self.ccfg.run.grid_cols, self.ccfg.run.grid_cell)
        return g, layout, times


# ------------------------------------------------------------------------------------------ tokenising
def answer_eos_id(tokenizer, model_config=None) -> int:
    """The token that ends an answer: the generation config's (first) EOS, else the tokenizer's."""
    eos = getattr(model_config, "eos_token_id", None) if model_config is not None else None
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    eos = tokenizer.eos_token_id if eos is None else eos
    if eos is None:
        raise ValueError(f"{type(tokenizer).__name__} has no eos_token: a trained captioner could never stop")
    return int(eos)


def tokenize(conv: Conversation, processor, eos_id: int, max_length: int | None = None,
             prepare_image=None, emphasis: tuple[re.Pattern, float] | None = None) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``labels`` (1-D) and the processor's image tensors (if any).

    The prompt is rendered and tokenised exactly as :meth:`HFBackend.encode` does it; the answer's tokens
    and ``eos_id`` follow and carry the loss. ``max_length`` cuts the answer, never the prompt (a prompt
    longer than it is an error: it would teach answers to requests the model cannot see whole).
    ``emphasis`` (a pattern, a weight): ``loss_weights`` too, the weight on every answer token that overlaps
    a match of the pattern in the answer, 1 on the others (``data.emphasis``).
    """
    tok = processor.tokenizer
    prompt, add_special = chat_prompt(processor, conv.request)
    images = [prepare_image(im) if prepare_image else im for im in conv.request.images]
    enc = processor(text=[prompt], images=[images] if images else None, add_special_tokens=add_special,
                    truncation=False, return_tensors="pt")  # never cut, whatever the saved tokenizer says
    prompt_ids = enc["input_ids"][0]
    answer = conv.answer.strip()
    answer_enc = tok(answer, add_special_tokens=False, return_offsets_mapping=emphasis is not None)
    answer_ids = torch.tensor(answer_enc["input_ids"] + [eos_id], dtype=prompt_ids.dtype)
    weights = None
    if emphasis is not None:
        pattern, weight = emphasis
        spans = [m.span() for m in pattern.finditer(answer)]
        weights = torch.tensor([weight if any(a < e and s < b for s, e in spans) else 1.0
                                for a, b in answer_enc["offset_mapping"]] + [1.0])
    if max_length is not None:
        room = max_length - len(prompt_ids)
        if room < 2:
            raise ValueError(f"record {conv.record_id!r}, {conv.mode} request: its prompt is {len(prompt_ids)} "
                             f"tokens, over data.max_length={max_length}; raise it")
        answer_ids = answer_ids[:room]
    ids = torch.cat([prompt_ids, answer_ids])
    labels = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids])
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    if weights is not None:
        out["loss_weights"] = torch.cat([torch.zeros(len(prompt_ids)), weights[:len(answer_ids)]])
    out.update({k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")})
    return out


def collate(examples: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; image tensors of all examples concatenated (each model's processors stack
    images along dim 0: LLaVA ``(images, 3, H, W)``, Qwen2-VL ``(patches, dim)`` with ``image_grid_thw``;
    Idefics3 ``(1, images, 3, H, W)`` with its pixel mask, zero-padded to the batch's most images)."""
    n = max(len(e["input_ids"]) for e in examples)

    def pad(key: str, value: int) -> torch.Tensor:
        return torch.stack([torch.nn.functional.pad(e[key], (0, n - len(e[key])), value=value) for e in examples])

    batch = {"input_ids": pad("input_ids", pad_id), "attention_mask": pad("attention_mask", 0),
             "labels": pad("labels", IGNORE_INDEX)}
    if "loss_weights" in examples[0]:
        batch["loss_weights"] = pad("loss_weights", 0)
    extra = {k for e in examples for k in e} - set(batch)
    for k in sorted(extra):
        parts = [e[k] for e in examples if k in e]
        if len({p.shape[1:] for p in parts}) > 1:  # Idefics3 (1, images, ...): pad to the most images with zeros,
            shape = [max(p.shape[i] for p in parts) for i in range(1, parts[0].dim())]  # as its processor does
            parts = [torch.nn.functional.pad(p, [x for i in reversed(range(1, p.dim()))
                                                 for x in (0, shape[i - 1] - p.shape[i])]) for p in parts]
        batch[k] = torch.cat(parts, dim=0)
    return batch


def weighted_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The next-token loss of ``batch``; with ``loss_weights`` (``tokenize(..., emphasis=...)``) the weighted
    mean over answer tokens (sum of weight x loss over the sum of weights, as ``cross_entropy(weight=...)``)."""
    if "loss_weights" not in batch:
        return model(**batch).loss
    w = batch["loss_weights"][:, 1:]
    logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "loss_weights")}).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
                                           reduction="none")
    w = w * (labels != IGNORE_INDEX)
    return (ce * w).sum() / w.sum().clamp(min=1e-8)


@torch.no_grad()
def most_likely(model, variants: list[dict[str, torch.Tensor]], pad_id: int) -> int:
    """Index of the variant (``tokenize`` outputs of one request with different answers) whose answer tokens
    ``model`` finds most likely, teacher-forced: the multiple-choice trials of the captioner benches."""
    b = collate(variants, pad_id)
    logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits[:, :-1]
    labels = b["labels"][:, 1:]
    keep = labels != -100
    ll = (torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0] * keep).sum(1)
    return int(ll.argmax())
