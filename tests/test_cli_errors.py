"""A user error in either CLI: one line naming the input on stderr, exit status 2, no traceback; -v re-raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from captioner.cli import main as captioner_main
from clipio.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ORACLE = str(ROOT / "captioner" / "presets" / "oracle.yaml")


def one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]  # progress bars may come first
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def test_captioner_missing_input_and_bad_config_key(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert captioner_main(["run", "--manifest", str(missing), "--out", str(tmp_path / "o.jsonl"),
                           "--config", ORACLE]) == 2
    assert str(missing) in one_error_line(capsys, "captioner run")
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend:\n  kind: oracle\n  temperture: 0.2\n")
    assert captioner_main(["recaption", "--config", str(bad), "a red circle"]) == 2
    assert "temperture" in one_error_line(capsys, "captioner recaption")


def test_captioner_verbose_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend:\n  kind: oracle\n  temperture: 0.2\n")
    with pytest.raises(ConfigError, match="temperture"):
        captioner_main(["-v", "recaption", "--config", str(bad), "a red circle"])


def test_captioner_filter_takes_caption_field(tmp_path, capsys):
    src = tmp_path / "m.jsonl"
    src.write_text('{"id": "c1", "video": "v.mp4", "status": "ok", "captions": {"dense": "x"}}\n')
    assert captioner_main(["filter", str(src), "--out", str(tmp_path / "k.jsonl"), "--caption-field", "short"]) == 2
    assert "'short'" in one_error_line(capsys, "captioner filter")


def test_t2v_user_errors_are_one_line(tmp_path, capsys):
    from t2v.cli import main as t2v_main

    assert t2v_main(["train", "--config", "tinny"]) == 2
    assert "presets: dit-b-256, tiny, wan-1.3b-finetune" in one_error_line(capsys, "t2v train")
    assert t2v_main(["compare", "--models", str(tmp_path), "--prompts", str(tmp_path / "p.jsonl"),
                     "--out", str(tmp_path / "o")]) == 2
    assert "p.jsonl" in one_error_line(capsys, "t2v compare")
    assert t2v_main(["train", "--config", "tiny", "train.mixed_precision=no"]) == 2  # YAML 1.1: no is false
    assert "train.mixed_precision='no'" in one_error_line(capsys, "t2v train")
    with pytest.raises(ConfigError):
        t2v_main(["-v", "train", "--config", "tinny"])


def test_generate_and_compare_default_to_the_models_sample_settings(tmp_path):
    from t2v.cli import sample_settings
    from t2v.config import load_config

    load_config("tiny", ["sample.steps=7", "sample.guidance=2.5"]).save(tmp_path / "t2v_config.yaml")
    assert sample_settings(tmp_path, None, None) == (7, 2.5)
    assert sample_settings(tmp_path, 3, None) == (3, 2.5) and sample_settings(tmp_path, None, 9.0) == (7, 9.0)
