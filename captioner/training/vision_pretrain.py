"""Contrastive pretraining of a from-scratch VLM's vision tower on its own annotations (CLIP-style).

A real captioner starts from a pretrained vision encoder (ShareCaptioner-Video from InternLM-XComposer's,
LLaVA from CLIP's). A VLM built from configs has a random one, and training it end to end through the
decoder does not teach it to see: the decoder learns the caption language from the text long before a
random tower's features carry anything it can use, and after that the loss on the words only the image
can give (colour, shape, place) stays at their prior (docs/captioner-training.md measures it).

So the miniature gets its "pretrained CLIP" the way CLIP got one, from image/text pairs — here the
annotations it is trained on, nothing more: each record's first key-frame with its detail caption, and
its fast-mode key-frame grid with its dense caption (the same images inference sends). The image side is
what the decoder will consume: ``get_image_features`` (vision tower → feature layer → projector), all its
tokens mapped linearly to one embedding (``pool="flatten"``: where a token sits counts; their mean would
let the tower drop where the object is, and it does — bench/captioner_probe.py); the text side is a small
``CLIPTextModel`` over the VLM's own tokenizer, thrown away afterwards. The loss is CLIP's symmetric
InfoNCE with a learned temperature over large batches (256: in a small one, colour and shape alone tell
the pairs apart, and the tower keeps nothing else); captions that occur twice in a batch are not counted
as each other's negatives. ``hard_negatives`` adds each caption mirrored (left/right, top/bottom, up/down
swapped) to the image→text choices, as NegCLIP does; in the miniature it leaves a tower that has learned less
of everything (docs/captioner-training.md), so it is off.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from captioner.training.conversations import mirrored

log = logging.getLogger(__name__)


@dataclass
class VisionPretrainConfig:
    steps: int = 375
    batch_size: int = 256          # large: with few pairs per batch, colour and shape alone tell them apart
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_text_tokens: int = 96      # a dense caption's first sentences: what the clip starts as and does
    text_layers: int = 2
    pool: str = "flatten"          # image tokens -> one embedding: "flatten" (a linear map of all tokens), or "mean"
    hard_negatives: bool = False   # each caption mirrored (left<->right, top<->bottom) as an extra negative (NegCLIP)
    # > 0: afterwards, whiten the decoder's visual tokens (ZCA, regularised by whiten x the largest eigenvalue),
    # folded into the projector's last linear layer (whiten_projector); 0: off
    whiten: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.pool not in ("mean", "flatten"):
            raise ValueError(f"vision pretraining: pool must be 'mean' or 'flatten', not {self.pool!r}")
        if not 0 <= self.whiten < 1:
            raise ValueError(f"vision pretraining: whiten must be 0 (off) or a floor in (0, 1), not {self.whiten!r}")


def annotation_pairs(records: list[dict[str, Any]], captioner: str = "mini-fast", prompts: str | None = None
                     ) -> tuple[list, list[str]]:
    """(images, texts): every usable record's first key-frame with its caption and its fast-mode grid with its
    dense caption, built by the training conversations (so exactly what inference will send)."""
    from captioner.config import load_captioner_config
    from captioner.prompting import PromptSet
    from captioner.training.conversations import FrameSource, conversation, has_mode

    ccfg = load_captioner_config(captioner)
    ps, frames = PromptSet(prompts or ccfg.run.prompts), FrameSource(ccfg)
    images, texts = [], []
    for r in records:
        for mode in ("sliding", "fast"):
            if has_mode(r, mode):
                conv = conversation(r, mode, 0, ps, frames)
                images.append(conv.request.images[0])
                texts.append(conv.answer.strip())
    if len(set(texts)) < 2:
        raise ValueError(f"vision pretraining needs at least 2 different captions; the {len(records)} records "
                         f"give {len(set(texts))}")
    return images, texts


def image_inputs(processor, images: list) -> dict[str, torch.Tensor]:
    """The image processor's tensors for ``images``, one image a row (LLaVA: ``pixel_values``; Idefics3 also
    ``pixel_attention_mask``)."""
    out = dict(processor.image_processor(images=[[im] for im in images], return_tensors="pt"))  # one per sample
    if any(len(v) != len(images) for v in out.values()):
        raise ValueError(f"{type(processor.image_processor).__name__} gave {[tuple(v.shape) for v in out.values()]} "
                         f"for {len(images)} images, not one row each")
    return out


def image_tokens(model, inputs: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """(batch, tokens, dim): what a VLM's decoder is given for each image (LLaVA: one token a patch; Idefics3:
    one a block of patches, after its pixel-shuffle connector)."""
    inputs = inputs if isinstance(inputs, dict) else {"pixel_values": inputs}
    out = model.get_image_features(**inputs)
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    feats = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats
    return feats.reshape(len(inputs["pixel_values"]), -1, feats.shape[-1])


def projector_output_layer(model) -> torch.nn.Linear:
    """The linear layer whose output is the decoder's visual tokens: the projector's last (LLaVA:
    ``multi_modal_projector.linear_2``; Idefics3: ``connector.modality_projection.proj``)."""
    from captioner.training.train import PROJECTOR_PARTS

    linears = [m for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and any(part in n for part in PROJECTOR_PARTS)]
    if not linears:
        raise ValueError(f"{type(model).__name__}: no linear layer named like a projector ({', '.join(PROJECTOR_PARTS)})")
    return linears[-1]


@torch.no_grad()
def whiten_projector(model, pixels: dict[str, torch.Tensor], floor: float = 1e-3, batch: int = 64) -> dict[str, Any]:
    """Make the decoder's visual tokens white on these images: centre them and scale every direction of their
    covariance to about the same variance (regularised ZCA: ``W = V diag(s / sqrt(λ + floor·λmax)) Vᵀ``, ``s²``
    the mean eigenvalue; directions far below the floor, noise, are not blown up), folded into the projector's
    last linear layer (``y' = W (y - μ)``).
    A contrastively pretrained tower puts most of the tokens' variance on colour and little on where the object
    is (bench/captioner_probe.py); a readout trained like the decoder reads the place far better from white
    tokens (bench/captioner_readout.py). Returns the eigenvalues before (largest first) and the floor."""
    layer = projector_output_layer(model)
    n = len(pixels["pixel_values"])
    tokens = torch.cat([image_tokens(model, {k: v[i:i + batch] for k, v in pixels.items()}) for i in range(0, n, batch)])
    y = tokens.reshape(-1, tokens.shape[-1]).double()  # (images × tokens, D)
    mu = y.mean(0)
    lam, vec = torch.linalg.eigh(torch.cov(y.T))
    lam = lam.clamp(min=0)
    if float(lam.max()) <= 0:
        raise ValueError(f"{type(model).__name__}: its visual tokens do not vary over these {n} images; "
                         "there is nothing to whiten")
    w = vec @ torch.diag(lam.mean().sqrt() / (lam + floor * float(lam.max())).sqrt()) @ vec.T  # (D, D)
    if layer.bias is None:
        raise ValueError(f"{type(model).__name__}: the projector's last linear layer has no bias to centre with")
    weight, bias = layer.weight.double(), layer.bias.double()
    layer.weight.copy_((w @ weight).to(layer.weight.dtype))
    layer.bias.copy_((w @ (bias - mu)).to(layer.bias.dtype))
    return {"floor": floor, "tokens": len(y), "eigenvalues_before": [round(float(v), 6) for v in lam.flip(0)]}


def pretrain_vision_tower(model_dir: str | Path, records: list[dict[str, Any]], out_dir: str | Path,
                          cfg: VisionPretrainConfig | None = None, captioner: str = "mini-fast",
                          progress: bool = True) -> dict[str, Any]:
    """Load the VLM folder ``model_dir``, pretrain its vision tower and projector contrastively on the records'
    annotations and save the whole VLM (decoder untouched) with its processor into ``out_dir``. Returns a
    summary (also written to ``out_dir/vision_pretrain.json``): loss at the start and end, and the held-in
    image→text retrieval accuracy of the last batch."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor, CLIPTextConfig, CLIPTextModel

    from captioner.training.train import PROJECTOR_PARTS, VISION_PARTS

    cfg = cfg or VisionPretrainConfig()
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    if not hasattr(model, "get_image_features"):
        raise ValueError(f"{model_dir}: {type(model).__name__} has no get_image_features; vision pretraining "
                         "needs a VLM that exposes its visual tokens (LLaVA, Idefics3, ...)")
    tok = processor.tokenizer
    images, texts = annotation_pairs(records, captioner)
    pixels = image_inputs(processor, images)
    unique = list(dict.fromkeys(texts))
    axes = ("horizontal", "vertical")
    # the negatives are texts of their own, after the captions (whose ids stay 0..len(unique)-1)
    vocab = list(dict.fromkeys(unique + [mirrored(t, a) for t in unique for a in axes])) if cfg.hard_negatives \
        else unique
    text_id = {t: i for i, t in enumerate(vocab)}
    caption_id = torch.tensor([text_id[t] for t in texts])
    negative_id = torch.tensor([[text_id[mirrored(t, a)] for a in axes] for t in unique]) if cfg.hard_negatives \
        else None
    enc = tok(vocab, padding=True, truncation=True, max_length=cfg.max_text_tokens, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        dim = model.config.text_config.hidden_size
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=dim, intermediate_size=4 * dim,
                                            num_hidden_layers=cfg.text_layers, num_attention_heads=4,
                                            max_position_embeddings=ids.shape[1], pad_token_id=tok.pad_token_id,
                                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
        with torch.no_grad():
            n_tokens = image_tokens(model, {k: v[:1] for k, v in pixels.items()}).shape[1]
        img_proj = torch.nn.Linear(dim * (n_tokens if cfg.pool == "flatten" else 1), dim, bias=False)
        txt_proj = torch.nn.Linear(dim, dim, bias=False)
        log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        gen = torch.Generator().manual_seed(cfg.seed)
    vision = [p for n, p in model.named_parameters() if any(part in n for part in VISION_PARTS + PROJECTOR_PARTS)]
    params = [*vision, *text.parameters(), *img_proj.parameters(), *txt_proj.parameters(), log_scale]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * 0.5
                                              * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))

    def embed(text_ids: torch.Tensor) -> torch.Tensor:
        h = text(input_ids=ids[text_ids], attention_mask=mask[text_ids]).last_hidden_state
        m = mask[text_ids][..., None].to(h.dtype)
        return F.normalize(txt_proj((h * m).sum(1) / m.sum(1)), dim=-1)

    model.train()
    text.train()
    n, bs = len(texts), min(cfg.batch_size, len(texts))
    history: list[float] = []
    t0 = time.time()
    bar = tqdm(range(cfg.steps), desc="vision pretraining", unit="step", disable=not progress)
    for step in bar:
        idx = torch.randperm(n, generator=gen)[:bs]
        cid = caption_id[idx]
        tokens = image_tokens(model, {k: v[idx] for k, v in pixels.items()})
        zi = F.normalize(img_proj(tokens.flatten(1) if cfg.pool == "flatten" else tokens.mean(1)), dim=-1)
        scale = log_scale.exp().clamp(max=100)
        logits = zi @ embed(cid).T * scale
        twins = (cid[:, None] == cid[None, :]) & ~torch.eye(bs, dtype=torch.bool)
        logits = logits.masked_fill(twins, float("-inf"))
        target = torch.arange(bs)
        image_to_text = logits
        if negative_id is not None:  # image -> its caption among the batch's captions and their mirrors
            nid = negative_id[cid].flatten()
            hard = (zi @ embed(nid).T * scale).masked_fill(nid[None, :] == cid[:, None], float("-inf"))
            image_to_text = torch.cat([logits, hard], 1)
        loss = (F.cross_entropy(image_to_text, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(history[-10:]) / len(history[-10:]):.3f}")
    retrieval = float((logits.argmax(1) == target).float().mean())
    model.eval()
    whitened = whiten_projector(model, pixels, cfg.whiten) if cfg.whiten > 0 else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the processor as it was loaded: tokenising the texts with max_length above set the fast tokenizer's
    # truncation, which save_pretrained would write into tokenizer.json and every later call would then apply
    # (a trainer starting here cut every prompt at max_text_tokens)
    AutoProcessor.from_pretrained(model_dir).save_pretrained(out)
    model.save_pretrained(out)
    k = max(1, min(50, len(history) // 10))
    summary = {"pairs": n, "captions": len(unique), "hard_negatives": len(vocab) - len(unique), "steps": cfg.steps, "image_tokens": n_tokens,
               "embedding_inputs": img_proj.in_features,
               "loss_first": sum(history[:k]) / k, "loss_last": sum(history[-k:]) / k,
               "chance_loss": math.log(bs), "retrieval_last_batch": retrieval,
               "seconds": round(time.time() - t0, 1), "config": asdict(cfg),
               "whitening": whitened and {**whitened, "eigenvalues_before": whitened["eigenvalues_before"][:16]}}
    (out / "vision_pretrain.json").write_text(json.dumps(summary, indent=1))
    log.info("vision pretraining: loss %.3f -> %.3f (chance %.3f) in %.0f s", summary["loss_first"],
             summary["loss_last"], summary["chance_loss"], summary["seconds"])
    return summary
