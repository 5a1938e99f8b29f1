"""``TextToVideoPipeline``: prompt(s) of any length → video, with classifier-free guidance.

A diffusers ``DiffusionPipeline`` with components ``vae``, ``text_encoder``, ``tokenizer``,
``transformer`` (:class:`t2v.models.backbone.T2VTransformer`) and ``scheduler``
(``FlowMatchEulerDiscreteScheduler``), so ``save_pretrained`` / ``from_pretrained`` round-trip a
folder. Prompts longer than the text encoder's window are encoded in windows (never truncated).

    pipe = TextToVideoPipeline.from_pretrained("runs/demo/pipeline")
    video = pipe("a small red circle moves to the right …", num_inference_steps=20,
                 guidance_scale=3.0, generator=torch.Generator().manual_seed(0)).frames[0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange

from clipio.pixels import to_uint8

# imported so diffusers can resolve the saved "transformer" component ("t2v.models.backbone")
from t2v.models.backbone import T2VTransformer  # noqa: F401
from t2v.models.text import TextEncoder
from t2v.models.vae import VideoVAE


@dataclass
class TextToVideoPipelineOutput(BaseOutput):
    """``frames``: uint8 ``(B, F, H, W, 3)`` (``output_type="np"``), float ``(B, 3, F, H, W)`` in [0, 1]
    (``"pt"``), or the latents (``"latent"``)."""

    frames: np.ndarray | torch.Tensor


class TextToVideoPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(self, vae, text_encoder, tokenizer, transformer, scheduler, text_window: int | None = None,
                 max_text_tokens: int | None = None, text_layers: list[int] | None = None):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                              scheduler=scheduler)
        self.register_to_config(text_window=text_window, max_text_tokens=max_text_tokens,
                                text_layers=list(text_layers) if text_layers else [-1])

    # ------------------------------------------------------------------ helpers
    @property
    def video_vae(self) -> VideoVAE:
        """The VAE behind the video interface (one wrapper while the component stays the same)."""
        if getattr(self, "_vae_wrapper", (None, None))[0] != id(self.vae):
            self._vae_wrapper = (id(self.vae), VideoVAE(self.vae))
        return self._vae_wrapper[1]

    @property
    def prompt_encoder(self) -> TextEncoder:
        """The tokenizer and text encoder behind the windowed interface (token counts, windows); one wrapper
        while the components stay the same."""
        key = (id(self.text_encoder), id(self.tokenizer))
        if getattr(self, "_text_wrapper", (None, None))[0] != key:
            self._text_wrapper = (key, TextEncoder(self.tokenizer, self.text_encoder, self.config.text_window,
                                                   self.config.max_text_tokens, self.config.text_layers))
        return self._text_wrapper[1]

    def encode_prompt(self, prompts: list[str], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Windowed encoding: ``(states (B, L, D), mask (B, L))`` on ``device`` (default: the execution device)."""
        device = self._execution_device if device is None else device
        states, mask = self.prompt_encoder(prompts)
        return states.to(device, self.transformer.dtype), mask.to(device)

    def check_inputs(self, prompt, negative_prompt, num_frames, height, width, num_inference_steps, guidance_scale,
                     output_type, prompt_embeds=None, prompt_attention_mask=None, negative_prompt_embeds=None,
                     negative_prompt_attention_mask=None):
        if prompt_embeds is not None:
            if prompt is not None:
                raise ValueError("pass `prompt` or `prompt_embeds`, not both")
            if prompt_attention_mask is None or prompt_attention_mask.shape != prompt_embeds.shape[:2]:
                raise ValueError("`prompt_embeds` (B, L, D) needs `prompt_attention_mask` (B, L)")
            if (negative_prompt_embeds is None) != (negative_prompt_attention_mask is None):
                raise ValueError("`negative_prompt_embeds` and `negative_prompt_attention_mask` go together")
            if self.text_encoder is None and guidance_scale > 1.0 and negative_prompt_embeds is None:
                raise ValueError("this pipeline has no text encoder: guidance needs `negative_prompt_embeds`")
            n = prompt_embeds.shape[0]
        elif not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt))):
            raise ValueError(f"`prompt` must be a string or a non-empty list of strings, got {prompt!r}")
        elif self.text_encoder is None:
            raise ValueError("this pipeline has no text encoder: pass `prompt_embeds` and `prompt_attention_mask`")
        else:
            n = 1 if isinstance(prompt, str) else len(prompt)
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            if not (isinstance(negative_prompt, list) and len(negative_prompt) == n):
                raise ValueError(f"`negative_prompt` must be a string or a list of {n} strings, got {negative_prompt!r}")
        f = self.video_vae.spatial_factor
        patch = self._patch_hw()
        for name, v in (("height", height), ("width", width)):
            if not isinstance(v, int) or v <= 0 or v % (f * patch):
                raise ValueError(f"`{name}` must be a positive multiple of {f * patch} (VAE factor {f} × patch "
                                 f"{patch}), got {v!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be a positive integer, got {num_frames!r}")
        tc = self.transformer.config
        if tc.backbone == "latte" and num_frames != tc.sample_frames:
            raise ValueError(f"`num_frames` must be {tc.sample_frames} for this Latte model (fixed frame count), "
                             f"got {num_frames}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}")
        if not isinstance(guidance_scale, int | float) or guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be a number >= 0, got {guidance_scale!r}")
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"`output_type` must be 'np', 'pt' or 'latent', got {output_type!r}")

    def _patch_hw(self) -> int:
        dit = self.transformer.dit.config
        return int(dit.patch_size[1]) if isinstance(dit.patch_size, list | tuple) else int(dit.patch_size)

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        progress: bool = True,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> TextToVideoPipelineOutput | tuple:
        """``prompt_embeds`` (B, L, D) with ``prompt_attention_mask`` (B, L) bool — the text encoder's states,
        e.g. kept from an earlier call — replace ``prompt`` (and likewise for the negative prompt).

        ``callback_on_step_end(pipe, i, t, {"latents": latents})`` runs after each denoising step (diffusers'
        convention: it returns the dict, and a ``"latents"`` it holds replace the latents), e.g. to report
        progress."""
        vae = self.video_vae
        tc = self.transformer.config
        num_frames = tc.sample_frames if num_frames is None else num_frames
        height = tc.sample_size * vae.spatial_factor if height is None else height
        width = tc.sample_size * vae.spatial_factor if width is None else width

        # 1. Check inputs
        self.check_inputs(prompt, negative_prompt, num_frames, height, width, num_inference_steps, guidance_scale,
                          output_type, prompt_embeds, prompt_attention_mask, negative_prompt_embeds,
                          negative_prompt_attention_mask)
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 2. Encode prompts (conditional and, for CFG, the negative/empty prompt), unless given as states
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            text, mask = self.encode_prompt(prompts, device)
        else:
            text = prompt_embeds.to(device, self.transformer.dtype)
            mask = prompt_attention_mask.to(device, torch.bool)
        B = text.shape[0]
        if do_cfg:
            if negative_prompt_embeds is not None:
                neg_text = negative_prompt_embeds.to(device, self.transformer.dtype).expand(B, -1, -1)
                neg_mask = negative_prompt_attention_mask.to(device, torch.bool).expand(B, -1)
            else:
                neg = negative_prompt if negative_prompt is not None else ""
                negs = [neg] * B if isinstance(neg, str) else list(neg)
                neg_text, neg_mask = self.encode_prompt(negs, device)
            L = max(text.shape[1], neg_text.shape[1])
            text, mask = _pad_to(text, mask, L)
            neg_text, neg_mask = _pad_to(neg_text, neg_mask, L)
            text, mask = torch.cat([neg_text, text]), torch.cat([neg_mask, mask])

        # 3. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 4. Initial noise
        shape = (B, self.transformer.in_channels, vae.latent_frames(num_frames), height // vae.spatial_factor,
                 width // vae.spatial_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}")

        # 5. Denoising loop (Euler steps of the flow ODE)
        for i, t in enumerate(self.progress_bar(timesteps) if progress else timesteps):
            x = torch.cat([latents] * 2) if do_cfg else latents
            v = self.transformer(x.to(self.transformer.dtype), t.expand(x.shape[0]).to(x.dtype), text, mask).float()
            if do_cfg:
                v_uncond, v_cond = v.chunk(2)
                v = v_uncond + guidance_scale * (v_cond - v_uncond)
            latents = self.scheduler.step(v, t, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                latents = callback_on_step_end(self, i, t, {"latents": latents}).get("latents", latents)

        # 6. Decode
        if output_type == "latent":
            frames = latents
        else:
            video = vae.decode(latents.to(self.vae.dtype)).float()  # (B, 3, F, H, W) in [−1, 1]
            frames = (video + 1) / 2 if output_type == "pt" else to_uint8(rearrange(video, "b c f h w -> b f h w c"))
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return TextToVideoPipelineOutput(frames=frames)


def _pad_to(states: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    extra = length - states.shape[1]
    if extra <= 0:
        return states, mask
    return (torch.nn.functional.pad(states, (0, 0, 0, extra)), torch.nn.functional.pad(mask, (0, extra)))
