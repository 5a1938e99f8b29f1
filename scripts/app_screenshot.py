"""Screenshot both web demos in headless Chromium, used as a person would: `make app-screenshot` (after `make demo`).

Starts ``t2v serve`` on the model(s) and ``captioner serve`` on a captioner config, each on a free local port;
in Chromium (Debian's, driven by Playwright), types a prompt and clicks Generate, drops a synthworld clip and
clicks Caption, waits for the results, and writes OUT/app-t2v.png and OUT/app-captioner.png. With
``--check-errors`` it also sends an empty prompt, a frame count over the limit and a file that is not a video,
and records the messages the pages show. ``--report FILE`` writes what each page showed as JSON (its visible
text, the videos' decoded sizes, the progress steps seen, the error messages): ``tests/test_serve.py`` checks it.

    python scripts/app_screenshot.py --model runs/demo/t2v/pipeline --names demo --out docs
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# the flags of scripts/screenshot_report.sh: without the background-networking ones Chromium opens many connections
# at once, which an offline machine refuses; --no-sandbox: root in a container
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WIDTH = 1280
TIMEOUT_MS = 300_000  # a generation on the demo model takes seconds on 2 cores; a slow machine gets room


def demo_prompt(model: Path) -> str:
    """A long dense prompt of an unseen scene of the demo's world, as long as ``model``'s videos (as `make demo`
    generates from)."""
    from synthworld.dataset import DEMO_WORLD, caption_for, heldout_specs
    from t2v.generate import training_fps

    frames = json.loads((model / "transformer" / "config.json").read_text())["sample_frames"]
    spec = heldout_specs(1, frames / training_fps(model), dataset_seed=424242, world=DEMO_WORLD)[0]
    return caption_for(spec, "dense")


def demo_clip(out: Path, size: int = 96) -> Path:
    """A synthworld clip for the captioner page (4 s, 8 fps): the fifth scene of seed 3 of a world of up to two
    shapes and two events each: a red triangle and a yellow circle move left, and the circle vanishes at 2.5 s."""
    from synthworld.dataset import World, write_synth_dataset

    manifest = write_synth_dataset(out, 5, seed=3, size=size, fps=8.0, seconds=4.0, world=World(2, 2, True),
                                   workers=1, progress=False).manifest
    return out / json.loads(manifest.read_text().splitlines()[4])["video"]


def _error_text(page, name: str) -> str:
    """The text of the error message shown in the page that starts by naming the input ``name`` ("Video: …");
    not another one (the browser's own "Video not playable")."""
    toast = page.locator(".toast-body", has_text=f"{name}: ").first
    toast.wait_for(timeout=60_000)
    return toast.inner_text()


def _upload(page, path: Path) -> None:
    """Drop ``path`` on the page's file box and wait until the server has it."""
    with page.expect_response(lambda r: r.request.method == "POST" and "/gradio_api/upload?" in r.url):
        page.locator("input[type=file]").first.set_input_files(str(path))


def _open(browser, url: str, button: str):
    """A new page of ``url`` once its ``button`` is shown: ``(page, button locator)``."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto(url)
    locator = page.get_by_role("button", name=button)
    locator.wait_for()
    return page, locator


def drive_t2v(browser, url: str, prompt: str, png: Path, recaption: bool, check_errors: bool, models: int = 1) -> dict:
    """Type ``prompt``, click Generate, wait until the ``models`` videos each have a decoded frame; screenshot."""
    page, generate = _open(browser, url, "Generate")
    shown: dict = {"errors": {}}
    if check_errors:
        generate.click()  # the prompt box is still empty
        shown["errors"]["empty_prompt"] = _error_text(page, "Prompt")
        page.get_by_label("Prompt", exact=True).fill("a red circle")
        frames = page.get_by_label("Frames", exact=False)
        frames.fill("100000")
        generate.click()
        shown["errors"]["too_many_frames"] = _error_text(page, "Frames")
        page.reload()
        generate.wait_for()
    page.get_by_label("Prompt", exact=True).fill(prompt)
    if recaption:
        page.get_by_label("Re-caption my prompt").check()
    # every "NAME: step i/N" the progress bar shows while it runs
    page.evaluate(r"""() => { window.seenSteps = new Set(); new MutationObserver(() => {
        for (const m of document.body.innerText.matchAll(/\S+: step \d+\/\d+/g)) window.seenSteps.add(m[0]);
    }).observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    generate.click()
    page.wait_for_function(
        "n => { const v = [...document.querySelectorAll('video')]; return v.length >= n && "
        "v.every(x => x.readyState >= 2 && x.videoWidth > 0); }", arg=models, timeout=TIMEOUT_MS)
    page.get_by_text(re.compile(r"videos? of \d+ frames")).wait_for()
    shown["videos"] = page.evaluate("[...document.querySelectorAll('video')].map(v => [v.videoWidth, v.videoHeight])")
    shown["sent_prompt"] = page.get_by_label("Prompt sent to the model").input_value()
    shown["progress"] = sorted(page.evaluate("[...window.seenSteps]"))
    # each video paused on its middle frame, once that frame is shown
    page.evaluate("Promise.all([...document.querySelectorAll('video')].map(v => new Promise(done => { "
                  "v.addEventListener('seeked', done, {once: true}); v.pause(); v.currentTime = v.duration / 2; })))")
    page.screenshot(path=str(png), full_page=True)
    shown["text"] = page.inner_text("body")
    page.close()
    return shown


def drive_captioner(browser, url: str, clip: Path, png: Path, check_errors: bool) -> dict:
    """Drop ``clip`` on the Video box, click Caption, wait for the dense caption and the record; screenshot."""
    page, caption = _open(browser, url, "Caption")
    shown: dict = {"errors": {}}
    if check_errors:
        caption.click()  # no video yet
        shown["errors"]["no_video"] = _error_text(page, "Video")
        page.reload()
        caption.wait_for()
    _upload(page, clip)
    page.locator("video").first.wait_for(timeout=60_000)  # the player shows it
    caption.click()
    dense = page.get_by_label("Dense caption")
    page.wait_for_function("el => el.value.length > 0", arg=dense.element_handle(), timeout=TIMEOUT_MS)
    page.locator("text=dense and short caption in").wait_for()
    shown["dense"] = dense.input_value()
    shown["short"] = page.get_by_label("Short caption").input_value()
    thumbnails = "[...document.querySelectorAll('.thumbnail-item img')]"
    page.wait_for_function(f"{thumbnails}.length > 0 && {thumbnails}.every(i => i.complete && i.naturalWidth > 0)")
    shown["keyframes"] = page.locator(".thumbnail-item img").count()
    page.screenshot(path=str(png), full_page=True)
    shown["text"] = page.inner_text("body")
    page.close()
    return shown


def _not_a_video(browser, url: str, work: Path) -> str:
    """Drop a text file named .mp4 (the upload box takes video files only) and click Caption."""
    fake = work / "notes.mp4"
    fake.write_text("this is not a video\n")
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto(url)
    page.get_by_role("button", name="Caption").wait_for()
    _upload(page, fake)
    page.get_by_role("button", name="Caption").click()
    text = _error_text(page, "Video")
    page.close()
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, nargs="+", default=[ROOT / "runs/demo/t2v/pipeline"],
                   help="pipeline folders for t2v serve (default: the demo's)")
    p.add_argument("--names", nargs="+", default=None)
    p.add_argument("--captioner", default="oracle", help="captioner config for captioner serve (default: oracle)")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    p.add_argument("--prompt", default=None, help="default: a long dense prompt of an unseen demo scene")
    p.add_argument("--recaption", action="store_true", help="switch on re-captioning (oracle) before generating")
    p.add_argument("--clip", type=Path, default=None, help="video for the captioner page (default: a synthworld clip)")
    p.add_argument("--check-errors", action="store_true", help="also send bad input and record the messages")
    p.add_argument("--report", type=Path, default=None, help="write what the pages showed to this JSON file")
    a = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from captioner.serve import serve as serve_captioner
    from clipio.app import free_port
    from t2v.serve import serve as serve_t2v

    subprocess.run([str(ROOT / "scripts" / "install_chromium.sh")], check=True)
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="app-screenshot-"))  # the clips it makes
    report: dict = {}
    t0 = time.time()
    t2v_url, t2v_page = serve_t2v(a.model, names=a.names, port=free_port(), block=False)
    cap_url, cap_page = serve_captioner(a.captioner, port=free_port(), block=False)
    report["start_s"] = round(time.time() - t0, 1)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            t = time.time()
            report["t2v"] = drive_t2v(browser, t2v_url, a.prompt or demo_prompt(a.model[0]), a.out / "app-t2v.png",
                                      a.recaption, a.check_errors, models=len(a.model))
            report["t2v"]["seconds"] = round(time.time() - t, 1)
            t = time.time()
            report["captioner"] = drive_captioner(browser, cap_url, a.clip or demo_clip(work / "clip"),
                                                  a.out / "app-captioner.png", a.check_errors)
            report["captioner"]["seconds"] = round(time.time() - t, 1)
            if a.check_errors:
                report["captioner"]["errors"]["not_a_video"] = _not_a_video(browser, cap_url, work)
            browser.close()
    finally:
        t2v_page.close()
        cap_page.close()
        shutil.rmtree(work, ignore_errors=True)
    if a.report is not None:
        a.report.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {a.out / 'app-t2v.png'} and {a.out / 'app-captioner.png'} "
          f"(apps started in {report['start_s']} s; t2v page {report['t2v']['seconds']} s, "
          f"captioner page {report['captioner']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
