"""Semantic-aware key-frame extraction on the real sample videos, on synthetic cuts, and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLE_VIDEOS

from captioner.cli import main as captioner_main
from captioner.embed import CLIPEmbedder, PixelEmbedder, build_embedder
from captioner.keyframes import candidate_indices, extract_keyframes
from clipio.video import open_video, write_mp4


@pytest.mark.parametrize("name", list(SAMPLE_VIDEOS))
def test_keyframes_of_sample_videos(sample_videos, name):
    with open_video(sample_videos[name]) as v:
        kfs = extract_keyframes(v, interval=0.5)
        info = v.info
    times = [kf.t for kf in kfs]
    assert times[0] == 0.0 and kfs[0].index == 0 and kfs[0].similarity is None
    assert all(a < b for a, b in zip(times, times[1:])), times
    assert times[-1] < info.duration
    assert all(kf.t == pytest.approx(kf.index / info.fps) for kf in kfs)  # real timestamps, not k × interval
    assert all(kf.similarity < 0.93 for kf in kfs[1:])
    for kf in kfs:
        assert kf.image.shape == (info.height, info.width, 3) and kf.image.dtype == np.uint8
        assert kf.image.flags.owndata  # a copy: no view keeps a whole decoded batch alive


def test_threshold_selects(sample_videos):
    with open_video(sample_videos["bigbuckbunny.mp4"]) as v:
        candidates, last = candidate_indices(v, 0.5)
        every = [kf.index for kf in extract_keyframes(v, interval=0.5, threshold=1.0)]
        some = [kf.index for kf in extract_keyframes(v, interval=0.5, threshold=0.93)]
        fewer = [kf.index for kf in extract_keyframes(v, interval=0.5, threshold=0.7)]
    assert len(candidates) == 11 and last == 131
    assert every[: len(candidates)] == candidates  # threshold 1: every candidate is kept
    # a lower threshold keeps fewer of the candidates (not nested sets: each is judged against the last kept)
    assert len(fewer) < len(some) < len(every) and set(fewer) | set(some) <= set(every)
    assert some[0] == fewer[0] == 0


def _scene(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random colour pattern (compresses well, so h264 keeps static frames static)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    return np.kron(coarse, np.ones((size // 4, size // 4, 1), np.uint8))  # (size, size, 3)


@pytest.mark.parametrize("last_scene, expected", [(1, [0, 20]), (2, [0, 20, 29])])
def test_static_then_cut_keeps_the_cut_and_the_new_last_frame(tmp_path, last_scene, expected):
    # 8 fps, 30 frames: scene 0 for frames 0-17 (static), scene 1 from 18; the last frame 29 is scene
    # `last_scene`. Candidates every 0.5 s are frames 0, 4, ..., 28: the cut is first seen at 20.
    frames = np.stack([_scene(0)] * 18 + [_scene(1)] * 11 + [_scene(last_scene)])
    path = write_mp4(tmp_path / "cut.mp4", frames, fps=8)
    kfs = extract_keyframes(path, interval=0.5)
    assert [kf.index for kf in kfs] == expected
    assert [kf.t for kf in kfs] == [i / 8 for i in expected]
    assert all(kf.similarity < 0.5 for kf in kfs[1:])  # real scene changes, far below the threshold


def test_only_candidate_frames_are_decoded(sample_videos):
    with open_video(sample_videos["bikes.mp4"]) as v:
        decoded: list[int] = []
        get_batch = v._b.get_batch

        def counting(indices):
            decoded.extend(indices)
            return get_batch(indices)

        v._b.get_batch = counting
        v._b.read_all = lambda: pytest.fail("read_all: the whole video was decoded")
        candidates, last = candidate_indices(v, 2.0)
        kfs = extract_keyframes(v, interval=2.0, batch=2)
    assert candidates == [0, 50, 100, 150, 200] and last == 249
    assert len(decoded) <= len(candidates) + 1 and sorted(decoded) == candidates + [last]
    assert [kf.index for kf in kfs] == candidates + [last]  # a fast-cut video: every candidate differs


def test_window_and_max_duration(sample_videos):
    with open_video(sample_videos["bikes.mp4"]) as v:
        kfs = extract_keyframes(v, interval=1.0, max_duration=3.0)
        assert [kf.index for kf in kfs][:3] == [0, 25, 50] and kfs[-1].index <= 74  # last frame before 3.0 s
        kfs = extract_keyframes(v, interval=1.0, start=2.0, end=4.0)
        assert kfs[0].t == 2.0 and all(2.0 <= kf.t < 4.0 for kf in kfs)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"interval": 0}, "interval 0"), ({"interval": float("nan")}, "interval nan"), ({"threshold": 0}, "threshold 0"),
     ({"threshold": 1.5}, "threshold 1.5"), ({"start": 99.0}, "start 99.0"), ({"start": 2.0, "end": 1.0}, "end 1.0"),
     ({"max_duration": -1.0}, "max_duration -1.0"), ({"batch": 0}, "batch 0")],
)
def test_bad_arguments(sample_videos, kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract_keyframes(sample_videos["carphone_pristine.mp4"], **kwargs)


def test_build_embedder_errors():
    assert isinstance(build_embedder("pixels"), PixelEmbedder)
    with pytest.raises(ValueError, match="unknown embedder 'dino'"):
        build_embedder("dino")
    with pytest.raises(ValueError, match="--clip-path"):
        build_embedder("clip")


def test_pixel_embedder_similarity():
    emb = PixelEmbedder()
    a, b = _scene(0, 64), _scene(1, 64)
    red, blue = np.full_like(a, (200, 0, 0)), np.full_like(a, (0, 0, 200))
    black, white = np.zeros_like(a), np.full_like(a, 255)
    e = emb.embed(np.stack([a, a // 2 + 60, b, red, blue, black, white]))
    assert e.dtype == np.float32 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.99  # same picture, dimmer: still the same scene
    assert abs(sim[0, 2]) < 0.5  # unrelated pictures: near 0, unlike raw RGB vectors (~0.8+)
    assert sim[3, 4] == pytest.approx(-0.5, abs=1e-3)  # colour is kept
    assert sim[5, 6] == pytest.approx(1.0) and abs(sim[0, 5]) < 1e-6  # flat frames: one axis


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8)
    path = tmp_path_factory.mktemp("clip")
    CLIPVisionModel(cfg).eval().save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_clip_embedder_is_the_cls_token(tiny_clip, sample_videos):
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModel

    with open_video(sample_videos["carphone_pristine.mp4"]) as v:
        frames = v.frames_at([0.0, 2.0, 3.9])
    emb = build_embedder("clip", path=tiny_clip)
    assert isinstance(emb, CLIPEmbedder)
    e = emb.embed(frames)
    assert e.shape == (3, 32) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)

    model, proc = CLIPVisionModel.from_pretrained(tiny_clip).eval(), CLIPImageProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        out = model(**proc(images=list(frames), return_tensors="pt"), output_hidden_states=True)
    cls = out.hidden_states[-1][:, 0].numpy()  # last hidden state, CLS token (before post_layernorm)
    assert np.allclose(e, cls / np.linalg.norm(cls, axis=1, keepdims=True), atol=1e-5)
    assert not np.allclose(e[0], e[1], atol=1e-3)

    kfs = extract_keyframes(sample_videos["carphone_pristine.mp4"], interval=1.0, threshold=1.0, embedder=emb)
    assert [kf.index for kf in kfs][:4] == [0, 30, 60, 90]


def test_cli_writes_files(tmp_path, sample_videos, capsys):
    out = tmp_path / "kf"
    rc = captioner_main(["keyframes", str(sample_videos["bikes.mp4"]), "--out", str(out), "--interval", "2"])
    assert rc == 0
    records = json.loads((out / "keyframes.json").read_text())
    assert [r["t"] for r in records] == [0.0, 2.0, 4.0, 6.0, 8.0, 9.96]
    assert records[0]["similarity"] is None and records[0]["file"] == "keyframe-000-0.00s.png"
    assert all((out / r["file"]).is_file() for r in records)
    from PIL import Image

    assert Image.open(out / "keyframe-005-9.96s.png").size == (640, 272)
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] > 6 * 160  # one row of six cells
    assert json.loads(capsys.readouterr().out)["count"] == 6


def test_clip_embedder_loads_the_vision_tower_of_a_full_clip_model(tmp_path, sample_videos):
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(1)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    full = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    full.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    with open_video(sample_videos["carphone_pristine.mp4"]) as v:
        frames = v.frames_at([0.0, 3.0])
    e = CLIPEmbedder(tmp_path).embed(frames)
    with torch.no_grad():
        cls = full.vision_model(**proc(images=list(frames), return_tensors="pt")).last_hidden_state[:, 0].numpy()
    assert np.allclose(e, cls / np.linalg.norm(cls, axis=1, keepdims=True), atol=1e-5)


# ---------------------------------------------------------------- decode size, variable frame rate


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_keyframes_are_decoded_at_the_size_the_backend_sees(sample_videos, backend):
    from captioner.config import load_captioner_config
    from captioner.diffsw import ClipTask, extract_job
    from captioner.embed import PixelEmbedder

    video = sample_videos["bigbuckbunny.mp4"]  # 1280 x 720
    task = ClipTask("bbb", video, "bbb.mp4")
    base = ["keyframes.interval=0.5", "keyframes.threshold=1.0", "keyframes.max_duration=1.0",
            f"run.video_backend={backend}"]
    for overrides, shape in [(["keyframes.max_side=320"], (180, 320, 3)),
                             # derived from the backend's pixel budget: 640 x 360 = 230400 pixels
                             (["backend.kind=openai", "backend.model=m", "backend.max_pixels=230400"], (360, 640, 3)),
                             (["keyframes.max_side=320", "backend.max_pixels=230400"], (180, 320, 3)),
                             ([], (720, 1280, 3))]:
        job = extract_job(task, load_captioner_config(None, base + overrides), PixelEmbedder())
        assert len(job.images) == 3 and {im.shape for im in job.images} == {shape}, overrides
        assert (job.info["width"], job.info["height"]) == (shape[1], shape[0])
    # the same bound when extract_keyframes opens the file itself
    kfs = extract_keyframes(video, interval=0.5, max_duration=1.0, max_side=320, backend=backend)
    assert {kf.image.shape for kf in kfs} == {(180, 320, 3)}
    with open_video(video) as v, pytest.raises(ValueError, match="open the reader with open_video"):
        extract_keyframes(v, max_side=320)


def test_oracle_preset_keyframes_are_unchanged(tmp_path):
    """synthworld's 64 px clips: the oracle preset sets no bound, and a bound never scales up."""
    from captioner.config import load_captioner_config
    from captioner.diffsw import ClipTask, extract_job
    from captioner.embed import PixelEmbedder

    frames = np.stack([_scene(k % 3) for k in range(16)])
    path = write_mp4(tmp_path / "syn.mp4", frames, fps=8)
    cfg = load_captioner_config("oracle")
    assert cfg.keyframes.max_side is None and cfg.backend.max_pixels is None
    for overrides in ([], ["keyframes.max_side=448"]):
        job = extract_job(ClipTask("c", path, "syn.mp4"), load_captioner_config("oracle", overrides), PixelEmbedder())
        assert {im.shape for im in job.images} == {(64, 64, 3)} and job.times[:3] == [0.0, 0.25, 0.5]


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_keyframe_times_of_a_variable_frame_rate_video_are_its_pts(tmp_path, backend):
    from vfr_video import VFR_PTS_MS, vfr_grey, write_vfr_mp4

    path = write_vfr_mp4(tmp_path / "vfr.mp4")
    kfs = extract_keyframes(path, interval=0.25, threshold=1.0, backend=backend)
    pts = [p / 1000 for p in VFR_PTS_MS]
    # candidates at 0, 0.25, ... 2.75 s land on the nearest shown frames; the last frame (2.5 s) closes the list
    assert [kf.index for kf in kfs] == [0, 3, 4, 5, 7, 8, 9]
    assert [kf.t for kf in kfs] == pytest.approx([pts[kf.index] for kf in kfs], abs=1e-6)  # the frames' real pts
    assert [round(float(kf.image.mean())) for kf in kfs] == pytest.approx([vfr_grey(kf.index) for kf in kfs], abs=2)
    with open_video(path, backend=backend) as v:
        container_fps = float(v._b.fps)  # the container's average rate: 8.43 fps here
    assert abs(kfs[3].t - 5 / container_fps) > 0.4  # what index / average fps would have said (0.59 s, not 1.0)


def test_cli_max_side(tmp_path, sample_videos, capsys):
    from PIL import Image

    out = tmp_path / "kf"
    assert captioner_main(["keyframes", str(sample_videos["bikes.mp4"]), "--out", str(out), "--interval", "5",
                           "--max-side", "320"]) == 0
    assert Image.open(out / "keyframe-000-0.00s.png").size == (320, 136)  # 640 x 272 halved
