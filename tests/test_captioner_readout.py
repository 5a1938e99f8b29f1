"""Whitening the decoder's visual tokens (vision pretraining's ``whiten``) and the readout bench that measures what
a readout trained at the decoder's budget reads from them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from captioner.training.train import load_records

ROOT = Path(__file__).resolve().parents[1]


def test_whitening_makes_the_tokens_white_and_changes_only_the_projectors_last_layer(annotated, tmp_path):
    """After pretraining with whiten=1e-6, the visual tokens of the pretraining images are centred and their
    covariance has (nearly) equal eigenvalues where it had a spread of orders of magnitude; only the projector's
    last linear layer differs from the same pretraining without whitening. A floor outside [0, 1) is refused."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from captioner.training.vision_pretrain import (
        VisionPretrainConfig,
        annotation_pairs,
        image_inputs,
        image_tokens,
        pretrain_vision_tower,
    )

    root, ann = annotated
    recs = load_records(ann)
    cfg = dict(steps=5, batch_size=12, warmup_steps=0)
    plain = pretrain_vision_tower(root / "untrained", recs, tmp_path / "plain", VisionPretrainConfig(**cfg),
                                  progress=False)
    white = pretrain_vision_tower(root / "untrained", recs, tmp_path / "white",
                                  VisionPretrainConfig(**cfg, whiten=1e-6), progress=False)
    assert plain["whitening"] is None and white["whitening"]["floor"] == 1e-6
    before, after = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "white" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"multi_modal_projector.linear_2.weight", "multi_modal_projector.linear_2.bias"}

    pixels = image_inputs(AutoProcessor.from_pretrained(tmp_path / "white"), annotation_pairs(recs)[0])

    def spectrum(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        with torch.no_grad():
            y = image_tokens(model, pixels).reshape(-1, model.config.text_config.hidden_size).double()
        return y.mean(0), torch.linalg.eigvalsh(torch.cov(y.T)).flip(0)

    mu0, lam0 = spectrum(tmp_path / "plain")
    mu1, lam1 = spectrum(tmp_path / "white")
    k = int((lam0 > 1e-4 * lam0[0]).sum())  # the directions the tokens vary in, far above the floor (1e-6)
    assert k >= 8 and lam0[0] / lam0[k - 1] > 50  # a spread of orders of magnitude before
    assert lam1[:k].max() / lam1[:k].min() < 1.2  # white after
    assert mu1.abs().max() < 1e-3 < mu0.abs().max()
    assert float(lam1[:k].mean()) == pytest.approx(float(lam0.mean()), rel=0.02)  # each at the mean variance
    with pytest.raises(ValueError, match="whiten must be 0 .off. or a floor in .0, 1., not 1.5"):
        VisionPretrainConfig(whiten=1.5)


def test_a_readout_at_the_decoders_budget_reads_a_fact_in_one_token_and_not_noise():
    """bench/captioner_readout.py: a class written into one of nine tokens, under louder variance in every token,
    is read on held-out rows by the one-query attention readout and the linear one; labels independent of the
    tokens stay near chance; rows labelled None are left out; an unknown readout is named."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_readout

    g = torch.Generator().manual_seed(0)
    classes = ["a", "b", "c", "d"]
    y = [classes[int(i)] for i in torch.randint(0, 4, (900,), generator=g)]
    code = 2 * torch.randn(4, 32, generator=g)
    x = 2 * torch.randn(900, 1, 32, generator=g).expand(900, 9, 32).clone()  # loud, shared by the nine tokens
    x += 0.5 * torch.randn(900, 9, 32, generator=g) + torch.randn(9, 32, generator=g)  # each token's place marks it
    x[:, 4] += torch.stack([code[classes.index(c)] for c in y])  # the fact, in the fifth token only
    noise = [classes[int(i)] for i in torch.randint(0, 4, (900,), generator=g)]
    for kind in captioner_readout.READOUTS:
        read = captioner_readout.train_readout(kind, x[:700], y[:700], x[700:], y[700:])
        assert read["heldout"] > 0.9 and read["n"] == 200, (kind, read)
        blind = captioner_readout.train_readout(kind, x[:700], noise[:700], x[700:], noise[700:])
        assert blind["heldout"] < 0.4, (kind, blind)
    part = captioner_readout.train_readout("linear", x[:700], y[:700], x[700:], [None] * 100 + y[800:], steps=5)
    assert part["n"] == 100
    with pytest.raises(ValueError, match="readout kind must be one of"):
        captioner_readout.Readout("mlp", 9, 32, 4)


def test_the_readout_bench_runs_on_annotations(annotated, tmp_path):
    """The bench end to end at toy size: a readout per attribute and kind for every folder, and the JSON."""
    sys.path.insert(0, str(ROOT / "bench"))
    import captioner_readout

    root, ann = annotated
    out = tmp_path / "readout.json"
    res = captioner_readout.main([str(root / "untrained"), "--annotations", str(ann), "--heldout-manifest", str(ann),
                                  "--train", "6", "--steps", "3", "--out", str(out)])
    assert json.loads(out.read_text())["heldout"] == 6
    cols = res["readouts"][str(root / "untrained")]
    assert set(cols) == {f"{a}/{k}" for a in captioner_readout.ATTRIBUTES for k in captioner_readout.READOUTS}
    assert all(0 <= c["heldout"] <= 1 for c in cols.values())
