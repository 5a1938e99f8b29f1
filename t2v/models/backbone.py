"""The denoising backbone: a diffusers video DiT behind one signature.

``T2VTransformer(latents (B, C, F, H, W), timestep (B,) in [0, 1000], text (B, L, D), text_mask (B, L))
→ prediction (B, C, F, H, W)``, for ``WanTransformer3DModel`` (default: 3D RoPE, any frame count and
size, text by cross-attention) and ``LatteTransformer3DModel`` (factorised space/time attention,
fixed frame count). The wrapped model's full diffusers config is kept in ``dit_config``, so a
public checkpoint (e.g. Wan2.1-T2V-1.3B's ``transformer/``) can be wrapped and fine-tuned as is.

Text padding is handled on purpose. Wan's cross-attention takes no mask (upstream pads T5 states
with zeros and lets the padded keys take part), so this module installs a masked cross-attention
processor: padded keys get no attention at all, and a prompt's result does not depend on how
much padding its batch has. Latte takes a mask natively (passed per frame here).

An optional ``text_adapter`` (a few trainable transformer layers over the frozen text features)
lets the model re-read a frozen encoder's features — e.g. separate "left" from "right", which a
sentence-similarity encoder keeps close. With ``text_adapter_dim`` the features are first projected
to that width (a trainable linear layer) and the adapter and the DiT's text input run at it: the
tiny preset's adapter over 768-wide MiniLM features was 78% of its parameters and half its FLOPs.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from torch import nn

log = logging.getLogger(__name__)


class MaskedWanCrossAttnProcessor(WanAttnProcessor):
    """Wan's attention processor with a key mask for cross-attention.

    Wan's blocks call their processors without a mask, so the mask travels through ``holder``
    (a dict shared with the owning :class:`T2VTransformer`, set at the start of each forward and
    kept until the next one, so gradient-checkpointing recomputation sees the same mask).
    """

    def __init__(self, holder: dict[str, Any]):
        super().__init__()
        self.holder = holder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if attention_mask is None:
            attention_mask = self.holder.get("mask")  # (B, 1, 1, L) bool, True = attend
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


def wan_config(in_channels: int, text_dim: int, num_layers: int, num_heads: int, head_dim: int,
               ffn_mult: float, patch_size: list[int]) -> dict[str, Any]:
    """A ``WanTransformer3DModel`` config of the given size (the rest as in Wan2.1)."""
    inner = num_heads * head_dim
    return dict(patch_size=tuple(patch_size), num_attention_heads=num_heads, attention_head_dim=head_dim,
                in_channels=in_channels, out_channels=in_channels, text_dim=text_dim, freq_dim=min(256, inner),
                ffn_dim=int(inner * ffn_mult), num_layers=num_layers, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


def latte_config(in_channels: int, text_dim: int, num_layers: int, num_heads: int, head_dim: int,
                 patch: int, sample_size: int, num_frames: int) -> dict[str, Any]:
    """A ``LatteTransformer3DModel`` config (PixArt-style adaLN-single, learned sigma off)."""
    return dict(num_attention_heads=num_heads, attention_head_dim=head_dim, in_channels=in_channels,
                out_channels=in_channels, num_layers=num_layers, cross_attention_dim=num_heads * head_dim,
                attention_bias=True, sample_size=sample_size, patch_size=patch, activation_fn="gelu-approximate",
                num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False,
                norm_eps=1e-6, caption_channels=text_dim, video_length=num_frames)


@functools.lru_cache(maxsize=16)
def sincos_3d(dim: int, F: int, H: int, W: int) -> torch.Tensor:
    """Fixed sin-cos position embeddings (dim, F, H, W): a quarter of the channels for the frame index,
    three eighths each for row and column (zero-padded when ``dim`` does not split evenly). Cached per
    shape (every forward asks for the same one); callers must not modify the result in place."""
    def one(n: int, d: int) -> torch.Tensor:  # (n, d)
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / max(d // 2, 1))
        ang = torch.arange(n, dtype=torch.float64)[:, None] * omega[None]
        return torch.cat([ang.sin(), ang.cos()], dim=1)

    dt = (dim // 4) // 2 * 2
    dh = ((dim - dt) // 2) // 2 * 2
    pe = torch.zeros(dim, F, H, W, dtype=torch.float64)
    pe[:dt] = one(F, dt).T[:, :, None, None]
    pe[dt:dt + dh] = one(H, dh).T[:, None, :, None]
    pe[dt + dh:dt + 2 * dh] = one(W, dh).T[:, None, None, :]
    return pe.float()


def _add_sincos_3d(module: nn.Module, inputs, out: torch.Tensor) -> torch.Tensor:
    """Forward hook on Wan's patch embedding: out (B, D, F', H', W') + sin-cos positions."""
    _, D, F, H, W = out.shape
    return out + sincos_3d(D, F, H, W).to(out.device, out.dtype)[None]


class T2VTransformer(ModelMixin, ConfigMixin):
    """A diffusers DiT (Wan or Latte) plus an optional text adapter, with one call signature."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        backbone: str = "wan",
        dit_config: dict[str, Any] | None = None,
        text_dim: int = 384,
        text_adapter_layers: int = 0,
        sample_frames: int = 8,
        sample_size: int = 16,
        abs_pos_embed: bool = False,
        text_adapter_dim: int = 0,
    ):
        super().__init__()
        if text_adapter_dim and not text_adapter_layers:
            raise ValueError(f"text_adapter_dim={text_adapter_dim} needs text_adapter_layers > 0")
        width = text_adapter_dim or text_dim  # what the adapter and the DiT's text input see
        if backbone == "wan":
            from diffusers import WanTransformer3DModel

            self.dit = WanTransformer3DModel.from_config(dit_config)
            dit_text_dim = self.dit.config.text_dim
        elif backbone == "latte":
            from diffusers import LatteTransformer3DModel

            self.dit = LatteTransformer3DModel.from_config(dit_config)
            dit_text_dim = self.dit.config.caption_channels
        else:
            raise ValueError(f"backbone {backbone!r} is not one of 'wan', 'latte'")
        if dit_text_dim != width:
            what = "text_adapter_dim" if text_adapter_dim else "text_dim (text encoder width)"
            raise ValueError(f"dit_config text dim {dit_text_dim} != {what} {width}")
        self.text_in = nn.Linear(text_dim, text_adapter_dim) if text_adapter_dim else None  # (B, L, D) → (B, L, D')
        self.text_adapter = None
        if text_adapter_layers > 0:
            heads = max(h for h in (8, 6, 4, 3, 2, 1) if width % h == 0)
            layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                               norm_first=True, activation="gelu")
            self.text_adapter = nn.TransformerEncoder(layer, text_adapter_layers, enable_nested_tensor=False)
            # residual adapter that starts as the identity: zero the last projection of every layer
            for lyr in self.text_adapter.layers:
                nn.init.zeros_(lyr.linear2.weight)
                nn.init.zeros_(lyr.linear2.bias)
                nn.init.zeros_(lyr.self_attn.out_proj.weight)
                nn.init.zeros_(lyr.self_attn.out_proj.bias)
        self._mask_holder: dict[str, Any] = {}
        if backbone == "wan":
            for block in self.dit.blocks:
                block.attn2.set_processor(MaskedWanCrossAttnProcessor(self._mask_holder))
            if abs_pos_embed:
                # Wan knows positions only through RoPE in self-attention, i.e. *relative* offsets; its
                # cross-attention sees none. A tiny model then cannot tie "on the left" or "at 2.5s" to
                # where and when a token is. Fixed 3D sin-cos embeddings added to the patch embeddings
                # (as DiT/Latte do in 2D) give every token its absolute frame, row and column.
                self.dit.patch_embedding.register_forward_hook(_add_sincos_3d)
        elif abs_pos_embed:
            log.warning("model.abs_pos_embed is ignored for latte (it has its own absolute position embeddings)")

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def build(cls, backbone: str, in_channels: int, text_dim: int, num_layers: int, num_heads: int, head_dim: int,
              ffn_mult: float, patch_size: list[int], sample_frames: int, sample_size: int,
              text_adapter_layers: int = 0, abs_pos_embed: bool = False,
              text_adapter_dim: int = 0) -> T2VTransformer:
        width = text_adapter_dim or text_dim
        if backbone == "wan":
            dit = wan_config(in_channels, width, num_layers, num_heads, head_dim, ffn_mult, patch_size)
        else:
            dit = latte_config(in_channels, width, num_layers, num_heads, head_dim, patch_size[1],
                               sample_size, sample_frames)
        return cls(backbone, dit, text_dim, text_adapter_layers, sample_frames, sample_size, abs_pos_embed,
                   text_adapter_dim)

    @classmethod
    def from_dit(cls, dit_path: str, backbone: str = "wan", text_adapter_layers: int = 0,
                 sample_frames: int = 8, sample_size: int = 16, abs_pos_embed: bool = False,
                 **load_kwargs) -> T2VTransformer:
        """Wrap a pretrained diffusers DiT folder (e.g. ``Wan2.1-T2V-1.3B-Diffusers/transformer``)."""
        from diffusers import LatteTransformer3DModel, WanTransformer3DModel

        dit_cls = WanTransformer3DModel if backbone == "wan" else LatteTransformer3DModel
        dit = dit_cls.from_pretrained(dit_path, **load_kwargs)
        if backbone == "latte":
            c = dit.config
            if (c.out_channels or c.in_channels) != c.in_channels:
                raise ValueError(
                    f"model.pretrained={dit_path}: this Latte predicts learned sigma ({c.out_channels} output channels "
                    f"for {c.in_channels} latent channels) and was trained as DDPM (noise prediction); this trainer "
                    "trains flow matching (velocity, as many outputs as inputs), so it cannot fine-tune it. Train "
                    "Latte from scratch (leave model.pretrained unset) or fine-tune Wan (t2v/presets/wan-1.3b-finetune.yaml)")
            log.warning("model.pretrained=%s: a Latte checkpoint is fine-tuned with flow matching; one trained as "
                        "DDPM starts from another objective", dit_path)
        text_dim = dit.config.text_dim if backbone == "wan" else dit.config.caption_channels
        model = cls(backbone, dict(dit.config), text_dim, text_adapter_layers, sample_frames, sample_size,
                    abs_pos_embed)
        model.dit.load_state_dict(dit.state_dict())
        return model

    @property
    def in_channels(self) -> int:
        return int(self.dit.config.in_channels)

    @property
    def patch_volume(self) -> int:
        """Latent positions (per channel) one token covers: t·h·w for Wan's 3D patches, h·w for Latte,
        which patches each frame in 2D."""
        p = self.dit.config.patch_size
        if self.config.backbone == "wan":
            return int(p[0] * p[1] * p[2])
        return int(p * p)

    def tokens(self, latent_shape: tuple[int, ...] | torch.Size) -> int:
        """Tokens the DiT sees for one latent of shape (C, F, H, W); a leading batch dimension is ignored."""
        C, F, H, W = tuple(latent_shape)[-4:]
        return F * H * W // self.patch_volume

    def set_attention(self, kind: str) -> str:
        """Choose the attention kernel: ``sdpa`` (PyTorch) or ``xformers`` (CUDA only). Returns what is used."""
        if kind == "xformers":
            reason = None
            try:
                import xformers  # noqa: F401
            except ImportError:
                reason = "xformers is not installed (pip install -e .[xformers])"
            if reason is None and not torch.cuda.is_available():
                reason = "xformers needs a CUDA device"
            if reason is None and self.config.backbone == "wan":
                reason = "the masked Wan cross-attention needs SDPA masks"
            if reason is None:
                self.dit.set_attention_backend("xformers")
                return "xformers"
            log.warning("attention: using PyTorch SDPA instead of xformers: %s", reason)
        return "sdpa"

    # ------------------------------------------------------------------ forward
    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """latents (B, C, F, H, W); timestep (B,) in [0, 1000]; text (B, L, D); text_mask (B, L) bool."""
        B = latents.shape[0]
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        text_mask = text_mask.to(torch.bool)
        text = text * text_mask[..., None]  # padded states are exactly zero, whatever came in
        if self.text_in is not None:
            text = self.text_in(text)  # (B, L, D')
        if self.text_adapter is not None:
            text = self.text_adapter(text, src_key_padding_mask=~text_mask) * text_mask[..., None]  # (B, L, D)
        timestep = timestep.reshape(-1).expand(B) if timestep.numel() == 1 else timestep
        if self.config.backbone == "wan":
            self._mask_holder["mask"] = text_mask[:, None, None, :]  # (B, 1, 1, L)
            return self.dit(latents, timestep, text, return_dict=False)[0]
        F = latents.shape[2]
        bias = (~text_mask).to(latents.dtype) * -10000.0  # (B, L): 0 keep, -1e4 drop
        bias = bias.repeat_interleave(F, dim=0)[:, None, :]  # (B·F, 1, L): Latte repeats text per frame
        return self.dit(latents, timestep, text, encoder_attention_mask=bias, return_dict=False)[0]
