"""bench/oracle_captions.py at toy size: the README's oracle-caption figures come from this script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import oracle_captions  # noqa: E402


def test_oracle_caption_bench_counts_events(tmp_path):
    res = oracle_captions.main(["--clips-full", "4", "--clips-demo", "3", "--seed", "5",
                                "--out", str(tmp_path / "o.json")])
    assert json.loads((tmp_path / "o.json").read_text()) == res
    full, demo, fast = res["rows"]
    assert (full["mode"], demo["mode"], fast["mode"]) == ("diffsw", "diffsw", "fast")
    assert all(r["ok"] == r["clips"] and 0 < r["events_named"] <= r["events"] for r in res["rows"])
    assert full["events_named"] == full["events"]  # DiffSW names every event (as the captioner tests assert)
    assert demo["events"] == 3  # one move per demo-world clip
