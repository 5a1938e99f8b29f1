"""Installed, not only editable: ``pip install .`` into a fresh venv, then the CLIs from another folder.

The new venv sees the project venv's third-party packages through a ``.pth`` line (so nothing is
downloaded), but not its editable install of this project: ``t2v``/``captioner`` must come from the
built wheel, with their presets and prompts as package data, and nothing may reach into the source
tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-5000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = Path(sh([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env_dir).stdout.strip())
    (site / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # third-party packages only
    src = tmp_path_factory.mktemp("src") / "dense-t2v"  # a copy: building must not leave build/ in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".ruff_cache"))
    sh([str(py), "-m", "pip", "install", "--quiet", "--no-deps", str(src)], env_dir)
    return env_dir


def test_the_wheel_is_what_runs(installed, tmp_path):
    r = sh([str(installed / "bin" / "python"), "-c",
            "import t2v, captioner, clipio, synthworld; print(t2v.__file__, captioner.__file__)"], tmp_path)
    assert str(ROOT) not in r.stdout and str(installed) in r.stdout


def test_installed_clis_find_their_presets_and_prompts(installed, tmp_path):
    bin_ = installed / "bin"
    assert "--num-prompts" in sh([str(bin_ / "t2v"), "experiment", "--help"], tmp_path).stdout
    # captioner run with a shipped preset, by name, on a rendered synthworld set
    sh([str(bin_ / "t2v"), "synth", "--out", "syn", "--num-clips", "2", "--size", "32", "--no-sheet"], tmp_path)
    sh([str(bin_ / "captioner"), "run", "--manifest", "syn/manifest.jsonl", "--out", "cap.jsonl",
        "--config", "oracle", "--quiet"], tmp_path)
    recs = [json.loads(line) for line in (tmp_path / "cap.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(r["status"] == "ok" and r["captions"]["dense"] for r in recs)
    # the demo at toy scale, with its default preset and the VAE packaged with it
    sh([str(bin_ / "t2v"), "demo", "--out", "demo", "--num-clips", "6", "--num-prompts", "2",
        "train.max_steps=2", "train.batch_size=2", "data.size=32", "data.num_frames=4", "model.num_layers=1",
        "train.checkpoint_every=100"], tmp_path)
    assert (tmp_path / "demo" / "report" / "report.html").is_file() and not (tmp_path / "demo" / "vae").exists()
    assert "- VAE: `synthworld-48px` (reconstruction PSNR 3" in (tmp_path / "demo" / "summary.md").read_text()

