"""t2v core: config, text encoder, backbones, objective (in-process, tiny sizes). Data, cache and VAE:
test_t2v_data.py; the pipeline: test_pipeline.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t2v.config import ConfigError, RunConfig, load_config
from t2v.models.backbone import T2VTransformer
from t2v.models.build import build_transformer
from t2v.models.text import TextEncoder
from t2v.objective import flow_matching_loss, sample_sigmas

TINY = "t2v/presets/tiny.yaml"
ROOT_TINY = Path(__file__).resolve().parents[1] / TINY


# ----------------------------------------------------------------------------- config
def test_presets_load_by_name_from_the_package(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the repository root: the preset comes from the installed package
    assert load_config("tiny") == load_config("tiny.yaml") == load_config(ROOT_TINY)
    assert load_config("tiny").train.max_steps == 1400


def test_config_loads_and_overrides(tmp_path):
    cfg = load_config(TINY, ["train.max_steps=7", "model.backbone=latte", "optim.lr=1e-4", "data.fps=4"])
    assert isinstance(cfg, RunConfig)
    assert (cfg.train.max_steps, cfg.model.backbone, cfg.optim.lr, cfg.data.fps) == (7, "latte", 1e-4, 4.0)
    path = cfg.save(tmp_path / "c.yaml")
    assert load_config(path).to_dict() == cfg.to_dict()  # the resolved config reloads to itself


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.num_layer=3", "unknown key(s) model.num_layer"),
        ("trian.max_steps=3", "unknown key(s) trian"),
        ("model.num_layers=four", "model.num_layers: expected int, got 'four'"),
        ("model.num_layers=2.5", "model.num_layers: expected int"),
        ("train.ema_decay=yes", "train.ema_decay: expected float"),
        ("model.patch_size=[1, 2]", "model.patch_size: expected [t, h, w]"),
        ("model.backbone=unet", "model.backbone: 'unet' is not one of"),
        ("objective.caption_dropout=1.5", "objective.caption_dropout: must be in [0, 1)"),
        ("optim.decay_steps=0", "optim.decay_steps: schedule wsd needs decay_steps >= 1, got 0"),
        ("train.max_steps", "expected key=value"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    assert message in str(e.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"tinny does not exist; presets: dit-b-256, tiny, wan-1.3b-finetune"):
        load_config("tinny")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  num_layers: 2\n  dropout: 0.1\n")
    with pytest.raises(ConfigError, match="model.dropout"):
        load_config(bad)


# ----------------------------------------------------------------------------- text encoder
def test_long_prompt_is_encoded_in_windows_not_truncated(minilm):
    enc = TextEncoder(minilm.tokenizer, minilm.model, window=16)
    words = "a small red circle moves to the left quickly and then stops in the top corner while a blue square"
    a = words + " turns green near the end"
    b = words + " turns yellow near the end"
    n_tokens = enc.token_counts([a])[0]
    assert n_tokens > 16
    (sa, ma), (sb, mb) = enc([a]), enc([b])
    assert ma.sum() == mb.sum() > 16  # every token kept (plus [CLS]/[SEP] per window)
    diff = (sa - sb).abs().sum(-1)[0]
    assert diff[:16].max() == 0  # the first window is identical
    assert diff[16:].max() > 1.0  # the change past the window reaches the conditioning


def test_max_tokens_cap_warns_with_counts(minilm, caplog):
    enc = TextEncoder(minilm.tokenizer, minilm.model, window=16, max_tokens=10)
    with caplog.at_level("WARNING"):
        _, mask = enc(["one two three four five six seven eight nine ten eleven twelve thirteen"])
    assert "has 13 tokens, over text.max_tokens=10" in caplog.text
    assert int(mask.sum()) == 10 + 2


def test_padding_is_zero_and_masked(minilm):
    states, mask = minilm(["a red circle", "a much longer prompt about a blue square moving right"])
    assert mask[0].sum() < mask[1].sum()
    assert states[0][~mask[0]].abs().max() == 0


def test_text_layers_concatenate_hidden_states_and_keep_position_words_apart(minilm):
    enc = TextEncoder(minilm.tokenizer, minilm.model, layers=[0, -1])
    D = minilm.dim
    assert enc.dim == 2 * D
    left = "a big red square on the left side"
    right = "a big red square on the right side"
    (sl, ml), (sr, _) = enc([left, "a red square"]), enc([right])
    last, _ = minilm([left])
    torch.testing.assert_close(sl[:1, :, D:], last)  # the last-layer half is the default encoding
    ids = minilm.tokenizer(left, return_tensors="pt")
    emb = minilm.model(**ids, output_hidden_states=True).hidden_states[0]
    torch.testing.assert_close(sl[0, :, :D], emb[0])  # the first half is the embedding layer
    k = minilm.tokenizer.convert_ids_to_tokens(ids["input_ids"][0]).index("left")
    cos = torch.nn.functional.cosine_similarity
    # why: MiniLM's last layer hardly tells left from right; its embedding layer does
    assert cos(sl[0, k, D:], sr[0, k, D:], dim=0) > 0.9
    assert cos(sl[0, k, :D], sr[0, k, :D], dim=0) < 0.6
    assert (~ml[1]).any() and sl[1][~ml[1]].abs().max() == 0  # the shorter prompt's padding is zero in both halves
    with pytest.raises(ValueError, match=r"text.layers \[7\] must be"):
        TextEncoder(minilm.tokenizer, minilm.model, layers=[7])


# ----------------------------------------------------------------------------- backbones
def test_a_pretrained_wan_folder_is_wrapped_with_its_weights(tmp_path):
    """The fine-tune route (model.pretrained): a saved diffusers WanTransformer3DModel folder is wrapped as is."""
    from diffusers import WanTransformer3DModel

    from t2v.models.backbone import wan_config

    torch.manual_seed(0)
    dit = WanTransformer3DModel(**wan_config(4, 32, 1, 2, 16, 2.0, [1, 2, 2]))
    dit.save_pretrained(tmp_path / "wan")
    model = T2VTransformer.from_dit(str(tmp_path / "wan"), "wan", sample_frames=4, sample_size=8)
    for k, v in dit.state_dict().items():
        assert torch.equal(model.dit.state_dict()[k], v), k
    x0, text = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 5, 32)
    torch.testing.assert_close(model(x0, torch.tensor([500.0]), text), dit(x0, torch.tensor([500.0]), text)[0])


def test_a_learned_sigma_latte_checkpoint_is_refused(tmp_path):
    """Public Latte checkpoints predict learned sigma (2× the latent channels) under DDPM: not fine-tunable with
    flow matching, and the error says why and what to do instead."""
    from diffusers import LatteTransformer3DModel

    from t2v.models.backbone import latte_config

    cfg = {**latte_config(4, 32, 1, 2, 16, 2, 8, 4), "out_channels": 8}
    LatteTransformer3DModel(**cfg).save_pretrained(tmp_path / "latte")
    with pytest.raises(ValueError, match=r"learned sigma \(8 output channels for 4 latent channels\).*fine-tune Wan"):
        T2VTransformer.from_dit(str(tmp_path / "latte"), "latte", sample_frames=4, sample_size=8)


@pytest.mark.parametrize("backbone,adapter_dim", [("wan", 0), ("latte", 0), ("wan", 16), ("latte", 16)])
def test_backbone_trains_and_ignores_padding(backbone, adapter_dim):
    torch.manual_seed(0)
    model = T2VTransformer.build(backbone, 4, 32, 1, 2, 16, 2.0, [1, 2, 2], 4, 8, text_adapter_layers=1,
                                 text_adapter_dim=adapter_dim)
    if adapter_dim:  # the 32-wide text is projected to 16 before the adapter; the DiT reads 16-wide text
        assert model.text_in.in_features == 32 and model.text_adapter.layers[0].linear1.in_features == 16
    x0 = torch.randn(2, 4, 4, 8, 8)
    text, mask = torch.randn(2, 6, 32), torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    # padding invariance: extra masked tokens with any values change nothing
    t = torch.tensor([300.0, 700.0])
    out = model(x0, t, text, mask)
    text2 = torch.cat([text, torch.randn(2, 3, 32)], 1)
    mask2 = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
    torch.testing.assert_close(model(x0, t, text2, mask2), out)
    assert not torch.allclose(model(x0, t, text2, None), out)  # ...while unmasked tokens do matter
    # a few optimisation steps: finite, decreasing loss on a fixed batch; parameters change
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    from t2v.config import ObjectiveConfig

    sig, noise = torch.tensor([0.3, 0.6]), torch.randn_like(x0)
    losses = []
    for _ in range(8):
        loss = flow_matching_loss(model, x0, text, mask, ObjectiveConfig(), sigma=sig, noise=noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert sum(changed) > 0.8 * len(changed)


def test_text_adapter_dim_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = T2VTransformer.build("wan", 4, 32, 1, 2, 16, 2.0, [1, 2, 2], 4, 8, text_adapter_layers=1,
                                 text_adapter_dim=16)
    assert model.dit.config.text_dim == 16
    model.save_pretrained(tmp_path / "m")
    back = T2VTransformer.from_pretrained(tmp_path / "m")
    x, t, text = torch.randn(1, 4, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 5, 32)
    torch.testing.assert_close(back(x, t, text), model(x, t, text))
    with pytest.raises(ValueError, match="text_adapter_dim=16 needs text_adapter_layers > 0"):
        T2VTransformer.build("wan", 4, 32, 1, 2, 16, 2.0, [1, 2, 2], 4, 8, text_adapter_dim=16)
    cfg = RunConfig()
    cfg.model.pretrained, cfg.model.text_adapter_dim = str(tmp_path / "dit"), 16
    with pytest.raises(ValueError, match="text_adapter_dim=16 cannot be used with model.pretrained"):
        build_transformer(cfg, None, 32)


def test_wan_absolute_positions_break_translation_symmetry(tmp_path):
    """RoPE alone is relative: with `abs_pos_embed` a token also knows its frame, row and column.
    The flag survives save/load (the hook is re-attached from the config)."""
    from t2v.models.backbone import sincos_3d

    pe = sincos_3d(64, 4, 3, 3)  # (D, F, H, W): every position gets a distinct code
    codes = pe.reshape(64, -1).T
    assert torch.cdist(codes, codes).add(torch.eye(len(codes)) * 9).min() > 0.1
    torch.manual_seed(0)
    plain = T2VTransformer.build("wan", 4, 32, 1, 2, 16, 2.0, [1, 2, 2], 4, 8)
    model = T2VTransformer.build("wan", 4, 32, 1, 2, 16, 2.0, [1, 2, 2], 4, 8, abs_pos_embed=True)
    model.load_state_dict(plain.state_dict())  # same weights: only the position code differs
    x, t, text = torch.randn(1, 4, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 5, 32)
    assert not torch.allclose(model(x, t, text), plain(x, t, text))
    model.save_pretrained(tmp_path / "m")
    back = T2VTransformer.from_pretrained(tmp_path / "m")
    assert back.config.abs_pos_embed
    torch.testing.assert_close(back(x, t, text), model(x, t, text))


def test_sigma_sampling_shift():
    from t2v.config import ObjectiveConfig

    torch.manual_seed(0)
    s1 = sample_sigmas(20000, ObjectiveConfig(shift=1.0))
    s3 = sample_sigmas(20000, ObjectiveConfig(shift=3.0))
    assert 0 < s1.min() and s1.max() < 1
    assert abs(s1.mean().item() - 0.5) < 0.01 and s3.mean() > s1.mean() + 0.1


def test_noise_level_curriculum():
    """pure_noise_steps at σ = 1 without caption dropout, then a linear widening to U(0, 1), then logit-normal."""
    from t2v.config import ObjectiveConfig
    from t2v.objective import caption_dropout_at, curriculum_sigmas

    cfg = ObjectiveConfig(shift=3.0, caption_dropout=0.1, pure_noise_steps=10, noise_ramp_steps=20)
    torch.manual_seed(0)
    assert torch.equal(curriculum_sigmas(64, cfg, 0), torch.ones(64))
    assert torch.equal(curriculum_sigmas(64, cfg, 9), torch.ones(64))
    assert caption_dropout_at(cfg, 9) == 0.0 and caption_dropout_at(cfg, 10) == 0.1
    quarter = curriculum_sigmas(4000, cfg, 15)  # w = 0.25: σ ~ U(0.75, 1)
    assert quarter.min() >= 0.75 and quarter.max() <= 1 and abs(quarter.mean().item() - 0.875) < 0.01
    widest = curriculum_sigmas(4000, cfg, 29)
    assert widest.min() < 0.1
    after = curriculum_sigmas(20000, cfg, 30)  # the configured logit-normal with shift 3
    ref = sample_sigmas(20000, cfg)
    assert abs(after.mean().item() - ref.mean().item()) < 0.01 and after.max() < 1
    off = ObjectiveConfig(shift=3.0)  # curriculum off: the plain sampler from step 0
    assert curriculum_sigmas(1000, off, 0).std() > 0.1 and caption_dropout_at(off, 0) == off.caption_dropout
    with pytest.raises(ConfigError, match="objective.pure_noise_steps: must be >= 0"):
        load_config(TINY, ["objective.pure_noise_steps=-1"])


def test_attention_fallback_is_logged(caplog):
    model = T2VTransformer.build("wan", 4, 32, 1, 2, 16, 2.0, [1, 2, 2], 4, 8)
    with caplog.at_level("WARNING"):
        assert model.set_attention("xformers") == "sdpa"
    assert "instead of xformers" in caplog.text


def test_demo_time_estimate_scales_with_the_work_and_the_probe():
    from t2v.demo import REFERENCE_SECONDS, REFERENCE_STEP_S, expected_minutes

    ref = expected_minutes(1000, 1000, 50, 1400, REFERENCE_STEP_S)
    assert ref == pytest.approx((sum(REFERENCE_SECONDS.values()) + 1400 * REFERENCE_STEP_S) / 60)
    assert expected_minutes(1000, 1000, 50, 1400, 2 * REFERENCE_STEP_S) == pytest.approx(2 * ref)
    toy = expected_minutes(6, 3, 2, 2, REFERENCE_STEP_S)
    assert toy < 0.05 * ref  # a toy run is not promised the full demo's time
