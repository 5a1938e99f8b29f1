"""One manifest, one writer; failed clips retried: ``captioner run --retry-errors`` appends a new record
for each id whose last record is an error (readers take the last record per id), and a second run on
the same output while the first still writes it refuses to start, naming the lock holder."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from captioner.backends.oracle import OracleBackend
from captioner.config import load_captioner_config
from captioner.run import iter_tasks_from_manifest, run_captioner, shard, tasks_from_manifest
from clipio.manifest import ManifestLockedError, ManifestWriter, iter_latest, iter_manifest, read_manifest
from synthworld.dataset import write_synth_dataset

ORACLE = Path(__file__).resolve().parents[1] / "captioner" / "presets" / "oracle.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, 12, seed=8, size=48, fps=8.0, progress=False)
    return out / "manifest.jsonl"


class FailsTheFirstTime:
    """The oracle, except that its first batch fails (a VLM server that was not up yet)."""

    name = "oracle"

    def __init__(self):
        self.inner, self.calls = OracleBackend(), 0

    def generate(self, requests):
        self.calls += 1
        if self.calls == 1:
            return [ConnectionError("server not up yet") for _ in requests]
        return self.inner.generate(requests)


def test_retry_errors_recaptions_only_the_failed_ids(synth, tmp_path):
    cfg = load_captioner_config(ORACLE, ["run.active_clips=2"])
    out = tmp_path / "c.jsonl"
    tasks = tasks_from_manifest(synth, out)[:5]
    first = run_captioner(cfg, tasks, out, backend=FailsTheFirstTime(), progress=False)
    assert (first.ok, first.error) == (3, 2)  # the first batch held the first step of two clips
    failed = {r["id"] for r in read_manifest(out) if r["status"] == "error"}
    again = run_captioner(cfg, tasks, out, backend=OracleBackend(), progress=False)
    assert (again.ok, again.error, again.skipped) == (0, 0, 5)  # without the flag an error is done
    retried = run_captioner(cfg, tasks, out, backend=OracleBackend(), progress=False, retry_errors=True)
    assert (retried.ok, retried.error, retried.skipped, retried.retried) == (2, 0, 3, 2)
    lines = Counter(r["id"] for r in iter_manifest(out))
    assert sum(lines.values()) == 7 and {i for i, n in lines.items() if n == 2} == failed  # appended, not rewritten
    latest = read_manifest(out)
    assert len(latest) == 5 and all(r["status"] == "ok" for r in latest)  # the last record per id counts
    assert [r["id"] for r in latest] == [t.id for t in tasks]  # in the order ids first appear
    with ManifestWriter(out) as w:
        assert w.error_ids == set() and w.done_ids == {t.id for t in tasks}
    # streamed (the CLI's way over a corpus manifest): the same last records, in the order of their last lines
    streamed = list(iter_latest(out))
    assert sorted(r["id"] for r in streamed) == sorted(r["id"] for r in latest) and all(r["status"] == "ok" for r in streamed)
    assert [t.id for t in iter_tasks_from_manifest(out, out)] == [r["id"] for r in streamed]
    lazy = shard(iter_tasks_from_manifest(out, out), 2, 1)
    assert not isinstance(lazy, list) and [t.id for t in lazy] == [t.id for t in shard(tasks_from_manifest(out, out), 2, 1)]


def test_a_second_writer_is_refused_and_a_killed_ones_lock_does_not_block(tmp_path):
    out = tmp_path / "m.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import time
from clipio.manifest import ManifestWriter
w = ManifestWriter({str(out)!r})
print('locked', flush=True)
time.sleep(120)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ManifestLockedError, match=rf"pid {holder.pid} on .* since"):
            ManifestWriter(out)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the OS drops the lock
        holder.wait()
    with ManifestWriter(out) as w:  # the resume is not blocked by a stale lock
        w.write({"id": "a", "video": "a.mp4", "status": "error", "error": "x"})
    with ManifestWriter(out):  # and a closed writer lets the next one in
        pass


def test_two_captioner_runs_on_one_output_write_every_clip_once(synth, tmp_path):
    out = tmp_path / "twice.jsonl"
    cmd = [sys.executable, "-m", "captioner.cli", "run", "--manifest", str(synth), "--out", str(out),
           "--config", str(ORACLE), "--quiet", "run.active_clips=1", "run.prefetch=1"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert first.poll() is None, "the first run finished before the second started; give it more clips"
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and f"is being written by pid {first.pid}" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    first.communicate(timeout=300)
    assert first.returncode == 0
    lines = Counter(r["id"] for r in iter_manifest(out))
    assert len(lines) == 12 and set(lines.values()) == {1}
