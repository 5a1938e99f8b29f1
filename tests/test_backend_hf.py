"""The ``hf`` backend on a tiny random LLaVA saved to disk and loaded through ``from_pretrained``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captioner.backends.base import ChatRequest, VLMBackend, user_request
from captioner.backends.hf import HFBackend
from captioner.backends.tiny_vlm import build_tiny_llava


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    return str(build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), seed=0))


@pytest.fixture(scope="module")
def backend(tiny_path):
    # One torch thread: on the shared 2-core machines a second OpenMP thread makes runs 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield HFBackend(tiny_path, max_new_tokens=8, batch_size=8)
    torch.set_num_threads(threads)


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8) for i in range(n)]


def mixed_requests() -> list[ChatRequest]:
    """Image and text-only requests, interleaved, with prompts of quite different lengths."""
    im = frames(4)
    return [
        user_request([im[0], "Describe the image."], task="detail"),
        user_request(["Summarize: 0.0 s a red car enters; 2.0 s it turns left; 4.0 s it stops near the door."],
                     system="You are an expert video captioner.", task="summary"),
        user_request([im[1], im[2], "Compared with the previous key-frame at 2.0 s, describe what changed at "
                      "4.0 s: the objects, their motion, the camera and the lighting, in plain English."],
                     task="diff"),
        user_request(["Write one sentence."], task="short"),
        user_request([im[3], "What colour is the car on the left?"]),
    ]


@torch.inference_mode()
def first_step_logits(backend: HFBackend, request: ChatRequest) -> torch.Tensor:
    """Next-token logits after the prompt, through the backend's own encoding. (V,)"""
    return backend.model(**backend.encode([request])).logits[0, -1]


def test_batched_equals_one_at_a_time_in_order(backend, monkeypatch):
    reqs = mixed_requests()
    assert isinstance(backend, VLMBackend) and backend.name == "hf"
    batched = backend.generate(reqs)
    single = [backend.generate([r])[0] for r in reqs]
    assert len(batched) == len(reqs) and all(isinstance(t, str) for t in batched)
    assert batched == single
    # The check has teeth: the prompts differ in length (so a batch is padded) and in answer...
    image_reqs = [reqs[i] for i in (0, 2, 4)]
    assert (backend.encode(image_reqs)["attention_mask"] == 0).any()
    assert len(set(single)) == len(single)
    # ...and padding on the wrong side does change the answers.
    ids = [backend.generate_ids([r])[0] for r in image_reqs]
    with monkeypatch.context() as m:
        m.setattr(backend, "padding_side", "right")
        assert backend.generate_ids(image_reqs) != ids
    assert backend.generate_ids(image_reqs) == ids


def test_the_image_reaches_the_model(backend):
    a, b = frames(2, seed=1)
    ra, rb = (user_request([im, "Describe the image."]) for im in (a, b))
    # Each image becomes 16 placeholder tokens (4x4 patches, CLS dropped) filled by the vision tower.
    inputs = backend.encode([ra])
    assert int((inputs["input_ids"] == backend.processor.image_token_id).sum()) == 16
    assert inputs["pixel_values"].shape[0] == 1
    # Same text, different image: different next-token logits and different answers. If the images
    # were dropped on the way (messages, processor or model), both would be identical.
    assert (first_step_logits(backend, ra) - first_step_logits(backend, rb)).abs().max() > 0.1
    assert backend.generate_ids([ra]) != backend.generate_ids([rb])


def test_text_only_request(backend):
    req = user_request(["Summarize the differential captions in order."], system="Be brief.", task="summary")
    assert "pixel_values" not in backend.encode([req])
    ids = backend.generate_ids([req])[0]
    assert 1 <= len(ids) <= backend.max_new_tokens
    (text,) = backend.generate([req])
    assert text == backend.tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_max_new_tokens_bounds_the_output(backend, tiny_path):
    reqs = [mixed_requests()[i] for i in (0, 2, 4)]
    long = backend.generate_ids(reqs)
    assert [len(t) for t in long] == [8, 8, 8]  # no early EOS here: the bound below is not vacuous
    short_backend = HFBackend(tiny_path, max_new_tokens=3)
    assert short_backend.generate_ids(reqs) == [t[:3] for t in long]
    assert short_backend.generate(reqs) == [backend.tokenizer.decode(t[:3], skip_special_tokens=True).strip()
                                            for t in long]


def test_one_bad_request_fails_alone(backend):
    reqs = mixed_requests()[:3]
    im = frames(1, seed=3)[0]
    # A literal image token in the text with one image: the processor cannot match images to tokens.
    bad = user_request([im, "Describe <image> please."])
    out = backend.generate([reqs[0], bad, reqs[2]])
    assert isinstance(out[1], Exception) and "request 1" in str(out[1])
    assert out[0] == backend.generate([reqs[0]])[0] and out[2] == backend.generate([reqs[2]])[0]


def test_bad_arguments_name_the_problem(tiny_path, tmp_path):
    with pytest.raises(ValueError, match="dtype='float8'"):
        HFBackend(tiny_path, dtype="float8")
    with pytest.raises(ValueError, match="device='gpu0'"):
        HFBackend(tiny_path, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*not available"):
            HFBackend(tiny_path, device="cuda")
    with pytest.raises(ValueError, match="no loadable model config"):
        HFBackend(str(tmp_path))
    # A text-only causal LM folder is not a VLM.
    from transformers import LlamaConfig, LlamaForCausalLM

    lm_dir = tmp_path / "llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(lm_dir)
    with pytest.raises(ValueError, match="LlamaConfig.*not a vision-language model"):
        HFBackend(str(lm_dir))


# ---------------------------------------------------------------- config keys, image size, truncation


def test_config_keys_reach_from_pretrained_and_the_processor(tiny_path, monkeypatch):
    import transformers
    from PIL import Image

    from captioner.config import build_backend, load_captioner_config

    calls: dict[str, list[dict]] = {}
    for name in ("AutoConfig", "AutoProcessor", "AutoModelForImageTextToText"):
        cls = getattr(transformers, name)

        def spy(*args, _orig=cls.from_pretrained, _name=name, **kwargs):
            calls.setdefault(_name, []).append(kwargs)
            return _orig(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    cfg = load_captioner_config(None, ["backend.kind=hf", f"backend.path={tiny_path}", "backend.dtype=bfloat16",
                                       "backend.device_map=auto", "backend.attn_implementation=eager",
                                       "backend.trust_remote_code=true", "backend.max_pixels=600",
                                       "backend.max_new_tokens=2"])
    backend = build_backend(cfg.backend)
    model_kw = calls["AutoModelForImageTextToText"][-1]
    assert model_kw["dtype"] == torch.bfloat16 and model_kw["device_map"] == "auto"
    assert model_kw["attn_implementation"] == "eager" and model_kw["trust_remote_code"] is True
    assert all(kw["trust_remote_code"] is True for kw in calls["AutoConfig"] + calls["AutoProcessor"])
    assert backend.model.dtype == torch.bfloat16 and backend.model.config._attn_implementation == "eager"

    # max_pixels: every image reaches the processor scaled down to at most 600 pixels, aspect kept
    seen: list[tuple[int, int]] = []
    proc_call = type(backend.processor).__call__

    def spy_call(self, *args, images=None, **kwargs):
        seen.extend(im.size for ims in images or [] for im in ims)
        return proc_call(self, *args, images=images, **kwargs)

    monkeypatch.setattr(type(backend.processor), "__call__", spy_call)
    im = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)  # 5400 pixels
    (answer,) = backend.generate([user_request([im, "Describe the image."])])
    assert isinstance(answer, str) and seen == [(30, 20)]
    small = backend.prepare_image(im[:10, :20])
    assert isinstance(small, Image.Image) and small.size == (20, 10)  # never scaled up


def test_pixel_budget_processors_are_loaded_with_max_and_min_pixels(tiny_path, tmp_path, caplog):
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from captioner.backends.hf import has_pixel_budget, load_processor

    # Qwen2-VL's image processor (the PIL one: no torchvision here), saved as a checkpoint folder saves it
    Qwen2VLImageProcessorPil().save_pretrained(tmp_path)
    proc = load_processor(str(tmp_path), max_pixels=200704, min_pixels=3136)
    assert has_pixel_budget(proc) and (proc.size.longest_edge, proc.size.shortest_edge) == (200704, 3136)
    t, h, w = proc(images=[Image.new("RGB", (1280, 720))], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert h * w * 14 * 14 <= 200704 < 1280 * 720  # the bound decides the visual tokens
    assert load_processor(str(tmp_path)).size.longest_edge == 28 * 28 * 1280  # without them: its own default
    # LLaVA's CLIP processor has no pixel budget: max_pixels is the backend's own resize, min_pixels is ignored
    assert not has_pixel_budget(load_processor(tiny_path).image_processor)
    with caplog.at_level("WARNING", logger="captioner.backends.hf"):
        load_processor(tiny_path, min_pixels=64)
    assert "backend.min_pixels=64 is ignored" in caplog.text


def test_answers_cut_at_max_new_tokens_are_flagged(backend, tiny_path, monkeypatch):
    from captioner.backends.base import Answer, is_truncated

    reqs = [mixed_requests()[i] for i in (0, 2)]
    long = backend.generate_ids(reqs)  # 8 tokens each, no EOS among them (see the test above)
    short = HFBackend(tiny_path, max_new_tokens=3).generate(reqs)
    assert all(isinstance(a, Answer) and a.truncated for a in short)
    # make the first request's 3rd token an EOS: it now ends there, the other still runs to the limit
    eos = long[0][2]
    assert eos not in long[1]
    monkeypatch.setattr(backend.model.generation_config, "eos_token_id", eos)
    ids, cut = backend.generate_ids_and_stops(reqs)
    assert cut == [False, True] and len(ids[0]) == 3 and ids[1] == long[1]
    complete, cut_off = backend.generate(reqs)
    assert not is_truncated(complete) and is_truncated(cut_off)
    assert not is_truncated("a plain string") and repr(Answer("x", True)) == "Answer('x', truncated=True)"


def test_missing_checkpoint_and_bad_attention_name_the_key(tiny_path, tmp_path, monkeypatch):
    from captioner.checkpoints import CheckpointNotFoundError

    monkeypatch.chdir(tmp_path)
    # the path is checked before the device: the first thing to fix is the missing download
    with pytest.raises(CheckpointNotFoundError, match=r"backend.path='ckpts/qwen2.5-vl-7b' is not a local model "
                                                      r"folder.*\n    hf download Qwen/Qwen2.5-VL-7B-Instruct "
                                                      r"--local-dir ckpts/qwen2.5-vl-7b"):
        HFBackend("ckpts/qwen2.5-vl-7b", device="cuda")
    with pytest.raises(ValueError, match="backend.attn_implementation='nope' cannot be used"):
        HFBackend(tiny_path, attn_implementation="nope")
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        HFBackend(tiny_path, max_pixels=0)
