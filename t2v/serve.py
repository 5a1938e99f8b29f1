"""``t2v serve``: a web demo of trained pipelines (Gradio, the ``app`` extra).

Type a prompt of any length — its token count is shown, and it is never cut (the pipeline encodes
it in windows) — optionally have a captioner re-caption it first (the rewritten prompt is shown
before generating), and watch each model's video from the same seed side by side, with a progress
bar over the denoising steps. Every video plays in the page and downloads as mp4 and gif.

    t2v serve --model runs/demo/t2v/pipeline
    t2v serve --model runs/experiment/short/pipeline runs/experiment/dense/pipeline --names short dense

Generation goes through :func:`t2v.generate.sample` (the seeding of ``t2v generate``), re-captioning
through :func:`t2v.generate.recaption_prompts` (``t2v generate --recaption``).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipio.app import DELETE_CACHE, import_gradio, launch
from clipio.video import write_video

log = logging.getLogger(__name__)

MAX_STEPS = 200  # the steps slider ends here and an API call past it is refused: a run that long is a typo
FRAMES_OVER_TRAINING = 4  # default --max-frames: this many times the frames a model was trained on


@dataclass
class Model:
    """A loaded pipeline and what the page says about it."""

    name: str
    path: Path
    pipe: Any  # TextToVideoPipeline
    fps: float

    @property
    def trained_frames(self) -> int:
        return int(self.pipe.transformer.config.sample_frames)

    def describe(self) -> str:
        tc, vae = self.pipe.transformer.config, self.pipe.video_vae
        px = tc.sample_size * vae.spatial_factor
        return (f"**{self.name}** (`{self.path}`): {tc.backbone} DiT, {px}×{px} px, trained on "
                f"{self.trained_frames} frames at {self.fps:g} fps")


def frame_range(models: list[Model], max_frames: int | None) -> tuple[int, int]:
    """The frame counts every model can make: ``(lowest, highest)``. A Latte model makes exactly its trained
    count; a Wan model any count up to ``max_frames`` (default :data:`FRAMES_OVER_TRAINING` × its trained
    count) and its 3D RoPE's reach."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames: {max_frames} is not a frame count >= 1")
    lo, hi = 1, 10**9
    for m in models:
        tc = m.pipe.transformer.config
        if tc.backbone == "latte":
            lo, hi = max(lo, tc.sample_frames), min(hi, tc.sample_frames)
            continue
        dit = m.pipe.transformer.dit.config
        rope = int(dit.rope_max_seq_len) * int(dit.patch_size[0]) * m.pipe.video_vae.temporal_factor
        hi = min(hi, rope, max_frames if max_frames is not None else FRAMES_OVER_TRAINING * m.trained_frames)
    if lo > hi:
        raise ValueError(f"--model: no frame count suits every model ({', '.join(m.name for m in models)}): "
                         "serve the Latte models on their own")
    return lo, hi


class T2VDemo:
    """The app's logic, without Gradio: token counts, input checks, generation into files."""

    def __init__(self, models: list[Model], captioners: dict[str, str], max_frames: int | None = None):
        from t2v.cli import sample_settings

        self.models = models
        self.captioners = captioners  # label -> what t2v.generate.recaption_prompts takes
        self.frames = frame_range(models, max_frames)
        self.default_frames = min(max(models[0].trained_frames, self.frames[0]), self.frames[1])
        self.default_steps, self.default_guidance = sample_settings(models[0].path, None, None)
        self.out = Path(tempfile.mkdtemp(prefix="t2v-serve-"))  # each model's last video per seed
        self._backends: dict[str, Any] = {}  # re-captioning backends, built on first use

    def token_info(self, prompt: str) -> str:
        """Markdown: the prompt's token count by each model's own tokenizer, and how it is encoded."""
        lines = {}  # line -> models it holds for
        for m in self.models:
            enc = m.pipe.prompt_encoder
            n = enc.token_counts([prompt])[0]
            windows = max(math.ceil(n / enc.tokens_per_window), 1)
            line = (f"**{n} tokens** ({type(enc.tokenizer).__name__}): encoded in {windows} "
                    f"window{'s' if windows > 1 else ''} of {enc.tokens_per_window}, never cut")
            if enc.max_tokens is not None and n > enc.max_tokens:
                line += f"; over the model's cap of {enc.max_tokens} tokens (text.max_tokens): shorten it"
            lines.setdefault(line, []).append(m.name)
        if len(lines) == 1:
            return next(iter(lines))
        return "  \n".join(f"{', '.join(names)}: {line}" for line, names in lines.items())

    def check(self, prompt: str, steps: float, guidance: float, seed: float, frames: float) -> tuple[int, int, int]:
        """Refuse bad input with a ``ValueError`` naming it; return ``(steps, seed, frames)`` as integers."""
        if not prompt or not prompt.strip():
            raise ValueError("Prompt: empty. Type what the video should show (any length: it is never cut)")
        for m in self.models:
            enc = m.pipe.prompt_encoder
            n = enc.token_counts([prompt])[0]
            if enc.max_tokens is not None and n > enc.max_tokens:
                raise ValueError(f"Prompt: {n} tokens, over {m.name}'s cap of {enc.max_tokens} (text.max_tokens); "
                                 "this app never cuts a prompt: shorten it")
        for name, value in (("Frames", frames), ("Steps", steps), ("Guidance", guidance), ("Seed", seed)):
            if value is None or not math.isfinite(value):
                raise ValueError(f"{name}: {value!r} is not a number")
        lo, hi = self.frames
        if frames != int(frames) or not lo <= frames <= hi:
            raise ValueError(f"Frames: {frames!r} is not a whole number from {lo} to {hi}, what this app makes with "
                             f"{', '.join(m.name for m in self.models)} (trained on {self.models[0].trained_frames}; "
                             "`t2v serve --max-frames N` allows more)")
        for m in self.models:  # a VAE that compresses time (Wan's: 4) decodes 1 + a multiple of its factor
            tf = m.pipe.video_vae.temporal_factor
            if (int(frames) - 1) % tf:
                raise ValueError(f"Frames: {frames!r}: {m.name}'s VAE makes 1 + a multiple of {tf} frames "
                                 f"(e.g. {1 + (int(frames) - 1) // tf * tf} or {1 + -(-(int(frames) - 1) // tf) * tf})")
        if steps != int(steps) or not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"Steps: {steps!r} is not a whole number from 1 to {MAX_STEPS}")
        if not guidance >= 0:
            raise ValueError(f"Guidance: {guidance!r} is not a number >= 0 (1 or less: no guidance)")
        if seed != int(seed) or not 0 <= seed < 2**63:
            raise ValueError(f"Seed: {seed!r} is not a whole number from 0 to 2**63 - 1")
        return int(steps), int(seed), int(frames)

    def recaption(self, prompt: str, captioner: str, frames: int) -> str:
        from t2v.generate import recaption_prompts

        if captioner not in self.captioners:
            raise ValueError(f"Captioner: {captioner!r} is not one of this app's: {', '.join(self.captioners)}")
        return recaption_prompts(self.models[0].path, [prompt], self.captioners[captioner], frames,
                                 backends=self._backends)[0]

    def generate(self, prompt: str, negative: str | None, steps: int, guidance: float, seed: int, frames: int,
                 on_step=None) -> list[tuple[Path, Path]]:
        """Every model's video of ``prompt`` from the same ``seed``: ``(mp4, gif)`` per model (the page keeps its
        own copies). ``on_step(k, i, steps)``: model ``k`` finished denoising step ``i``."""
        from t2v.generate import sample

        files = []
        for k, m in enumerate(self.models):
            video = sample(m.pipe, prompt, negative_prompt=negative or None, num_frames=frames, steps=steps,
                           guidance=guidance, seed=seed,
                           on_step=None if on_step is None else lambda i, n, k=k: on_step(k, i, n))  # (F, H, W, 3)
            stem = f"{k}-{m.name}-seed{seed}"
            files.append(tuple(write_video(self.out / f"{stem}.{ext}", video, m.fps) for ext in ("mp4", "gif")))
        return files


def load_models(paths: list[Path], names: list[str] | None = None, device: str | None = None) -> list[Model]:
    """Load pipeline folders once, for every request; named as ``t2v compare`` names them."""
    from t2v.compare.run import model_names
    from t2v.generate import load_pipeline, training_fps

    names = model_names(paths, names)
    return [Model(n, Path(p), load_pipeline(p, device), training_fps(p)) for n, p in zip(names, paths)]


def build_app(demo: T2VDemo):
    """The page: prompt, settings and a Generate button; then per model a video and its mp4/gif files."""
    gr = import_gradio()

    def user_error(e: Exception):
        return gr.Error(str(e), print_exception=False)

    def run(prompt, negative, steps, guidance, seed, frames, recaption, captioner,
            progress=gr.Progress()) -> Iterator[list]:  # noqa: B008 (Gradio finds its tracker by this default)
        # 1. Check inputs
        try:
            steps, seed, frames = demo.check(prompt, steps, guidance, seed, frames)
        except ValueError as e:
            raise user_error(e) from None
        n = len(demo.models)
        t0 = time.time()
        # 2. Re-caption: shown before generating
        sent = prompt
        if recaption:
            progress(0, desc=f"re-captioning with {captioner}")
            try:
                sent = demo.recaption(prompt, captioner, frames)
            except (ValueError, FileNotFoundError) as e:
                raise user_error(e) from None
            yield [sent, f"re-captioned by {captioner}; generating …"] + [gr.skip()] * (2 * n)
        # 3. Generate, one progress bar over every model's denoising steps
        def on_step(k, i, total):
            progress((k * total + i + 1) / (n * total), desc=f"{demo.models[k].name}: step {i + 1}/{total}")

        try:
            files = demo.generate(sent, negative, steps, float(guidance), seed, frames, on_step)
        except ValueError as e:  # the pipeline's check_inputs
            raise user_error(e) from None
        status = (f"{n} video{'s' if n > 1 else ''} of {frames} frames, seed {seed}, {steps} steps, guidance "
                  f"{float(guidance):g}, in {time.time() - t0:.1f} s")
        yield [sent, status] + [x for mp4, gif in files for x in (str(mp4), [str(mp4), str(gif)])]

    lo, hi = demo.frames
    with gr.Blocks(title="dense-t2v: text to video", analytics_enabled=False, delete_cache=DELETE_CACHE) as page:
        gr.Markdown("## dense-t2v: text to video\n" + "  \n".join(m.describe() for m in demo.models))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", lines=5, max_lines=30,
                                    placeholder="Any length: a long, dense prompt is encoded in windows, never cut")
                tokens = gr.Markdown(demo.token_info(""))
                negative = gr.Textbox(label="Negative prompt", lines=1)
            with gr.Column(scale=2):
                with gr.Row():
                    steps = gr.Slider(1, MAX_STEPS, value=demo.default_steps, step=1, label="Steps")
                    guidance = gr.Slider(0, 15, value=demo.default_guidance, step=0.5, label="Guidance")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                    # a Number, not a Slider: a Slider refuses an API call out of its range without naming itself
                    frames = gr.Number(value=demo.default_frames, precision=0, label=f"Frames ({lo} to {hi})")
                with gr.Row():
                    recaption = gr.Checkbox(label="Re-caption my prompt", value=False)
                    captioner = gr.Dropdown(list(demo.captioners), value=next(iter(demo.captioners)),
                                            label="Captioner")
                button = gr.Button("Generate", variant="primary")
        sent = gr.Textbox(label="Prompt sent to the model", interactive=False, lines=2)
        status = gr.Markdown()
        outputs = [sent, status]
        with gr.Row():
            for m in demo.models:
                with gr.Column():
                    outputs.append(gr.Video(label=m.name, height=320, autoplay=True, loop=True, interactive=False))
                    outputs.append(gr.File(label=f"{m.name}: mp4 and gif", file_count="multiple",
                                           interactive=False))
        prompt.change(demo.token_info, prompt, tokens, api_name="count_tokens", show_progress="hidden")
        button.click(run, [prompt, negative, steps, guidance, seed, frames, recaption, captioner], outputs,
                     api_name="generate")
    return page


def serve(models: list[Path], names: list[str] | None = None, captioners: list[str] | None = None,
          max_frames: int | None = None, device: str | None = None, host: str = "127.0.0.1",
          port: int | None = None, block: bool = True):
    """Load the models and serve the page; return ``(url, page)`` (``block``: only once it stops)."""
    from t2v.generate import check_captioner

    import_gradio()  # a missing extra is said before any model loads
    captioners = captioners or ["oracle"]
    for c in captioners:  # a bad one fails here, not on the first re-caption
        check_captioner(c)
    demo = T2VDemo(load_models(models, names, device), {str(c): str(c) for c in captioners}, max_frames)
    page = build_app(demo)
    return launch(page, host, port, block), page
