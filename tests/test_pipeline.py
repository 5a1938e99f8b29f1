"""TextToVideoPipeline: save/load round trip, text layers, input checks, kept text states, long prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from t2v.models.backbone import T2VTransformer
from t2v.models.vae import build_tiny_kl
from t2v.pipeline import TextToVideoPipeline


# ----------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def tiny_pipe(minilm):
    torch.manual_seed(0)
    vae = build_tiny_kl(4, [8, 16], 32)
    tr = T2VTransformer.build("wan", 4, minilm.dim, 1, 2, 16, 2.0, [1, 2, 2], 4, 16)
    return TextToVideoPipeline(vae, minilm.model, minilm.tokenizer, tr, FlowMatchEulerDiscreteScheduler(),
                               text_window=16)


def test_pipeline_round_trip(tiny_pipe, tmp_path):
    kw = dict(num_inference_steps=3, guidance_scale=2.0, progress=False)
    a = tiny_pipe("a red circle moves left", generator=torch.Generator().manual_seed(1), **kw).frames
    assert a.shape == (1, 4, 32, 32, 3) and a.dtype == np.uint8
    tiny_pipe.save_pretrained(tmp_path / "p")
    loaded = TextToVideoPipeline.from_pretrained(tmp_path / "p")
    assert loaded.config.text_window == 16 and loaded.config.text_layers == [-1]
    b = loaded("a red circle moves left", generator=torch.Generator().manual_seed(1), **kw).frames
    np.testing.assert_array_equal(a, b)
    c = loaded("a blue square moves up", generator=torch.Generator().manual_seed(1), **kw).frames
    assert not np.array_equal(a, c)


def test_pipeline_calls_back_after_every_denoising_step(tiny_pipe):
    kw = dict(num_inference_steps=3, guidance_scale=2.0, progress=False, output_type="latent")
    seen = []

    def record(pipe, i, t, kwargs):
        seen.append((i, float(t)))
        return kwargs

    plain = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(1), **kw).frames
    called = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(1), callback_on_step_end=record, **kw).frames
    assert [i for i, _ in seen] == [0, 1, 2] and seen[0][1] > seen[-1][1]  # every step, from noise down
    torch.testing.assert_close(called, plain)
    # diffusers' convention: latents handed back replace the pipeline's
    zeroed = tiny_pipe("a red circle", generator=torch.Generator().manual_seed(1), **kw,
                       callback_on_step_end=lambda p, i, t, k: {"latents": torch.zeros_like(k["latents"])}).frames
    assert torch.count_nonzero(zeroed) == 0


def test_pipeline_keeps_text_layers_through_save_and_load(minilm, tmp_path):
    torch.manual_seed(0)
    tr = T2VTransformer.build("wan", 4, 2 * minilm.dim, 1, 2, 16, 2.0, [1, 2, 2], 4, 16)
    pipe = TextToVideoPipeline(build_tiny_kl(4, [8, 16], 32), minilm.model, minilm.tokenizer, tr,
                               FlowMatchEulerDiscreteScheduler(), text_layers=[0, -1])
    kw = dict(num_inference_steps=2, progress=False, generator=torch.Generator().manual_seed(1))
    a = pipe("a red square on the left side", **kw).frames
    pipe.save_pretrained(tmp_path / "p")
    loaded = TextToVideoPipeline.from_pretrained(tmp_path / "p")
    assert loaded.config.text_layers == [0, -1]
    assert loaded.encode_prompt(["a red square"])[0].shape[-1] == 2 * minilm.dim
    kw["generator"] = torch.Generator().manual_seed(1)
    np.testing.assert_array_equal(a, loaded("a red square on the left side", **kw).frames)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt": 3}, "`prompt` must be a string"),
        ({"prompt": "x", "height": 30}, "`height` must be a positive multiple of 4"),
        ({"prompt": "x", "num_frames": 0}, "`num_frames` must be a positive integer"),
        ({"prompt": "x", "guidance_scale": -1}, "`guidance_scale` must be a number >= 0"),
        ({"prompt": ["a", "b"], "negative_prompt": ["n"]}, "`negative_prompt` must be a string or a list of 2"),
        ({"prompt": "x", "output_type": "gif"}, "`output_type` must be"),
    ],
)
def test_pipeline_check_inputs(tiny_pipe, kwargs, message):
    with pytest.raises(ValueError) as e:
        tiny_pipe(num_inference_steps=1, progress=False, **kwargs)
    assert message in str(e.value)


def test_pipeline_takes_kept_text_states_instead_of_prompts(tiny_pipe, minilm):
    """prompt_embeds/prompt_attention_mask (and the negative's): the same video as the prompt itself, also from a
    pipeline without a text encoder (how a run from the cache samples without loading one)."""
    kw = dict(num_inference_steps=2, guidance_scale=3.0, progress=False)
    a = tiny_pipe("a red circle moves left", generator=torch.Generator().manual_seed(4), **kw).frames
    text, mask = tiny_pipe.encode_prompt(["a red circle moves left"])
    neg, neg_mask = tiny_pipe.encode_prompt([""])
    embeds = dict(prompt_embeds=text, prompt_attention_mask=mask, negative_prompt_embeds=neg,
                  negative_prompt_attention_mask=neg_mask)
    blind = TextToVideoPipeline(tiny_pipe.vae, None, None, tiny_pipe.transformer, tiny_pipe.scheduler, text_window=16)
    b = blind(generator=torch.Generator().manual_seed(4), **embeds, **kw).frames
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no text encoder: pass `prompt_embeds`"):
        blind("a red circle", **kw)
    with pytest.raises(ValueError, match="guidance needs `negative_prompt_embeds`"):
        blind(prompt_embeds=text, prompt_attention_mask=mask, **kw)
    with pytest.raises(ValueError, match="not both"):
        tiny_pipe("x", **embeds, **kw)


def test_pipeline_long_prompt_and_batch(tiny_pipe):
    long = " ".join(["the red circle moves left then stops"] * 20)  # ~140 tokens, window 16
    out = tiny_pipe([long, "a blue square"], negative_prompt="blurry", num_inference_steps=2, progress=False,
                    generator=torch.Generator().manual_seed(0)).frames
    assert out.shape[0] == 2
