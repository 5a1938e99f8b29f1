"""Every shipped captioner preset loads offline from local folders, and a model that is neither a local
folder nor reachable on the Hub gives one clear error naming the config key, the path and the download."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioner.checkpoints import CheckpointNotFoundError
from captioner.config import build_backend, load_captioner_config
from captioner.embed import CLIPEmbedder, PixelEmbedder, build_embedder

PRESETS = Path(__file__).resolve().parents[1] / "captioner" / "presets"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working directory: the presets' relative ckpts/ and runs/ folders are not there yet."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _embedder(cfg):
    kc = cfg.keyframes
    return build_embedder(kc.embedder, kc.clip_path, device=kc.device)


def test_every_preset_is_covered_here():
    assert {p.stem for p in PRESETS.glob("*.yaml")} == {"oracle", "tiny-local", "qwen2.5-vl-7b", "openai",
                                                        "mini-fast", "mini-diffsw"}


@pytest.mark.parametrize("name", ["mini-fast", "mini-diffsw"])
def test_the_miniature_presets_say_how_to_make_their_model(workdir, name):
    """They name the trained miniature ShareCaptioner (`make captioner`; built and tested in test_captioner_train)."""
    cfg = load_captioner_config(name)
    assert cfg.run.prompts == "compact" and cfg.backend.kind == "hf"
    with pytest.raises(CheckpointNotFoundError, match="make captioner"):
        build_backend(cfg.backend)


def test_oracle_builds_offline(workdir):
    cfg = load_captioner_config(PRESETS / "oracle.yaml")
    assert build_backend(cfg.backend).name == "oracle" and isinstance(_embedder(cfg), PixelEmbedder)


def test_tiny_local_says_how_to_make_its_folder_then_loads_it(workdir):
    from captioner.cli import main

    cfg = load_captioner_config(PRESETS / "tiny-local.yaml")
    with pytest.raises(CheckpointNotFoundError) as e:
        build_backend(cfg.backend)
    msg = str(e.value)
    assert "backend.path='runs/tiny-vlm'" in msg and "captioner tiny-vlm --out runs/tiny-vlm" in msg
    assert main(["tiny-vlm", "--out", "runs/tiny-vlm"]) == 0  # what the message says to run
    assert build_backend(cfg.backend).name == "hf"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, Path]:
    """Tiny local models in the folders qwen2.5-vl-7b.yaml names: a random LLaVA and a random CLIP."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from captioner.backends.tiny_vlm import build_tiny_llava

    root = tmp_path_factory.mktemp("ckpts")
    vlm = build_tiny_llava(root / "ckpts" / "qwen2.5-vl-7b")
    clip = root / "ckpts" / "clip-vit-large-patch14-336"
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(clip)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
    return {"root": root, "vlm": vlm, "clip": clip}


def test_qwen_preset_names_both_downloads_then_loads_local_folders(workdir, stand_ins, monkeypatch):
    cfg = load_captioner_config(PRESETS / "qwen2.5-vl-7b.yaml")
    assert (cfg.backend.path, cfg.keyframes.clip_path) == ("ckpts/qwen2.5-vl-7b", "ckpts/clip-vit-large-patch14-336")
    # 1. Nothing downloaded: one clear error each, before anything else (the preset's device is cuda)
    with pytest.raises(CheckpointNotFoundError) as e:
        build_backend(cfg.backend)
    assert "backend.path='ckpts/qwen2.5-vl-7b' is not a local model folder" in str(e.value)
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir ckpts/qwen2.5-vl-7b" in str(e.value)
    with pytest.raises(CheckpointNotFoundError) as e:
        _embedder(cfg)
    assert "keyframes.clip_path='ckpts/clip-vit-large-patch14-336'" in str(e.value)
    assert "hf download openai/clip-vit-large-patch14-336 --local-dir ckpts/clip-vit-large-patch14-336" in str(e.value)

    # 2. A hub id without a hub (HF_HUB_OFFLINE=1, as in every test): the same one error, saying why
    hub = load_captioner_config(PRESETS / "qwen2.5-vl-7b.yaml",
                                ["backend.path=Qwen/Qwen2.5-VL-7B-Instruct",
                                 "keyframes.clip_path=openai/clip-vit-large-patch14-336"])
    for build, key in [(lambda: build_backend(hub.backend), "backend.path"),
                       (lambda: _embedder(hub), "keyframes.clip_path")]:
        with pytest.raises(CheckpointNotFoundError) as e:
            build()
        msg = str(e.value)
        assert msg.startswith(f"{key}=") and "nor reachable on the Hugging Face Hub" in msg and "HF_HUB_OFFLINE" in msg
        assert "hf download " in msg and "--local-dir ckpts/" in msg

    # 3. With the folders in place (tiny stand-ins, on CPU) the preset builds as shipped otherwise
    monkeypatch.chdir(stand_ins["root"])
    cfg = load_captioner_config(PRESETS / "qwen2.5-vl-7b.yaml", ["backend.device=cpu", "backend.dtype=float32",
                                                                  "keyframes.device=cpu"])
    backend = build_backend(cfg.backend)
    assert backend.max_pixels == 1003520 and backend.model.config._attn_implementation == "sdpa"
    assert isinstance(_embedder(cfg), CLIPEmbedder)


def test_openai_preset_builds_with_a_key_and_says_which_variable_without(workdir, monkeypatch):
    cfg = load_captioner_config(PRESETS / "openai.yaml")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="api_key_env: the environment variable 'OPENAI_API_KEY' is not set"):
        build_backend(cfg.backend)
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")
    backend = build_backend(cfg.backend)  # no request is sent until generate()
    assert backend.name == "openai" and backend.max_pixels == 1003520 and isinstance(_embedder(cfg), PixelEmbedder)
    backend.close()
