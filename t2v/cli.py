"""``t2v`` command line. Subcommands: ``synth`` (render a synthworld dataset)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _synth(a: argparse.Namespace) -> int:
    from t2v.data.synthetic import describe_dataset, write_synth_dataset

    s = write_synth_dataset(a.out, a.num_clips, seed=a.seed, size=a.size, fps=a.fps, seconds=a.seconds)
    print(f"wrote {s.written} clips, skipped {s.skipped} already present, {s.errors} errors -> {s.out}")
    print(describe_dataset(s.manifest, sheet_path=None if a.no_sheet else s.out / "contact_sheet.png"))
    return 1 if s.errors else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2v", description="dense-t2v: caption-conditioned text-to-video.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="render a synthworld dataset (clips + manifest with oracle captions)")
    s.add_argument("--out", type=Path, required=True, help="output folder (clips/ and manifest.jsonl)")
    s.add_argument("--num-clips", type=int, required=True)
    s.add_argument("--seed", type=int, default=0, help="dataset seed; clip i uses a scene seed derived from it")
    s.add_argument("--size", type=int, default=64, help="frame size in pixels (square, even, 32..256)")
    s.add_argument("--fps", type=float, default=8.0)
    s.add_argument("--seconds", type=float, default=4.0, help="clip duration")
    s.add_argument("--no-sheet", action="store_true", help="skip the contact-sheet PNG")
    s.set_defaults(func=_synth)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ValueError as e:  # user errors: one clear line, no traceback
        print(f"t2v {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
