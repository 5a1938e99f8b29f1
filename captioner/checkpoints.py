"""Model folders named in captioner configs (``backend.path``, ``keyframes.clip_path``).

A path is used as it is when it is a local folder. Otherwise it may be a Hugging Face Hub id that
the Hub, or the local Hub cache, can serve (``from_pretrained`` then downloads or reads the cache);
if not, :func:`locate_checkpoint` raises one :class:`CheckpointNotFoundError` that names the config
key, the path and the command that fetches it, instead of the loader's own error from deep inside
``from_pretrained`` (or, offline, a hub id that "is not a folder").

    locate_checkpoint("ckpts/qwen2.5-vl-7b", "backend.path")
    # CheckpointNotFoundError: backend.path='ckpts/qwen2.5-vl-7b' is not a local folder ... Download it:
    #     hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir ckpts/qwen2.5-vl-7b
"""

from __future__ import annotations

import re
from pathlib import Path

# The checkpoints the shipped presets (captioner/presets/*.yaml) name: hub id -> the folder they expect
# under ckpts/. Only used to print the right download command.
SHIPPED = {
    "Qwen/Qwen2.5-VL-7B-Instruct": "qwen2.5-vl-7b",
    "openai/clip-vit-large-patch14-336": "clip-vit-large-patch14-336",
}
TINY_VLM = "tiny-vlm"  # tiny-local.yaml's folder, made by `captioner tiny-vlm`
MINIATURE = ("train", "model")  # mini-fast/mini-diffsw's folder: OUT/train/model of `captioner miniature --out OUT`
LOCAL_ROOTS = ("ckpts", "runs")  # the folders the presets and docs use for local models: never hub ids
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class CheckpointNotFoundError(ValueError):
    """A config names a model that is neither a local folder nor served by the Hub (or its cache)."""


def how_to_get(path: str) -> str:
    """The command that puts the model ``path`` names where it names it."""
    name = Path(path).name
    if name == TINY_VLM:
        return f"captioner tiny-vlm --out {path}"
    if Path(path).parts[-2:] == MINIATURE:
        out = Path(path).parent.parent
        return "make captioner" if out == Path("runs/captioner") else f"captioner miniature --out {out}"
    for hub_id, folder in SHIPPED.items():
        if path == hub_id:
            return f"hf download {hub_id} --local-dir ckpts/{folder}   # then point the key at ckpts/{folder}"
        if name == folder:
            return f"hf download {hub_id} --local-dir {path}"
    if _may_be_hub_id(path):
        return f"hf download {path} --local-dir ckpts/{name.lower()}   # then point the key at ckpts/{name.lower()}"
    return f"hf download <org>/<model> --local-dir {path}"


def locate_checkpoint(path: str | Path, key: str) -> str:
    """``path`` itself when it is a local folder or a hub id the Hub (or its cache) serves; otherwise
    :class:`CheckpointNotFoundError` naming ``key``, ``path`` and the command that fetches it."""
    path = str(path)
    local = Path(path).expanduser()
    if local.is_dir():
        return str(local)
    where = f"{'no such folder' if not local.exists() else 'not a folder'}: {local.resolve()}"
    if _may_be_hub_id(path):
        from huggingface_hub import constants, hf_hub_download

        try:  # the cache first (works offline), then the Hub; only config.json is fetched here
            hf_hub_download(path, "config.json")
            return path
        except Exception as e:  # offline, no network, no such repo, gated: all mean "not reachable" here
            hub = "the Hub is off (HF_HUB_OFFLINE=1) and the model is not in the local Hub cache" \
                if constants.HF_HUB_OFFLINE else f"the Hub did not serve it: {type(e).__name__}"
        problem = f"is neither a local folder ({where}) nor reachable on the Hugging Face Hub ({hub})"
    else:
        problem = f"is not a local model folder ({where})"
    raise CheckpointNotFoundError(f"{key}={path!r} {problem}. Get it with:\n    {how_to_get(path)}\n"
                                  f"or set {key}=DIR to a folder that holds the model (its config.json).")


def _may_be_hub_id(path: str) -> bool:
    """``org/name``, and not a path into a local folder (``ckpts/...``, or one whose first part exists here)."""
    first = path.split("/", 1)[0]
    return bool(_HUB_ID.match(path)) and first not in LOCAL_ROOTS and not Path(first).exists()
