"""What the two web demos share (``t2v serve``, ``captioner serve``): importing Gradio, starting a server.

Gradio is the optional ``app`` extra: it is imported inside these functions, so the packages import
without it, and a missing install is one error that says what to install.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

log = logging.getLogger(__name__)
# gr.Blocks(delete_cache=...): every hour, the server deletes the videos and records it served over an hour ago
DELETE_CACHE = (3600, 3600)


class MissingExtraError(ImportError):
    """An optional extra that a command needs is not installed (a user error: the CLIs print it as one line)."""


def import_gradio():
    """The ``gradio`` module, with its usage analytics off (the demos run offline); a missing install is a
    :class:`MissingExtraError` naming the extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as e:
        raise MissingExtraError(f"the web demos need Gradio ({e}): pip install -c constraints.txt -e '.[app]' "
                                "(make test and make demo install it)") from e
    return gradio


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def launch(blocks: Any, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> str:
    """Serve a ``gr.Blocks`` on ``host:port`` (``port`` None: 7860 or the next free one, Gradio's rule); return its
    URL. ``block``: serve until interrupted (the CLIs), else return at once and leave it running (tests:
    ``blocks.close()``)."""
    blocks.queue(default_concurrency_limit=1)  # one generation or captioning at a time: they share the CPU/GPU
    # show_error: a gr.Error's message goes to the page (never a traceback); ssr_mode off: no Node server
    _, url, _ = blocks.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                              show_error=True, ssr_mode=False, footer_links=["api"])
    log.info("serving on %s", url)
    if block:
        print(f"serving on {url} (Ctrl-C stops it)", flush=True)
        try:
            blocks.block_thread()
        finally:
            blocks.close()
    return url
