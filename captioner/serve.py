"""``captioner serve``: drop a video, watch it captioned (Gradio, the ``app`` extra).

The page shows the clip's key-frames with their times as soon as they are extracted, then each
differential caption as the backend writes it (DiffSW, or one grid call in fast mode), then the dense
and the short caption; the finished record downloads as a one-line manifest (JSON Lines), the same
record ``captioner run`` writes.

    captioner serve --config oracle                         # synthworld clips, offline
    captioner serve --config runs/captioner/train/model     # the learned miniature ShareCaptioner

Captioning goes through :class:`captioner.diffsw.DiffSWCaptioner` (its ``on_step`` hook), as in ``captioner run``.
"""

from __future__ import annotations

import json
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioner.config import build_backend, load_captioner_config
from captioner.diffsw import ClipTask, DiffSWCaptioner
from clipio.app import DELETE_CACHE, import_gradio, launch
from clipio.video.errors import VideoError

log = logging.getLogger(__name__)

ORACLE_NOTE = ("The oracle backend reads synthworld clips (coloured shapes on a plain background) with the "
               "synthworld detector; other footage needs a VLM config (`hf`, `openai`).")


@dataclass
class ClipProgress:
    """Where one clip's captioning stands: what the page shows after each step."""

    name: str
    times: list[float]
    images: list[Any]  # uint8 (H, W, 3) key-frames
    timeline: list[dict] = field(default_factory=list)  # {t, caption}: the differential captions so far
    dense: str | None = None
    short: str | None = None
    record: dict | None = None  # the manifest record, once finished


class CaptionDemo:
    """The app's logic, without Gradio: one clip at a time through the DiffSW captioner, step by step."""

    def __init__(self, config: str | Path):
        self.config = str(config)
        cfg = load_captioner_config(config)
        fast = load_captioner_config(config, ["run.mode=fast", "run.window_seconds=0"])
        diffsw = load_captioner_config(config, ["run.mode=diffsw"])
        backend = build_backend(cfg.backend)  # one backend (one VLM in memory) for both modes
        self.diffsw = DiffSWCaptioner(diffsw, backend)
        self.fast = DiffSWCaptioner(fast, backend, embedder=self.diffsw.embedder)
        self.cfg = cfg
        self.default_fast = cfg.run.mode == "fast"
        self.out = Path(tempfile.mkdtemp(prefix="captioner-serve-"))  # the last record of each clip id

    def describe(self) -> str:
        kc, b = self.cfg.keyframes, self.cfg.backend
        text = (f"config `{self.config}`: backend `{b.kind}`{f' ({b.path or b.model})' if b.path or b.model else ''}, "
                f"key-frames every {kc.interval:g} s (similarity threshold {kc.threshold:g}, {kc.embedder} embedder)")
        return text + ("  \n" + ORACLE_NOTE if b.kind == "oracle" else "")

    def caption(self, video: str | Path | None, fast: bool) -> Iterator[ClipProgress]:
        """Key-frames first, then one :class:`ClipProgress` per answered step; the last one holds the record.
        A file that is not a readable video is a ``ValueError`` naming it; a failed step a ``RuntimeError``."""
        # 1. Check inputs: the key-frames decode, or the file is not a video
        if not video:
            raise ValueError("Video: none given. Drop a video file (mp4, webm, mov, …) on the Video box")
        path = Path(video)
        captioner = self.fast if fast else self.diffsw
        task = ClipTask(id=path.stem, path=path, video=path.name)
        try:
            job = captioner.extract(task)
        except (VideoError, ValueError) as e:
            reason = str(e).replace(str(path), path.name)  # not the server's upload folder
            raise ValueError(f"Video: {path.name} is not a video this captioner can read ({reason})") from None
        state = ClipProgress(path.name, list(job.times), list(job.images))
        yield state

        # 2. Caption in a worker thread; each stored step comes back through a queue
        steps: queue.Queue = queue.Queue()

        def on_step(j) -> None:
            steps.put(("step", (j.timeline(), j.dense, j.short)))

        def work() -> None:
            try:
                (record,) = captioner.caption_jobs([job], on_step=on_step)  # one clip: one record, ok or error
                steps.put(("done", record))
            except BaseException as e:  # handed to the page's thread, which raises it there
                steps.put(("failed", e))

        threading.Thread(target=work, name="captioner-serve", daemon=True).start()
        while True:
            kind, value = steps.get()
            if kind == "failed":
                raise value
            if kind == "done":
                if value["status"] != "ok":
                    error = str(value["error"]).replace(str(path), path.name)  # not the server's upload folder
                    raise RuntimeError(f"Captioning {path.name} failed: {error}")
                state.record = value
                yield state
                return
            state.timeline, state.dense, state.short = value
            yield state


def write_record(record: dict, folder: Path) -> Path:
    """The record as a one-record manifest: ``folder/ID.jsonl``, one JSON line."""
    out = folder / f"{record['id']}.jsonl"
    out.write_text(json.dumps(record, ensure_ascii=False) + "\n")
    return out


def build_app(demo: CaptionDemo):
    """The page: a video drop and a Caption button; key-frames, differential captions, dense and short captions."""
    gr = import_gradio()

    def rows(state: ClipProgress) -> list[list]:
        if state.timeline:
            return [[f"{k['t']:.2f}", k["caption"]] for k in state.timeline]
        return [[f"{t:.2f}", ""] for t in state.times]

    def run(video, fast) -> Iterator[list]:
        t0 = time.time()
        shown = False  # the key-frames go to the page once, with the first update
        try:
            for state in demo.caption(video, bool(fast)):
                gallery = gr.skip() if shown else [(img, f"{t:.2f} s") for img, t in zip(state.images, state.times)]
                shown = True
                if state.record is not None:
                    n = sum(1 for k in state.timeline if k["caption"])
                    status = (f"{state.name}: {len(state.times)} key-frames, {n} differential captions"
                              f"{' (fast mode: one grid call)' if fast else ''}, dense and short caption in "
                              f"{time.time() - t0:.1f} s")
                    yield [gallery, rows(state), state.dense, state.short, str(write_record(state.record, demo.out)), status]
                else:
                    mode = "fast" if fast else "DiffSW"
                    status = (f"{state.name}: {len(state.times)} key-frames from {state.times[0]:.2f} s to "
                              f"{state.times[-1]:.2f} s; captioning ({mode}) …")
                    yield [gallery, rows(state), state.dense or "", state.short or "", None, status]
        except (ValueError, RuntimeError) as e:
            raise gr.Error(str(e), print_exception=False) from None

    with gr.Blocks(title="dense-t2v: video to dense caption", analytics_enabled=False, delete_cache=DELETE_CACHE) as page:
        gr.Markdown("## dense-t2v: video to dense caption\n" + demo.describe())
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], height=260)
                fast = gr.Checkbox(label="Fast mode: every key-frame in one grid image, one call",
                                   value=demo.default_fast)
                button = gr.Button("Caption", variant="primary")
            with gr.Column(scale=2):
                gallery = gr.Gallery(label="Key-frames", columns=6, height="auto", format="png", object_fit="contain")
        table = gr.Dataframe(headers=["time (s)", "differential caption"], label="Differential captions",
                             interactive=False, wrap=True, column_widths=["12%", "88%"])
        with gr.Row():
            dense = gr.Textbox(label="Dense caption", lines=5, interactive=False)
            short = gr.Textbox(label="Short caption", lines=5, interactive=False)
        with gr.Row():
            record = gr.File(label="Record (manifest JSON Lines)", interactive=False)
            status = gr.Markdown()
        button.click(run, [video, fast], [gallery, table, dense, short, record, status], api_name="caption")
    return page


def serve(config: str | Path, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Build the captioner and serve the page; return ``(url, page)`` (``block``: only once it stops)."""
    import_gradio()  # a missing extra is said before the captioner's model loads
    page = build_app(CaptionDemo(config))
    return launch(page, host, port, block), page
