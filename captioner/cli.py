"""``captioner`` command line. Subcommands: ``probe`` (video metadata, and whether it decodes)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _probe(a: argparse.Namespace) -> int:
    from captioner.video import VideoError, open_video

    failed = 0
    for path in a.videos:
        try:
            with open_video(path, backend=a.backend, timeout=a.timeout) as v:
                info = v.info
                if a.decode:
                    for _ in v.iter_frames(chunk=32):
                        pass
            rec = {"path": str(path), "status": "ok", "fps": info.fps, "num_frames": info.num_frames,
                   "duration": round(info.duration, 3), "width": info.width, "height": info.height,
                   "backend": info.backend}
        except VideoError as e:
            failed += 1
            rec = {"path": str(path), "status": "error", "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(rec))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="captioner", description="dense-t2v captioner.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("probe", help="print one JSON line of metadata per video (or the error)")
    s.add_argument("videos", nargs="+", type=Path)
    s.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"])
    s.add_argument("--timeout", type=float, default=60.0, help="seconds a decoder call may take")
    s.add_argument("--decode", action="store_true", help="also decode every frame (finds corrupt streams)")
    s.set_defaults(func=_probe)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
