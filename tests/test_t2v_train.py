"""The trainer end to end, in subprocesses as users run it: cache → train → checkpoints → resume →
2-process DDP → generate."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides
from safetensors.torch import load_file
from tensorboard.backend.event_processing import event_accumulator

from clipio.video import open_video
from t2v.models.backbone import T2VTransformer
from t2v.train import latest_checkpoint

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "t2v/presets/tiny.yaml")


def run(cmd: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    assert r.returncode == 0, f"{' '.join(cmd)}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-5000:]}"
    return r


def tensorboard_scalars(logs: Path) -> dict[str, list]:
    """Every scalar series (tag -> events) in a TensorBoard log folder."""
    out: dict[str, list] = {}
    for f in logs.rglob("events.out.tfevents.*"):
        ea = event_accumulator.EventAccumulator(str(f))
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out.setdefault(tag, []).extend(ea.Scalars(tag))
    return out


def transformer_weights(pipeline_dir: Path) -> dict:
    return load_file(str(next((pipeline_dir / "transformer").glob("*.safetensors"))))


@pytest.fixture(scope="module")
def trained(tiny_manifest, tmp_path_factory):
    """Cache, then 4 steps with EMA, checkpoints every 2 steps and validation samples."""
    out = tmp_path_factory.mktemp("train")
    ov = tiny_overrides(tiny_manifest, out, **{"train.ema_decay": 0.9,
                                                "train.validation_prompts": '["a red circle moves left"]'})
    run([str(BIN / "t2v"), "cache", "--config", TINY, *ov])
    r = run([sys.executable, "train_t2v.py", "--config", TINY, *ov])
    return out, ov, r


def test_training_run_writes_everything(trained):
    out, _, r = trained
    run_dir = out / "run"
    assert "cached latents" in r.stderr  # the cache built by `t2v cache` was used
    # ...so the text encoder encoded the validation prompt and the empty negative once and was let go; the
    # samples came from those kept states and the pipeline still holds a text encoder
    assert "text encoder: let go after encoding 2 prompts once" in r.stderr
    assert (run_dir / "pipeline" / "text_encoder").is_dir()
    assert (run_dir / "samples" / "final" / "sample-00.gif").is_file()
    card = (run_dir / "pipeline" / "README.md").read_text()  # a model card, as diffusers' scripts write
    assert card.startswith("---\nlibrary_name: diffusers\npipeline_tag: text-to-video\n")
    assert "trained from scratch on the `dense` captions of" in card and "- steps: 4 (batch 2" in card
    assert "ema_decay: 0.9" in card  # the run's config
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["world_size"] == 1 and summary["curriculum_complete"] is True
    assert math.isfinite(summary["final_loss"]) and 0 < summary["final_loss"] < 10
    assert "expected: 4 steps at " in r.stderr and "(no cap)" in r.stderr  # the expected time, up front
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    ckpt = run_dir / "checkpoints" / "step-000004"
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl",
                 "trainer_state.json", "config.yaml"):
        assert (ckpt / name).is_file(), name
    assert list(ckpt.glob("custom_checkpoint_*")), "EMA state is not in the checkpoint"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "pipeline" / "model_index.json").is_file()
    scalars = tensorboard_scalars(run_dir / "logs")
    for tag in ("loss", "lr", "samples_per_s", "samples_per_s_per_device", "tokens_per_s_per_device"):
        assert [e.step for e in scalars[tag]] == [1, 2, 3, 4], tag
    assert "mfu" not in scalars  # no peak known on CPU without train.peak_tflops
    gif = run_dir / "samples" / "final" / "sample-00.gif"
    with open_video(gif) as v:
        assert v.info.num_frames == 4
    assert (run_dir / "samples" / "final" / "contact_sheet.png").is_file()


def test_a_time_cap_inside_the_curriculum_waits_for_its_end(trained, tmp_path):
    """A cap passed at step 1 of a 6-step curriculum: training goes on to step 6, then stops there."""
    _, ov, _ = trained
    ov = [o for o in ov if not o.startswith(("train.output_dir=", "objective."))]
    r = run([str(BIN / "t2v"), "train", "--config", TINY, *ov, f"train.output_dir={tmp_path / 'run'}",
             "train.max_steps=12", "train.max_minutes=0.0001", "objective.pure_noise_steps=3",
             "objective.noise_ramp_steps=3"])
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["curriculum_complete"] is True
    assert r.stderr.count("training goes on until the curriculum ends") == 1 and "= 6)" in r.stderr
    assert "reached at step 6: stopping early" in r.stderr
    assert latest_checkpoint(tmp_path / "run").name == "step-000006"  # the stop is checkpointed


def test_resume_continues_the_same_run(trained, tiny_manifest, tmp_path):
    """2 steps, stop, resume to 4 == 4 steps straight (model, EMA, optimiser, RNG, data position)."""
    out, _, _ = trained
    ov = tiny_overrides(tiny_manifest, out, **{"train.ema_decay": 0.9, "train.output_dir": str(tmp_path / "r"),
                                                "train.validation_prompts": '["a red circle moves left"]'})
    run([sys.executable, "train_t2v.py", "--config", TINY, *ov, "train.max_steps=2"])
    r = run([sys.executable, "train_t2v.py", "--config", TINY, "--resume", "latest", *ov])
    assert "resumed from" in r.stderr and "at step 2" in r.stderr
    a = transformer_weights(out / "run" / "pipeline")
    b = transformer_weights(tmp_path / "r" / "pipeline")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() <= 1e-6, k
    # and the comparison can fail: a run with another seed ends elsewhere
    run([sys.executable, "train_t2v.py", "--config", TINY, *ov, "train.output_dir=" + str(tmp_path / "s"),
         "train.seed=5"])
    c = transformer_weights(tmp_path / "s" / "pipeline")
    assert max((a[k] - c[k]).abs().max() for k in a) > 1e-4


def test_a_non_finite_loss_stops_the_run_before_a_broken_checkpoint(tiny_manifest, tmp_path):
    import re

    ov = tiny_overrides(tiny_manifest, tmp_path, **{"train.max_steps": 12, "train.checkpoint_every": 1,
                                                    "train.log_every": 5, "optim.lr": 1e30,
                                                    "optim.max_grad_norm": 0})
    r = subprocess.run([sys.executable, "train_t2v.py", "--config", TINY, *ov], capture_output=True, text=True,
                       cwd=ROOT, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    found = re.search(r"training loss is (nan|inf|-inf) at step (\d+): stopping before a checkpoint", r.stderr)
    assert r.returncode != 0 and found, r.stderr[-3000:]
    bad = int(found.group(2))
    saved = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert saved == list(range(1, bad)), saved  # every step before it checkpointed (checkpoint_every=1), not it
    assert not (tmp_path / "run" / "pipeline").exists()


def test_report_to_wandb_logs_scalars_and_samples_offline(tiny_manifest, tmp_path):
    """train.report_to=wandb (offline: no account, no network): the run's scalars and validation sheet go to a
    W&B run folder inside the run folder, named after it."""
    ov = tiny_overrides(tiny_manifest, tmp_path, **{"train.report_to": "wandb", "train.max_steps": 2,
                                                    "train.validation_prompts": '["a red circle moves left"]',
                                                    "train.validate_every": 2})
    run([sys.executable, "train_t2v.py", "--config", TINY, *ov], env={"WANDB_MODE": "offline"})
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    assert list(runs[0].glob("run-*.wandb"))  # the run's history, synced later with `wandb sync`
    assert list((runs[0] / "files" / "media" / "images").glob("samples_*.png"))
    assert not (tmp_path / "run" / "logs").exists() or not list((tmp_path / "run" / "logs").rglob("events.*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_on_cpu(tiny_manifest, tmp_path):
    ov = tiny_overrides(tiny_manifest, tmp_path, **{"train.max_steps": 3, "train.checkpoint_every": 100,
                                                    "train.peak_tflops": 0.001})
    run([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
         "train_t2v.py", "--config", TINY, *ov], env={"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"})
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and "MULTI_CPU" in summary["distributed_type"]
    c0, c1 = summary["param_checksums"]
    assert c0 == c1, "parameters differ across ranks"
    assert (tmp_path / "run" / "pipeline" / "model_index.json").is_file()

    # MFU per device: 6·N·tokens/s of ONE device over one device's peak (samples of both ranks would give 2×)
    model = T2VTransformer.from_pretrained(tmp_path / "run" / "pipeline" / "transformer")
    n_params = sum(p.numel() for p in model.parameters())
    c = model.config
    tokens = model.tokens((model.in_channels, c.sample_frames, c.sample_size, c.sample_size))
    scalars = tensorboard_scalars(tmp_path / "run" / "logs")
    logged = {tag: scalars[tag][-1] for tag in ("samples_per_s", "samples_per_s_per_device",
                                                "tokens_per_s_per_device", "mfu")}
    assert all(e.step == 3 for e in logged.values())
    tp = summary["throughput"]
    for tag, e in logged.items():
        assert e.value == pytest.approx(tp[tag], rel=1e-5), tag  # the summary holds the last logged figures
    assert tp["samples_per_s_per_device"] == pytest.approx(tp["samples_per_s"] / 2)
    assert tp["tokens_per_s_per_device"] == pytest.approx(tp["samples_per_s_per_device"] * tokens)
    assert tp["mfu"] == pytest.approx(6 * n_params * tp["samples_per_s"] / 2 * tokens / 1e9)


def test_generate_cli(trained, tmp_path):
    out, _, _ = trained
    model = out / "run" / "pipeline"
    run([str(BIN / "t2v"), "generate", "--model", str(model), "--prompt", "a small red circle moves right",
         "--out", str(tmp_path / "one.gif"), "--steps", "2", "--seed", "3"])
    with open_video(tmp_path / "one.gif") as v:
        assert (v.info.num_frames, v.info.width) == (4, 32)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a blue square moves up\n\n" + "a long prompt " * 60 + "\n")
    r = run([str(BIN / "t2v"), "generate", "--model", str(model), "--prompts", str(prompts),
             "--out", str(tmp_path / "many"), "--steps", "2"])
    mp4s = sorted((tmp_path / "many").glob("*.mp4"))
    assert len(mp4s) == 2 and all(str(p) in r.stdout for p in mp4s)
    bad = subprocess.run([str(BIN / "t2v"), "generate", "--model", str(tmp_path), "--prompt", "x", "--out",
                          str(tmp_path / "x.mp4")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "not a pipeline folder" in bad.stderr


def test_pipeline_device_and_memory_options(trained, tmp_path, capsys):
    """--device picks where the pipeline runs (fp32 on the CPU; a CUDA device on a machine without one is a
    one-line error, as is --offload without a GPU); VAE slicing/tiling change memory use, not the video."""
    import numpy as np
    import torch

    from t2v.cli import main as t2v_main
    from t2v.generate import generate, load_pipeline

    out, _, _ = trained
    model = out / "run" / "pipeline"
    pipe = load_pipeline(model, "cpu", vae_slicing=True, vae_tiling=True)
    assert pipe.transformer.dtype == torch.float32 and pipe.vae.use_slicing and pipe.vae.use_tiling
    plain = generate(model, ["a red circle moves left"], tmp_path / "a.gif", steps=2, device="cpu")[0]
    low_mem = generate(model, ["a red circle moves left"], tmp_path / "b.gif", steps=2, device="cpu",
                       vae_slicing=True, vae_tiling=True)[0]
    with open_video(plain) as va, open_video(low_mem) as vb:
        assert np.array_equal(va.frames_at([0.0, 0.5]), vb.frames_at([0.0, 0.5]))
    if not torch.cuda.is_available():
        base = ["generate", "--model", str(model), "--prompt", "x", "--out", str(tmp_path / "x.gif")]
        assert t2v_main([*base, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
        assert t2v_main([*base, "--device", "cpu", "--offload"]) == 2
        assert "--offload" in capsys.readouterr().err


def test_generate_recaption_expands_a_short_prompt(trained, tmp_path):
    out, _, _ = trained
    r = run([str(BIN / "t2v"), "generate", "--model", str(out / "run" / "pipeline"), "--prompt",
             "a big red circle and a small blue square moving on a white background", "--recaption",
             "oracle", "--out", str(tmp_path / "r.gif"), "--steps", "2"])  # a captioner preset, by name
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("recaptioned: "))
    dense = line.removeprefix("recaptioned: ")
    assert "red circle" in dense and "blue square" in dense and " at " in dense.lower() and len(dense) > 150
    assert (tmp_path / "r.gif").is_file()


def test_compare_same_prompts_and_seeds_for_every_model(trained, tiny_manifest, tmp_path):
    """Every model gets the same seed per prompt: the same pipeline under two names must give byte-identical
    videos and zero differences (seeding per model, or state leaking from one model's run into the next, breaks
    it). Differences between genuinely different models: tests/test_compare_run.py."""
    out, _, _ = trained
    model = str(out / "run" / "pipeline")
    prompts = tmp_path / "p.jsonl"
    run([str(BIN / "t2v"), "prompts", "--out", str(prompts), "--num-prompts", "3", "--seconds", "2",
         "--train-manifest", str(tiny_manifest)])
    r = run([str(BIN / "t2v"), "compare", "--models", model, model, "--names", "a", "b", "--prompts", str(prompts),
             "--out", str(tmp_path / "cmp"), "--steps", "2", "--gallery", "2"])
    rep = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert "report.html" in r.stdout and (tmp_path / "cmp" / "report.html").is_file()
    assert [c["key"] for c in rep["categories"]][:7] == ["colour", "shape", "binding", "position", "direction", "events",
                                                        "count"]
    assert rep["metrics"]["a"] == rep["metrics"]["b"] and rep["metrics"]["a"]["colour"]["n"] == 3
    assert rep["differences"] and all(d["mean"] == 0 and d["lo"] == 0 and d["hi"] == 0 for d in rep["differences"])
    assert rep["reference"]["ceiling"]["colour"]["mean"] is not None
    assert any(n.startswith("Training: a 4 steps") for n in rep["notes"]), rep["notes"]
    gifs = sorted(p.name for p in (tmp_path / "cmp" / "gallery").glob("*.gif"))
    assert gifs == ["000-a.gif", "000-b.gif", "001-a.gif", "001-b.gif"]
    assert (tmp_path / "cmp" / "gallery" / "000-a.gif").read_bytes() == (tmp_path / "cmp" / "gallery" /
                                                                       "000-b.gif").read_bytes()
    card = (Path(model) / "README.md").read_text()  # the model card now carries the evaluation, once
    assert card.count("## Evaluation") == 1 and "| object colour |" in card and "t2v compare --models" in card
    assert "## Training config" in card


def test_experiment_runs_end_to_end_at_toy_scale(tmp_path):
    """`make experiment` wiring: captioner (oracle) → short and dense trainings, and a third arm on the captions of
    another captioner (here the oracle in fast mode) → compare (every pair) → report."""
    out = tmp_path / "exp"
    fast = tmp_path / "oracle-fast.yaml"
    fast.write_text("backend:\n  kind: oracle\nkeyframes:\n  interval: 0.5\n  threshold: 1.0\nrun:\n  mode: fast\n")
    r = run([str(BIN / "t2v"), "experiment", "--out", str(out), "--num-clips", "6", "--num-prompts", "2", "--vae-steps", "3",
             "--config", TINY, "--captioner", str(fast), "train.max_steps=2", "train.batch_size=2", "data.size=32",
             "data.num_frames=4", "model.num_layers=1", "train.checkpoint_every=100"])
    captions = [json.loads(line) for line in (out / "data" / "captions.jsonl").read_text().splitlines()]
    assert len(captions) == 6 and all(c["meta"]["captioner"] == "oracle" for c in captions)
    for field in ("short", "dense"):
        cfg = (out / field / "pipeline" / "t2v_config.yaml").read_text()
        assert f"caption_field: {field}" in cfg
    learned = [json.loads(line) for line in (out / "data" / "captions-learned.jsonl").read_text().splitlines()]
    assert len(learned) == 6 and all(c["meta"]["mode"] == "fast" for c in learned)
    assert "captions-learned.jsonl" in (out / "learned" / "pipeline" / "t2v_config.yaml").read_text()
    rep = json.loads((out / "report" / "report.json").read_text())
    assert [m["name"] for m in rep["models"]] == ["short", "dense", "learned"]
    assert [m["caption_field"] for m in rep["models"]] == ["short", "dense", "dense"]
    assert {(d["a"], d["b"]) for d in rep["differences"]} == {("short", "dense"), ("short", "learned"),
                                                              ("dense", "learned")}
    assert (out / "report" / "report.html").is_file() and "report.html" in r.stdout


def test_demo_runs_end_to_end_at_toy_scale_and_ends_with_its_report(tmp_path):
    out = tmp_path / "demo"
    r = run([str(BIN / "t2v"), "demo", "--out", str(out), "--num-clips", "6", "--num-prompts", "2", "--vae-steps", "3",
             "--holdout-combos", "6", "--config", TINY, "train.max_steps=2", "train.batch_size=2", "data.size=32", "data.num_frames=4",
             "model.num_layers=1", "train.checkpoint_every=100"])
    summary = (out / "summary.md").read_text()
    assert "report.html" in summary and "| object colour |" in summary and "ceiling" in summary
    assert "(2 of 2 steps in" in summary and "trained here)" in summary  # --vae-steps: its own VAE, not the preset's
    assert json.loads((out / "vae" / "train_vae.json").read_text())["steps"] == 3
    assert "training ended at step 2, inside the 900-step noise-level curriculum" in summary  # the preset's 500 + 400
    rep = json.loads((out / "report" / "report.json").read_text())
    assert [m["name"] for m in rep["models"]] == ["demo"] and rep["metrics"]["demo"]["colour"]["n"] == 2
    assert len(list((out / "videos").glob("*.mp4"))) == 4 and "# dense-t2v demo" in r.stdout
    assert (out / "videos" / "contact_sheet.png").is_file() and "expected about" in r.stderr
    # --holdout-combos: the combinations are recorded, absent from the clips, and scored apart on scenes holding them
    from synthworld.dataset import combinations
    from synthworld.spec import SceneSpec

    recs = [json.loads(ln) for ln in (out / "data" / "manifest.jsonl").read_text().splitlines()]
    held = set(recs[0]["meta"]["world"]["holdout"])
    assert len(held) == 6 and not any(set(combinations(SceneSpec.from_dict(r["meta"]["scene"]))) & held for r in recs)
    assert "combinations never trained on" in summary and ", ".join(sorted(held)) in summary
    unseen = [json.loads(ln) for ln in (out / "prompts-heldout-unseen-combos.jsonl").read_text().splitlines()]
    assert len(unseen) == 2 and all(set(combinations(SceneSpec.from_dict(p["scene"]))) & held for p in unseen)
    assert (out / "report-unseen-combos" / "report.html").is_file()
