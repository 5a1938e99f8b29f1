"""What both command lines share: a user error is one line naming the input, and exit status 2.

``run_command`` calls a subcommand's handler; a ``ValueError`` (config and manifest errors are
ones), a ``FileNotFoundError``, a ``VideoError``, a ``ManifestLockedError`` or a missing extra
(``MissingExtraError``) is a user error: ``PROG COMMAND: error: message``
on stderr and status 2, no traceback — unless ``verbose`` (``-v``), which re-raises it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from clipio.app import MissingExtraError
from clipio.manifest import ManifestLockedError
from clipio.video.errors import VideoError

USER_ERRORS = (ValueError, FileNotFoundError, VideoError, ManifestLockedError, MissingExtraError)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks for errors")


def run_command(prog: str, args: argparse.Namespace, handler: Callable[[argparse.Namespace], int]) -> int:
    """Set up logging, run ``handler(args)``, and turn user errors into one line and status 2."""
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return handler(args)
    except USER_ERRORS as e:
        if verbose:
            raise
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return 2


def main_of(prog: str, build_parser: Callable[[], argparse.ArgumentParser]) -> Callable[[list[str] | None], int]:
    """A CLI's ``main(argv)``: parse, then :func:`run_command` the chosen subcommand's ``func``."""
    def main(argv: list[str] | None = None) -> int:
        args = build_parser().parse_args(argv)
        return run_command(prog, args, args.func)

    return main
