"""What do a VLM's visual tokens hold? Linear probes on the fast-mode grid's tokens, per vision tower.

The decoder can only name what the tokens it is given carry. This bench decodes each record's fast-mode
key-frame grid (exactly what ``captioner run --config mini-fast`` sends), takes the tokens the decoder
would consume (``get_image_features``: tower → feature layer → projector, all tokens concatenated) and fits
one linear classifier per attribute on the training records' tokens: start region (3×3), direction of the
first move, colour, shape. Accuracy on the held-out records, per model folder, next to chance (the most
frequent class), and the share of the tokens' variance each attribute explains. A tower whose probe is at
chance for an attribute hides it from the decoder; one whose probe reads it leaves the decoder to learn to
read it, the harder the smaller that share.

    make captioner   # the annotations and the model folders
    python bench/captioner_probe.py runs/captioner/untrained runs/captioner/pretrained \\
        --out runs/bench/captioner_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from captioner.config import load_captioner_config
from captioner.training.conversations import FrameSource
from captioner.training.train import load_records
from captioner.training.vision_pretrain import image_inputs, image_tokens
from synthworld.spec import region_of

ATTRIBUTES = ("region", "direction", "colour", "shape")


def attributes(record: dict) -> dict[str, str | None]:
    """The probed facts of a one-object record, from its scene (direction: of its first move; None if none)."""
    scene = record["meta"]["scene"]
    obj = scene["objects"][0]
    moves = [e for e in scene["events"] if e["kind"] == "move" and e.get("obj", 0) == 0]
    return {"region": region_of(obj["x"], obj["y"]), "direction": moves[0]["direction"] if moves else None,
            "colour": obj["colour"], "shape": obj["shape"]}


def grids(records: list[dict], processor, captioner: str = "mini-fast") -> dict[str, torch.Tensor]:
    frames = FrameSource(load_captioner_config(captioner))
    images = [frames.grid(r)[0] for r in tqdm(records, desc="fast grids", unit="clip")]
    return image_inputs(processor, images)


@torch.no_grad()
def visual_tokens(model_dir: Path, pixels: dict[str, torch.Tensor], batch: int = 64, flat: bool = True) -> torch.Tensor:
    """(records, tokens × dim): what the decoder of ``model_dir`` is given for each grid, tokens concatenated
    (``flat=False``: (records, tokens, dim))."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    n = len(pixels["pixel_values"])
    tokens = torch.cat([image_tokens(model, {k: v[i:i + batch] for k, v in pixels.items()}) for i in range(0, n, batch)])
    return tokens.flatten(1) if flat else tokens


def labelled_rows(x_train: torch.Tensor, y_train: list, x_test: torch.Tensor, y_test: list, what: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """``(x_train, y_train, x_test, y_test, classes)`` of the labelled rows, labels as class indices: rows
    labelled None, and held-out rows of a class no training row has, are left out."""
    keep_tr = [i for i, y in enumerate(y_train) if y is not None]
    classes = sorted({y_train[i] for i in keep_tr})
    keep_te = [i for i, y in enumerate(y_test) if y in classes]
    if len(classes) < 2 or not keep_te:
        raise ValueError(f"{what} needs two classes and a held-out record; got {classes} and {len(keep_te)}")
    index = {c: k for k, c in enumerate(classes)}
    return (x_train[keep_tr], torch.tensor([index[y_train[i]] for i in keep_tr]), x_test[keep_te],
            torch.tensor([index[y_test[i]] for i in keep_te]), classes)


def scores(acc: float, acc_train: float, y_test: torch.Tensor, num_classes: int) -> dict[str, float]:
    """A fitted classifier's record: held-out and train accuracy, the held-out majority-class rate, n."""
    majority = float(torch.bincount(y_test, minlength=num_classes).max()) / len(y_test)
    return {"heldout": round(acc, 3), "train": round(acc_train, 3), "chance": round(majority, 3), "n": len(y_test)}


def linear_probe(x_train: torch.Tensor, y_train: list, x_test: torch.Tensor, y_test: list, steps: int = 500,
                 lr: float = 1e-2, l2: float = 1e-3, seed: int = 0) -> dict[str, float]:
    """Multinomial logistic regression on standardised features (full batch, Adam); records whose label is
    None are left out. Returns held-out accuracy, train accuracy and the held-out majority-class rate."""
    xtr, ytr, xte, yte, classes = labelled_rows(x_train, y_train, x_test, y_test, "a linear probe")
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(xtr.shape[1], len(classes), generator=g) * 0.01).requires_grad_()
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(xtr @ w + b, ytr) + l2 * w.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float(((xte @ w + b).argmax(1) == yte).float().mean())
        acc_tr = float(((xtr @ w + b).argmax(1) == ytr).float().mean())
    return scores(acc, acc_tr, yte, len(classes))


def explained_variance(x: torch.Tensor, labels: list) -> float:
    """The share of the features' variance that an attribute's class means explain (between-class over total
    variance; records whose label is None left out): how loud a fact is in the tokens, where the probe says
    only whether it can be read at all."""
    keep = [i for i, y in enumerate(labels) if y is not None]
    x = x[keep]
    ys = [labels[i] for i in keep]
    centred = x - x.mean(0)
    means = {c: centred[[i for i, y in enumerate(ys) if y == c]].mean(0) for c in set(ys)}
    between = torch.stack([means[y] for y in ys])
    return float(between.pow(2).sum(1).mean() / centred.pow(2).sum(1).mean())


def add_data_arguments(ap: argparse.ArgumentParser, what: str) -> None:
    """The model folders and the clips a bench on the fast grid's tokens reads (shared by the token benches)."""
    ap.add_argument("models", nargs="+", type=Path, help="VLM folders (LLaVA, Idefics3) sharing one processor")
    ap.add_argument("--annotations", type=Path, default=Path("runs/captioner/data/annotations.jsonl"))
    ap.add_argument("--heldout-manifest", type=Path, default=Path("runs/captioner/data/heldout/manifest.jsonl"))
    ap.add_argument("--train", type=int, default=1500, help=f"first N annotated records {what}")


def labelled_grids(a: argparse.Namespace) -> tuple[list, list, dict, dict, list[dict], list[dict]]:
    """``(train, test, pixels_train, pixels_test, facts_train, facts_test)``: the usable records (ok, with a
    scene) of ``--annotations`` (the first ``--train``) and ``--heldout-manifest``, their fast grids as the
    first model's processor makes them, and their probed facts."""
    from transformers import AutoProcessor

    usable = lambda rs: [r for r in rs if r.get("status", "ok") == "ok" and r.get("meta", {}).get("scene")]  # noqa: E731
    train, test = usable(load_records(a.annotations))[: a.train], usable(load_records(a.heldout_manifest))
    processor = AutoProcessor.from_pretrained(a.models[0])
    return (train, test, grids(train, processor), grids(test, processor), [attributes(r) for r in train],
            [attributes(r) for r in test])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(ap, "fit the probes")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/captioner_probe.json"))
    a = ap.parse_args(argv)

    train, test, pv_train, pv_test, lab_train, lab_test = labelled_grids(a)
    rows = {}
    for folder in a.models:
        xtr, xte = visual_tokens(folder, pv_train), visual_tokens(folder, pv_test)
        rows[str(folder)] = {k: {**linear_probe(xtr, [f[k] for f in lab_train], xte, [f[k] for f in lab_test], a.steps),
                                 "variance_share": round(explained_variance(xtr, [f[k] for f in lab_train]), 3)}
                             for k in ATTRIBUTES}
    result = {"train": len(train), "heldout": len(test), "tokens_dim": int(xtr.shape[1]), "probes": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"linear probes on the fast grid's visual tokens ({len(train)} records fit, {len(test)} held out):")
    print(f"  {'model':<40} " + "  ".join(f"{k:>14}" for k in ATTRIBUTES))
    for name, r in rows.items():
        print(f"  {name[-40:]:<40} " + "  ".join(f"{r[k]['heldout']:.2f} (ch {r[k]['chance']:.2f})" for k in ATTRIBUTES))
        print(f"  {'  share of the tokens variance':<40} " + "  ".join(f"{r[k]['variance_share']:>14.3f}"
                                                                 for k in ATTRIBUTES))
    print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
