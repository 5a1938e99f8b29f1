"""Prompt sets of ``t2v compare``: read them, write held-out synthworld ones, and derive the arms' sets.

- :func:`load_prompts` — a JSONL file of ``{"prompt", "scene"?}`` or a text file of one prompt per line;
- :func:`write_heldout_prompts` — held-out synthworld scenes with their prompts (``t2v prompts``): the oracle's
  short or dense caption, or a paraphrase; the scenes of a training manifest's world, or those holding the
  colour × shape × direction combinations it left out, or the scenes of another prompts file;
- :func:`parse_variants` / :func:`variant_prompts` — ``--variants NAME=FILE`` pairs; another wording of the same scenes (``--variants``), checked line by line;
- :func:`recaptioned_prompts` — the prompts re-captioned by a captioner (``--recaption``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from synthworld.spec import SceneSpec

log = logging.getLogger(__name__)


@dataclass
class PromptItem:
    prompt: str
    scene: SceneSpec | None = None


def load_prompts(path: str | Path) -> list[PromptItem]:
    """A JSONL file of ``{"prompt", "scene"?}`` or a text file with one prompt per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts {path}: no such file")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                d = json.loads(line)
                scene = SceneSpec.from_dict(d["scene"]) if d.get("scene") else None
                items.append(PromptItem(str(d["prompt"]), scene))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
                raise ValueError(f"--prompts {path}:{n}: expected {{\"prompt\": ..., \"scene\": ...}}: {e}") from None
        else:
            items.append(PromptItem(line.strip()))
    if not items:
        raise ValueError(f"--prompts {path}: no prompts in it")
    return items


def write_heldout_prompts(out: str | Path, num: int, seconds: float, field: str = "dense",
                          train_manifest: str | Path | None = None, phrasing: int = 1,
                          scenes_from: str | Path | None = None, combos: str = "seen") -> Path:
    """``num`` held-out synthworld scenes (never in ``train_manifest``; its world) with their captions
    (``field``: short, dense, or paraphrase with wording ``phrasing``); the same scenes whatever the field.
    ``scenes_from``: the scenes of that prompts file instead, in its order (another wording of a prompt set).
    ``combos="unseen"``: scenes that hold a colour × shape × direction combination the training manifest's world
    held out (``World.holdout``); ``"seen"`` (default): scenes of that world, which hold none."""
    from dataclasses import replace

    from synthworld.dataset import caption_for, heldout_specs, training_world

    if scenes_from is not None:
        if combos != "seen":
            raise ValueError("--scenes-from takes the scenes of that file as they are; leave out --combos")
        specs = [it.scene for it in load_prompts(scenes_from)]
        if any(s is None for s in specs):
            raise ValueError(f"--scenes-from {scenes_from}: line {specs.index(None) + 1} has no scene")
    else:
        exclude, world = training_world(train_manifest)
        if combos == "unseen":
            if world is None or not world.holdout:
                where = f"the training manifest {train_manifest}" if train_manifest else "no --train-manifest given; it"
                raise ValueError(f"--combos unseen: {where} holds out no colour × shape × direction combinations "
                                 "(t2v demo --holdout-combos K, t2v synth --holdout-combos K)")
            world = replace(world, combos="unseen")
        specs = heldout_specs(num, seconds, exclude, world)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for spec in specs:
            f.write(json.dumps({"prompt": caption_for(spec, field, phrasing), "scene": spec.to_dict()}) + "\n")
    return out


def variant_prompts(items: list[PromptItem], name: str, path: str | Path) -> list[PromptItem]:
    """Prompt set ``name`` from ``path``: the same scenes as ``items``, in the same order (checked)."""
    its = load_prompts(path)
    if len(its) != len(items):
        raise ValueError(f"--variants {name}={path}: {len(its)} prompts, but --prompts has {len(items)}; a variant "
                         "words the same scenes in the same order")
    for k, (a, b) in enumerate(zip(items, its), 1):
        if (a.scene.to_dict() if a.scene else None) != (b.scene.to_dict() if b.scene else None):
            raise ValueError(f"--variants {name}={path}:{k}: its scene is not the scene of line {k} of --prompts")
    if not any(it.scene for it in items):
        log.warning("--variants %s=%s: the prompts carry no scenes, so nothing checks that line k of each file "
                    "describes the same video", name, path)
    return its


def recaptioned_prompts(model: str | Path, items: list[PromptItem], captioner: str | Path, out: Path,
                 num_frames: int, filename: str = "prompts-recaptioned.jsonl") -> list[PromptItem]:
    """The prompts re-captioned for ``model``'s video length, each with its scene; written to
    ``out/FILENAME`` (``{"prompt", "original", "scene"}``)."""
    from t2v.generate import recaption_prompts

    texts = recaption_prompts(model, [it.prompt for it in items], captioner, num_frames)
    rewritten = [PromptItem(t, it.scene) for t, it in zip(texts, items)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / filename, "w") as f:
        for it, new in zip(items, rewritten):
            f.write(json.dumps({"prompt": new.prompt, "original": it.prompt,
                                "scene": it.scene.to_dict() if it.scene else None}) + "\n")
    return rewritten


def parse_variants(pairs: list[str] | None) -> dict[str, Path]:
    """``NAME=FILE`` pairs of ``--variants`` as a dict (names distinct, files present)."""
    out: dict[str, Path] = {}
    for pair in pairs or []:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"--variants {pair!r}: expected NAME=FILE with a name of letters, digits, _ . -")
        if name in out:
            raise ValueError(f"--variants: the name {name!r} is given twice")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--variants {pair}: no such file")
        out[name] = Path(path)
    return out
