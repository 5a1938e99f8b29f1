"""Can a readout trained at the decoder's budget read the place from the visual tokens? Small readouts, per tower.

bench/captioner_probe.py says what the visual tokens hold: a linear probe on standardised features, fitted to
convergence. The decoder learns from the tokens as they are, by Adam at its own rate and batch, and it reads
them through attention. This bench trains small readouts the way the decoder trains — on the fast grid's tokens
as the decoder is given them (``get_image_features``), RMS-normalised as each decoder layer's input is, Adam at
``--lr`` for ``--steps`` batches of ``--batch`` — and scores them on held-out clips:

- ``linear``: one linear map of all the tokens (the probe, without standardising, at the decoder's budget);
- ``attention``: one learned query attending over the tokens, then a linear map — the decoder's way to read
  them, at its smallest.

A readout that reads the start region here while the decoder does not says the decoder's training, not the
tokens, falls short; one that cannot says the tokens must change (whitening them: ``whiten_projector``).

    make captioner   # the annotations and the model folders
    python bench/captioner_readout.py runs/captioner/pretrained runs/captioner/train/model \\
        --out runs/bench/captioner_readout.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from captioner_probe import add_data_arguments, labelled_grids, labelled_rows, scores, visual_tokens  # noqa: E402

ATTRIBUTES = ("region", "direction")
READOUTS = ("linear", "attention")


class Readout(nn.Module):
    """``(B, T, D)`` tokens → ``(B, classes)`` logits, after an RMS norm of each token (a decoder layer's input)."""

    def __init__(self, kind: str, tokens: int, dim: int, classes: int):
        super().__init__()
        if kind not in READOUTS:
            raise ValueError(f"readout kind must be one of {READOUTS}, not {kind!r}")
        self.kind, self.norm = kind, nn.RMSNorm(dim)
        self.query = nn.Parameter(torch.randn(dim) * 0.02)
        self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim * tokens if kind == "linear" else dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (B, T, D)
        if self.kind == "linear":
            return self.out(x.flatten(1))
        weights = (self.key(x) @ self.query / x.shape[-1] ** 0.5).softmax(-1)  # (B, T)
        return self.out((weights[..., None] * self.value(x)).sum(1))


def train_readout(kind: str, x_train: torch.Tensor, y_train: list, x_test: torch.Tensor, y_test: list,
                  steps: int = 800, batch: int = 16, lr: float = 1e-3, seed: int = 0) -> dict[str, float]:
    """Fit a :class:`Readout` on ``(N, T, D)`` tokens by Adam on random batches; rows labelled None are left out.
    Returns held-out and train accuracy and the held-out majority-class rate."""
    xtr, ytr, xte, yte, classes = labelled_rows(x_train, y_train, x_test, y_test, "a readout")
    torch.manual_seed(seed)
    model = Readout(kind, xtr.shape[1], xtr.shape[2], len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(xtr), (batch,), generator=g)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((model(xte).argmax(1) == yte).float().mean())
        acc_tr = float((model(xtr).argmax(1) == ytr).float().mean())
    return scores(acc, acc_tr, yte, len(classes))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(ap, "train the readouts")
    ap.add_argument("--steps", type=int, default=800, help="as the fast-mode-alone runs of the miniature")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/captioner_readout.json"))
    a = ap.parse_args(argv)

    train, test, pv_train, pv_test, lab_train, lab_test = labelled_grids(a)
    rows = {}
    for folder in a.models:
        xtr, xte = visual_tokens(folder, pv_train, flat=False), visual_tokens(folder, pv_test, flat=False)
        rows[str(folder)] = {f"{attr}/{kind}": train_readout(kind, xtr, [f[attr] for f in lab_train], xte,
                                                             [f[attr] for f in lab_test], a.steps, a.batch, a.lr)
                             for attr in ATTRIBUTES for kind in READOUTS}
    result = {"train": len(train), "heldout": len(test), "steps": a.steps, "batch": a.batch, "lr": a.lr,
              "readouts": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    cols = list(next(iter(rows.values())))
    print(f"readouts trained at the decoder's budget ({a.steps} steps of {a.batch}, Adam {a.lr:g}; {len(train)} "
          f"records, {len(test)} held out):")
    print(f"  {'model':<40} " + "  ".join(f"{c:>21}" for c in cols))
    for name, r in rows.items():
        print(f"  {name[-40:]:<40} " + "  ".join(f"{r[c]['heldout']:.2f} (ch {r[c]['chance']:.2f})".rjust(21)
                                                 for c in cols))
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
