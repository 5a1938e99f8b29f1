"""The ``hf`` backend: any ``AutoModelForImageTextToText`` + ``AutoProcessor`` with a chat template.

Each request is rendered with the model's *own* chat template (``processor.apply_chat_template``;
image parts become ``{"type": "image"}`` placeholders, the images go to the processor as PIL), then
requests are tokenised together with LEFT padding, so every prompt ends at the same position and
``generate`` appends the new tokens right after each one (right padding would put them after pad
tokens and change the answers). Only the new tokens are decoded.

Requests are grouped by whether they carry images (text-only prompts, e.g. the DiffSW summary, go in
their own batches: several processors cannot mix the two), sorted by prompt length inside a group
to waste little padding, and run ``batch_size`` at a time. When a batch raises, its requests are
retried one at a time so one bad request fails alone (an ``Exception`` in its slot).

Tested offline on a tiny random LLaVA and a tiny Idefics3 (SmolVLM's family: pixel-shuffle connector,
several images a sample padded with zero images) built by :mod:`captioner.backends.tiny_vlm`. Real checkpoints that
use the same code: Qwen2.5-VL / Qwen3-VL, LLaVA(-OneVision), InternVL, SmolVLM, Gemma 3, ... Note:
the Qwen2-VL-family processors need ``torchvision`` (their video processor imports it); install the
torchvision build that matches your torch on the GPU machines (``pip install torchvision``). Without
it ``AutoProcessor`` fails and this backend says so. Recommended there: ``device="cuda"``,
``dtype="bfloat16"``, ``attn_implementation="flash_attention_2"`` (or ``"sdpa"``).

Image size: ``max_pixels`` scales every image down (aspect kept, never up) before the processor sees
it, for any model; processors with their own pixel budget (the Qwen2-VL family's ``min_pixels`` /
``max_pixels``, which decide how many visual tokens an image costs) are loaded with the same bound.
Truncation: an answer that ran into ``max_new_tokens`` without an EOS comes back as an
:class:`~captioner.backends.base.Answer` with ``truncated=True``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

from captioner.backends.base import Answer, BackendError, ChatRequest
from captioner.checkpoints import locate_checkpoint
from clipio.images import fit_within

logger = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto",
}
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's placement strategies


class HFBackend:
    """A local transformers vision-language model behind the :class:`VLMBackend` interface."""

    name = "hf"

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32", max_new_tokens: int = 256,
                 batch_size: int = 8, do_sample: bool = False, attn_implementation: str | None = None,
                 trust_remote_code: bool = False, device_map: str | None = None, max_pixels: int | None = None,
                 min_pixels: int | None = None) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

        # 1. Check arguments: where the model is first (a missing checkpoint is the usual first error).
        path = locate_checkpoint(path, "backend.path")
        if dtype not in DTYPES:
            raise ValueError(f"HFBackend dtype={dtype!r} is not supported: use one of {sorted(DTYPES)}")
        if device_map is None:
            device_map = _check_device(device)
        elif device_map not in DEVICE_MAPS:
            device_map = _check_device(device_map)
        if max_new_tokens < 1:
            raise ValueError(f"HFBackend max_new_tokens={max_new_tokens} must be >= 1")
        if batch_size < 1:
            raise ValueError(f"HFBackend batch_size={batch_size} must be >= 1")
        fit_within(1, 1, max_pixels=max_pixels)  # checks it
        self.path, self.device, self.dtype, self.device_map = path, device, dtype, device_map
        self.max_new_tokens, self.batch_size, self.do_sample = max_new_tokens, batch_size, do_sample
        self.max_pixels, self.min_pixels = max_pixels, min_pixels

        # 2. Is it a vision-language model? Decide from the config before loading any weight.
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as e:
            raise ValueError(f"HFBackend path={path!r}: no loadable model config there ({e})") from e
        remote = "AutoModelForImageTextToText" in (getattr(config, "auto_map", None) or {})
        if type(config) not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING and not (trust_remote_code and remote):
            raise ValueError(
                f"HFBackend path={path!r} holds a {type(config).__name__} (model_type "
                f"{getattr(config, 'model_type', None)!r}), not a vision-language model: "
                "AutoModelForImageTextToText cannot load it; point it at a VLM folder such as Qwen2.5-VL")

        # 3. Processor: the model's chat template, its pixel budget; left padding for generation.
        self.processor = load_processor(path, trust_remote_code, max_pixels, min_pixels)
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None or not hasattr(self.processor, "image_processor"):
            raise ValueError(f"HFBackend path={path!r}: AutoProcessor gave {type(self.processor).__name__}, "
                             "which lacks a tokenizer or an image processor; not a VLM folder")
        if not getattr(self.processor, "chat_template", None):
            raise ValueError(f"HFBackend path={path!r}: the processor has no chat template "
                             "(chat_template.jinja); use an instruction-tuned checkpoint")
        self.padding_side = "left"  # passed at every call too: some processors carry their own defaults
        self.tokenizer.padding_side = self.padding_side
        if self.tokenizer.pad_token is None:  # e.g. some Llama-based checkpoints; pads are masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token

        # 4. Model, in eval mode.
        kwargs: dict[str, Any] = {"dtype": DTYPES[dtype], "device_map": device_map,
                                  "trust_remote_code": trust_remote_code}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(path, **kwargs).eval()
        except (ImportError, ValueError) as e:
            if attn_implementation is None or not (attn_implementation in str(e) or "ttention" in str(e)):
                raise
            raise ValueError(f"backend.attn_implementation={attn_implementation!r} cannot be used with {path}: "
                             f"{e} (flash_attention_2 needs a CUDA GPU and `pip install flash-attn`; "
                             "'sdpa' and 'eager' work everywhere)") from e

    @classmethod
    def from_model(cls, model: Any, processor: Any, max_new_tokens: int = 256, batch_size: int = 8,
                   max_pixels: int | None = None) -> HFBackend:
        """A backend around a model and processor already in memory (a model being trained: its validation
        captions go through exactly the prompts, padding and decoding a loaded folder gets)."""
        self = cls.__new__(cls)
        self.path, self.device, self.dtype, self.device_map = "<in memory>", str(model.device), str(model.dtype), None
        self.max_new_tokens, self.batch_size, self.do_sample = max_new_tokens, batch_size, False
        self.max_pixels, self.min_pixels = max_pixels, None
        self.processor, self.tokenizer, self.model, self.padding_side = processor, processor.tokenizer, model, "left"
        return self

    # -- the VLMBackend interface ------------------------------------------------------------------

    def generate(self, requests: list[ChatRequest]) -> list[str | Exception]:
        """One answer per request, in order; a request that fails alone gets its ``Exception``."""
        out: list[str | Exception | None] = [None] * len(requests)
        for idx in self._batches(requests):
            batch = [requests[i] for i in idx]
            try:
                texts: list[str | Exception] = list(self._answers(batch))
            except Exception as e:  # a failed batch is retried request by request
                if len(batch) == 1:
                    texts = [_error(idx[0], batch[0], e)]
                else:
                    if torch.cuda.is_available():  # after an out-of-memory error, single requests may fit
                        torch.cuda.empty_cache()
                    logger.warning("hf batch of %d failed (%s: %s); retrying one at a time",
                                   len(batch), type(e).__name__, e)
                    texts = [self._generate_one(i, r) for i, r in zip(idx, batch)]
            for i, t in zip(idx, texts):
                out[i] = t
        return out  # type: ignore[return-value]

    # -- pieces (public so tests and benchmarks can look inside) ----------------------------------

    def encode(self, requests: list[ChatRequest]) -> Any:
        """Model inputs for a batch (``BatchFeature`` on the model's device), left-padded."""
        rendered = [chat_prompt(self.processor, r) for r in requests]
        prompts, add_special = [p for p, _ in rendered], rendered[0][1]
        images = [[self.prepare_image(im) for im in r.images] for r in requests]
        n_with_images = sum(bool(ims) for ims in images)
        if 0 < n_with_images < len(requests):
            raise ValueError("HFBackend.encode: a batch must be all text-only or all with images")
        inputs = self.processor(text=prompts, images=images if n_with_images else None, padding=True,
                                padding_side=self.padding_side, add_special_tokens=add_special,
                                truncation=False, return_tensors="pt")  # a prompt is never cut
        return inputs.to(self.model.device, dtype=self.model.dtype)

    def prepare_image(self, image: np.ndarray) -> Image.Image:
        """An image as the processor gets it: PIL, scaled down to at most ``max_pixels`` (aspect kept)."""
        return prepare_pil(image, self.max_pixels)

    def generate_ids(self, requests: list[ChatRequest], max_new_tokens: int | None = None) -> list[list[int]]:
        """New token ids per request for one batch (no splitting, no error handling)."""
        return self.generate_ids_and_stops(requests, max_new_tokens)[0]

    @torch.inference_mode()
    def generate_ids_and_stops(self, requests: list[ChatRequest],
                               max_new_tokens: int | None = None) -> tuple[list[list[int]], list[bool]]:
        """New token ids per request, and per request whether it was cut at ``max_new_tokens`` (no EOS)."""
        limit = max_new_tokens or self.max_new_tokens
        inputs = self.encode(requests)
        seq = self.model.generate(**inputs, max_new_tokens=limit, do_sample=self.do_sample,
                                  pad_token_id=self.tokenizer.pad_token_id)
        new = seq[:, inputs["input_ids"].shape[1]:]  # (B, T_new): left padding aligns every prompt's end
        # generate stops a row at one of these (and pads it after); a row without one ran to the limit
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        eos = set(eos) if isinstance(eos, (list, tuple)) else {eos}
        cut = [new.shape[1] >= limit and not eos & set(row.tolist()) for row in new]
        pad = self.tokenizer.pad_token_id
        return [[t for t in row.tolist() if t != pad] for row in new], cut

    # -- helpers -----------------------------------------------------------------------------------

    def _answers(self, requests: list[ChatRequest]) -> list[Answer]:
        ids, cut = self.generate_ids_and_stops(requests)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [Answer(t.strip(), truncated=c) for t, c in zip(texts, cut)]

    def _generate_one(self, i: int, request: ChatRequest) -> str | Exception:
        try:
            return self._answers([request])[0]
        except Exception as e:  # becomes this request's error record
            return _error(i, request, e)

    def _batches(self, requests: list[ChatRequest]) -> list[list[int]]:
        """Request indices in batches: text-only and image requests apart, similar lengths together."""
        batches = []
        for has_images in (False, True):
            idx = [i for i, r in enumerate(requests) if bool(r.images) == has_images]
            idx.sort(key=lambda i: (len(requests[i].images), len(requests[i].text)))
            batches += [idx[k:k + self.batch_size] for k in range(0, len(idx), self.batch_size)]
        return batches


def chat_prompt(processor: Any, request: ChatRequest) -> tuple[str, bool]:
    """A request as the model's chat template renders it, with the generation prompt, and whether the tokenizer
    should add its special tokens: a template that writes the BOS itself must not get a second one (the same
    rule as ``ProcessorMixin.apply_chat_template(tokenize=True)``). Inference and training both tokenise this."""
    prompt = processor.apply_chat_template(to_hf_messages(request), add_generation_prompt=True, tokenize=False)
    bos = processor.tokenizer.bos_token
    return prompt, not (bos is not None and prompt.startswith(bos))


def prepare_pil(image: np.ndarray, max_pixels: int | None = None) -> Image.Image:
    """An image as a processor gets it: PIL, scaled down to at most ``max_pixels`` (aspect kept, never up)."""
    pil = Image.fromarray(np.ascontiguousarray(image))
    size = fit_within(pil.width, pil.height, max_pixels=max_pixels)
    return pil if size == pil.size else pil.resize(size, Image.Resampling.BICUBIC)


def load_processor(path: str, trust_remote_code: bool = False, max_pixels: int | None = None,
                   min_pixels: int | None = None) -> Any:
    """``AutoProcessor`` of ``path``; a processor with its own pixel budget (Qwen2-VL family) is loaded
    with ``max_pixels`` / ``min_pixels``, the documented way (``from_pretrained(path, max_pixels=...)``)."""
    from transformers import AutoProcessor

    def load(**kw: int) -> Any:
        try:
            return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, **kw)
        except (ImportError, OSError, ValueError) as e:
            hint = " (Qwen2-VL-family processors need torchvision: pip install torchvision)" \
                if "torchvision" in str(e).lower() else ""
            raise ValueError(f"HFBackend path={path!r}: cannot build its processor{hint}: {e}") from e

    processor = load()
    budget = {k: v for k, v in (("max_pixels", max_pixels), ("min_pixels", min_pixels)) if v is not None}
    if not budget:
        return processor
    if has_pixel_budget(getattr(processor, "image_processor", processor)):
        return load(**budget)
    if min_pixels is not None:
        logger.warning("backend.min_pixels=%d is ignored: the image processor of %s (%s) has no pixel budget "
                       "(Qwen2-VL-family processors have one)", min_pixels, path,
                       type(getattr(processor, "image_processor", processor)).__name__)
    return processor


def has_pixel_budget(image_processor: Any) -> bool:
    """Whether an image processor resizes to a pixel budget it takes as ``max_pixels`` (Qwen2-VL family)."""
    kwargs = getattr(getattr(image_processor, "valid_kwargs", None), "__annotations__", {})
    return "max_pixels" in kwargs or hasattr(image_processor, "max_pixels")


def to_hf_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Messages in the processor's chat format: images become ``{"type": "image"}`` placeholders."""
    messages = []
    for m in request.messages:
        content = m.get("content", "")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = [{"type": "image"} if p["type"] == "image" else {"type": "text", "text": p["text"]}
                 for p in content]
        messages.append({"role": m["role"], "content": parts})
    return messages


def _check_device(device: str) -> str:
    """The ``device_map`` for ``from_pretrained``; a ``ValueError`` naming ``device`` if unusable."""
    if device == "auto":  # spread over the visible GPUs (needs accelerate)
        return device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"HFBackend device={device!r} is not a torch device (use cpu, cuda, cuda:N, mps "
                         f"or auto): {e}") from e
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"HFBackend device={device!r}: CUDA device not available here "
                         f"({torch.cuda.device_count()} visible); use device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"HFBackend device={device!r}: MPS is not available here; use device='cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"HFBackend device={device!r}: use cpu, cuda, cuda:N, mps or auto")
    return str(dev)


def _error(i: int, request: ChatRequest, e: Exception) -> BackendError:
    err = BackendError(f"hf request {i} (task {request.task!r}) failed: {type(e).__name__}: {e}")
    err.__cause__ = e
    return err
