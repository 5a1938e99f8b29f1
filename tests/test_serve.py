"""The web demos, used as a person (or a script) would: ``t2v serve`` and ``captioner serve`` start on a free local
port and are driven with gradio_client (a generation from two models, re-captioning, a caption round trip, bad
input), and in headless Chromium (scripts/app_screenshot.py: the pages show their controls and the results)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipio.app import free_port
from clipio.manifest import read_manifest, validate_record
from clipio.video import open_video
from synthworld.spec import SHAPES

ROOT = Path(__file__).resolve().parents[1]
# more tokens than the tiny pipeline's 16-token text window: encoded in several windows, never cut
LONG_PROMPT = ("At the start, a plain black background shows a big orange circle in the top-left corner. "
               "Immediately, the orange circle begins to move down quickly. By the end of the clip, the orange "
               "circle is still moving down in the top-left corner.")


def frames_of(path: str | Path) -> np.ndarray:
    with open_video(path) as v:
        return v.read_all()  # (F, H, W, 3)


@pytest.fixture(scope="module")
def pipeline_dir(minilm, tmp_path_factory) -> Path:
    """A tiny random TextToVideoPipeline folder (32 px, 4 frames, a 16-token text window)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2v.models.backbone import T2VTransformer
    from t2v.models.vae import build_tiny_kl
    from t2v.pipeline import TextToVideoPipeline

    torch.manual_seed(0)
    pipe = TextToVideoPipeline(build_tiny_kl(4, [8, 16], 32), minilm.model, minilm.tokenizer,
                               T2VTransformer.build("wan", 4, minilm.dim, 1, 2, 16, 2.0, [1, 2, 2], 4, 16),
                               FlowMatchEulerDiscreteScheduler(), text_window=16)
    out = tmp_path_factory.mktemp("serve") / "pipeline"
    pipe.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """One synthworld clip (48 px, 8 fps, 2 s) of the demo's world."""
    from synthworld.dataset import DEMO_WORLD, write_synth_dataset

    out = tmp_path_factory.mktemp("clip")
    manifest = write_synth_dataset(out, 1, seed=5, size=48, fps=8.0, seconds=2.0, world=DEMO_WORLD, workers=1,
                                   progress=False).manifest
    return out / read_manifest(manifest)[0]["video"]


@pytest.fixture(scope="module")
def t2v_app(pipeline_dir, tmp_path_factory):
    """``t2v serve`` with the same model twice (as the short- and dense-caption models), and a client."""
    from gradio_client import Client

    from t2v.serve import serve

    url, page = serve([pipeline_dir, pipeline_dir], names=["short", "dense"], port=free_port(), block=False)
    yield Client(url, verbose=False, analytics_enabled=False, download_files=tmp_path_factory.mktemp("t2v-dl"))
    page.close()


@pytest.fixture(scope="module")
def captioner_app(tmp_path_factory):
    from gradio_client import Client

    from captioner.serve import serve

    url, page = serve("oracle", port=free_port(), block=False)
    yield Client(url, verbose=False, analytics_enabled=False, download_files=tmp_path_factory.mktemp("cap-dl"))
    page.close()


# ----------------------------------------------------------------------------- t2v serve
def test_t2v_generates_each_model_from_the_same_seed_as_t2v_generate(t2v_app, pipeline_dir, tmp_path):
    from t2v.generate import generate

    sent, status, short_mp4, short_files, dense_mp4, dense_files = t2v_app.predict(
        LONG_PROMPT, "", 2, 3.0, 7, 6, False, "oracle", api_name="/generate")
    assert sent == LONG_PROMPT and "2 videos of 6 frames, seed 7" in status
    short, dense = frames_of(short_mp4), frames_of(dense_mp4)
    assert short.shape == (6, 32, 32, 3)  # the frame count asked for, not the 4 it was trained on
    np.testing.assert_array_equal(short, dense)  # one seed for both models (here the same weights)
    assert sorted(Path(f).suffix for f in short_files) == [".gif", ".mp4"]
    assert frames_of(next(f for f in short_files if f.endswith(".gif"))).shape[0] == 6
    # the same video `t2v generate` makes from this seed
    cli = generate(pipeline_dir, [LONG_PROMPT], tmp_path / "cli.mp4", num_frames=6, steps=2, guidance=3.0, seed=7)[0]
    np.testing.assert_array_equal(frames_of(cli), short)
    other = t2v_app.predict(LONG_PROMPT, "", 2, 3.0, 8, 6, False, "oracle", api_name="/generate")
    assert not np.array_equal(frames_of(other[2]), short)


def test_t2v_shows_the_token_count_of_a_long_prompt_and_never_cuts_it(t2v_app, minilm):
    n = len(minilm.tokenizer(LONG_PROMPT, add_special_tokens=False)["input_ids"])
    assert n > 16
    shown = t2v_app.predict(LONG_PROMPT, api_name="/count_tokens")
    windows = -(-n // 14)  # 16-token windows hold 14 prompt tokens besides [CLS] and [SEP]
    assert shown == f"**{n} tokens** (BertTokenizer): encoded in {windows} windows of 14, never cut"


def test_t2v_recaption_shows_the_rewritten_prompt_before_the_videos(t2v_app, pipeline_dir):
    from t2v.generate import recaption_prompts

    job = t2v_app.submit("a big orange circle moving", "", 2, 3.0, 0, 4, True, "oracle", api_name="/generate")
    final = job.result()
    first = job.outputs()[0]
    expected = recaption_prompts(pipeline_dir, ["a big orange circle moving"], "oracle", 4)[0]
    assert first[0] == expected != "a big orange circle moving" and "orange circle" in expected
    assert "re-captioned by oracle" in first[1] and first[2] == {"__type__": "update"}  # no video yet
    assert final[0] == expected and frames_of(final[2]).shape[0] == 4


@pytest.mark.parametrize("prompt, frames, steps, message", [
    ("", 4, 2, "Prompt: empty"),
    ("   ", 4, 2, "Prompt: empty"),
    ("a red circle", 100000, 2, "Frames: 100000 is not a whole number from 1 to 16"),
    ("a red circle", 0, 2, "Frames: 0 is not a whole number from 1 to 16"),
    ("a red circle", 4, 2.5, "Steps: 2.5 is not a whole number from 1 to 200"),
])
def test_t2v_bad_input_is_a_message_naming_it(t2v_app, prompt, frames, steps, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        t2v_app.predict(prompt, "", steps, 3.0, 0, frames, False, "oracle", api_name="/generate")
    assert str(e.value).startswith(message) and "Traceback" not in str(e.value)


@pytest.fixture(scope="module")
def t2v_demo(pipeline_dir):
    """The t2v app's logic without the page."""
    from t2v.serve import T2VDemo, load_models

    return T2VDemo(load_models([pipeline_dir, pipeline_dir], ["a", "b"]), {"oracle": "oracle"})


def test_t2v_serve_progress_reports_every_step_of_every_model(t2v_demo):
    seen = []
    t2v_demo.generate("a red circle", None, 3, 1.0, 0, 4, on_step=lambda k, i, n: seen.append((k, i, n)))
    assert seen == [(k, i, 3) for k in (0, 1) for i in range(3)]


@pytest.mark.parametrize("steps, guidance, seed, frames, message", [
    (float("nan"), 3.0, 0, 4, "Steps: nan is not a number"),
    (2, float("inf"), 0, 4, "Guidance: inf is not a number"),
    (2, 3.0, 0, float("inf"), "Frames: inf is not a number"),
    (2, 3.0, 2**64, 4, "Seed: 18446744073709551616 is not a whole number from 0 to 2**63 - 1"),
])
def test_t2v_non_numbers_and_huge_seeds_are_named(t2v_demo, steps, guidance, seed, frames, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        t2v_demo.check("a red circle", steps, guidance, seed, frames)


def test_t2v_max_frames_below_one_is_refused_and_recaptioning_loads_its_captioner_once(t2v_demo, pipeline_dir,
                                                                                        monkeypatch):
    from t2v.serve import T2VDemo, load_models

    with pytest.raises(ValueError, match=r"^--max-frames: 0 is not a frame count >= 1"):
        T2VDemo(load_models([pipeline_dir], ["a"]), {"oracle": "oracle"}, max_frames=0)
    import captioner.config

    built = []
    real = captioner.config.build_backend
    monkeypatch.setattr(captioner.config, "build_backend", lambda cfg: built.append(cfg) or real(cfg))
    first = t2v_demo.recaption("a big orange circle moving", "oracle", 4)
    assert t2v_demo.recaption("a big orange circle moving", "oracle", 4) == first and len(built) == 1


def test_t2v_frames_suit_a_vae_that_compresses_time(t2v_demo, monkeypatch):
    assert t2v_demo.check("a red circle", 2, 3.0, 0, 6) == (2, 0, 6)
    monkeypatch.setattr(t2v_demo.models[1].pipe.video_vae, "temporal_factor", 4)  # as Wan's VAE
    with pytest.raises(ValueError, match=r"^Frames: 6: b's VAE makes 1 \+ a multiple of 4 frames \(e.g. 5 or 9\)"):
        t2v_demo.check("a red circle", 2, 3.0, 0, 6)
    assert t2v_demo.check("a red circle", 2, 3.0, 0, 9) == (2, 0, 9)


# ----------------------------------------------------------------------------- captioner serve
def test_captioner_shows_keyframes_then_each_caption_as_it_arrives_then_the_record(captioner_app, clip, tmp_path):
    from gradio_client import handle_file

    from captioner.config import load_captioner_config
    from captioner.run import run_captioner, tasks_from_videos

    job = captioner_app.submit(handle_file(str(clip)), False, api_name="/caption")
    gallery, table, dense, short, record_file, status = job.result()
    steps = job.outputs()
    # 1. the key-frames with their times come first, before any caption
    times = [float(g["caption"].removesuffix(" s")) for g in steps[0][0]]
    assert times == sorted(times) and times[0] == 0.0 and len(times) > 2
    assert all(row[1] == "" for row in steps[0][1]["data"]) and steps[0][2] == ""
    # 2. then one more differential caption per update
    counts = [sum(1 for row in s[1]["data"] if row[1]) for s in steps[1:]]
    assert counts[:len(times)] == list(range(1, len(times) + 1))
    # 3. then the dense and short caption, and the record: the manifest record `captioner run` writes
    rec = read_manifest(record_file, strict=True)
    assert len(rec) == 1 and validate_record(rec[0])["status"] == "ok"
    rec = rec[0]
    assert rec["captions"] == {"dense": dense, "short": short} and dense and short
    assert [k["t"] for k in rec["keyframes"]] == pytest.approx(times, abs=0.006)
    assert [k["caption"] for k in rec["keyframes"]] == [row[1] for row in table["data"]]
    assert f"{len(times)} key-frames, {len(times)} differential captions" in status
    out = tmp_path / "run.jsonl"
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / rec["video"]).symlink_to(clip)
    run_captioner(load_captioner_config("oracle"), tasks_from_videos(tmp_path / "videos", out), out, progress=False)
    ran = read_manifest(out)[0]
    assert ran["captions"] == rec["captions"] and ran["keyframes"] == rec["keyframes"]


def test_captioner_fast_mode(captioner_app, clip):
    from gradio_client import handle_file

    _, table, dense, short, record_file, _ = captioner_app.predict(handle_file(str(clip)), True, api_name="/caption")
    rec = read_manifest(record_file)[0]
    assert rec["meta"]["mode"] == "fast" and rec["captions"] == {"dense": dense, "short": short} and dense
    assert all(k["caption"] is None for k in rec["keyframes"]) and all(row[1] == "" for row in table["data"])


def test_captioner_bad_input_is_a_message_naming_it(captioner_app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="^Video: none given"):
        captioner_app.predict(None, False, api_name="/caption")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    with pytest.raises(AppError) as e:
        captioner_app.predict(handle_file(str(notes)), False, api_name="/caption")
    assert str(e.value).startswith("Video: notes.txt is not a video this captioner can read")
    assert str(tmp_path) not in str(e.value) and "Traceback" not in str(e.value)


# ----------------------------------------------------------------------------- in the browser
def test_pages_in_headless_chromium_show_the_controls_and_the_results(pipeline_dir, clip, tmp_path):
    """What `make app-screenshot` does, on the tiny model: Chromium types, clicks and uploads; the screenshots are
    checked through the pages' text, the decoded videos and the pixels."""
    from PIL import Image

    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "app_screenshot.py"), "--model", str(pipeline_dir),
                        str(pipeline_dir), "--names", "short", "dense", "--clip", str(clip), "--out", str(tmp_path),
                        "--prompt", LONG_PROMPT, "--check-errors", "--report", str(tmp_path / "shown.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    shown = json.loads((tmp_path / "shown.json").read_text())
    t2v, cap = shown["t2v"], shown["captioner"]
    for label in ("Prompt", "tokens", "never cut", "Negative prompt", "Steps", "Guidance", "Seed", "Frames",
                  "Re-caption my prompt", "Captioner", "Generate", "Prompt sent to the model",
                  "2 videos of 4 frames, seed 0", "short: mp4 and gif", "dense: mp4 and gif", ".gif"):
        assert label in t2v["text"], label
    assert t2v["videos"] == [[32, 32], [32, 32]]  # Chromium decoded a frame of both videos
    assert t2v["sent_prompt"] == LONG_PROMPT
    assert any(p.startswith("short: step") for p in t2v["progress"]) and any(p.startswith("dense: step") for p in t2v["progress"])
    assert "Prompt: empty" in t2v["errors"]["empty_prompt"]
    assert "Frames: 100000 is not a whole number" in t2v["errors"]["too_many_frames"]
    for label in ("Video", "Fast mode", "Caption", "Key-frames", "0.00 s", "Differential captions", "Dense caption",
                  "Short caption", "Record (manifest JSON Lines)", ".jsonl", "dense and short caption in"):
        assert label in cap["text"], label
    assert any(shape in cap["dense"] for shape in SHAPES) and any(shape in cap["short"] for shape in SHAPES)
    assert cap["keyframes"] >= 3
    assert "Video: none given" in cap["errors"]["no_video"]
    assert "Video: notes.mp4 is not a video" in cap["errors"]["not_a_video"]
    for name in ("app-t2v.png", "app-captioner.png"):
        img = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert img.shape[1] == 1280 and img.shape[0] > 900  # the whole page
        assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 500, name  # not blank


# ----------------------------------------------------------------------------- command lines
def test_serve_user_errors_are_one_line(tmp_path, capsys):
    from captioner.cli import main as captioner_main
    from t2v.cli import main as t2v_main

    assert t2v_main(["serve", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("t2v serve: error:") and "is not a pipeline folder" in err and "Traceback" not in err
    assert captioner_main(["serve", "--config", "no-such-preset"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("captioner serve: error:") and "no-such-preset" in err and "Traceback" not in err


def test_the_packages_import_without_gradio():
    code = ("import sys; sys.modules['gradio'] = None\n"
            "import t2v.serve, captioner.serve, t2v.cli, captioner.cli\n"
            "from clipio.app import import_gradio\n"
            "try:\n    import_gradio()\nexcept ImportError as e:\n    print(e)\n"
            "print('rc', t2v.cli.main(['serve', '--model', 'no-such-folder']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "pip install" in r.stdout and "[app]" in r.stdout, r.stderr
    # the CLI says it in one line, exit status 2
    assert "rc 2" in r.stdout and "t2v serve: error: the web demos need Gradio" in r.stderr
    assert "Traceback" not in r.stderr
