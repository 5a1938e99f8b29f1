"""``t2v compare --judge CONFIG``: prompt following judged by a vision-language model, claim by claim.

On real prompts the detector cannot read the videos, and a CLIP score sees 77 tokens of a dense prompt. A judge
(any captioner backend: ``hf``, ``openai``, or the synthworld ``oracle``), in the way of T2V-CompBench and the
Davidsonian Scene Graph:

1. captions every generated video with DiffSW (key-frames, a detailed caption, differential captions, a summary:
   the code path of ``captioner run``; the videos are written as mp4 under ``OUT/judge/videos/``);
2. splits each prompt into atomic claims in one text-only call (``claims`` prompt: count, object, colour, shape,
   position, motion, event, order — one JSON object per line), once per prompt for every model;
3. checks each claim against the video's caption in one text-only call per claim (``verify`` prompt: yes / no).

Per prompt and claim type the share of claims found true is one row of the report (kind ``judge``: bootstrap CIs
over prompts, paired differences between models). Everything the judge said is in ``OUT/judge/<model>.jsonl``.
Where the prompts carry synthworld scenes, each claim the synthworld grammar can read
(:func:`synthworld.score.claims.read_claim`) also gets the detector's verdict on the same video, and the report
gives their agreement per claim type — how far the judge can be trusted.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synthworld.score.claims import CLAIM_LABELS, CLAIM_TYPES, EVENT_TOL, read_claim, read_detection, verdict

log = logging.getLogger(__name__)
JUDGE_KEYS = {t: f"judge_{t}" for t in CLAIM_TYPES}  # report category key per claim type


def judge_categories(keys: list[str]) -> list[dict]:
    """The report's categories for the judge keys present, in claim-type order."""
    return [{"key": k, "label": f"judge: {CLAIM_LABELS[t]}", "kind": "judge"} for t, k in JUDGE_KEYS.items()
            if k in keys]


def parse_claims(answer: str) -> list[tuple[str, str]]:
    """A ``claims`` answer → ``[(type, claim)]``: JSON objects one per line or spread over lines, one JSON list, or
    an object holding that list (``{"claims": [...]}``, as JSON modes answer); code fences and prose around them
    are skipped. Objects of an unknown type or without a claim are dropped (logged); ``ValueError`` when none is
    left."""
    decoder, items, k = json.JSONDecoder(), [], 0
    while (k := _next_json(answer, k)) >= 0:
        try:
            value, k = decoder.raw_decode(answer, k)
        except json.JSONDecodeError:
            k += 1
            continue
        if isinstance(value, dict) and "type" not in value:  # {"claims": [...]}
            value = next((v for v in value.values() if isinstance(v, list)), [])
        items += value if isinstance(value, list) else [value]
    out = []
    for it in items:
        kind = str(it.get("type", "")).strip().lower() if isinstance(it, dict) else ""
        claim = str(it.get("claim", "")).strip() if isinstance(it, dict) else ""
        if kind in CLAIM_TYPES and claim:
            out.append((kind, claim))
        else:
            log.warning("judge: dropped a claim with type %r (types: %s): %s", kind, ", ".join(CLAIM_TYPES), it)
    if not out:
        raise ValueError(f"the claims answer holds no claim of a known type: {answer[:200]!r}")
    return out


def _next_json(text: str, start: int) -> int:
    """Where the next JSON object or list may begin in ``text`` from ``start`` (-1: none)."""
    found = [i for i in (text.find("{", start), text.find("[", start)) if i >= 0]
    return min(found) if found else -1


def parse_verdict(answer: str) -> bool | None:
    """``yes`` → True, ``no`` → False (first word, any case and punctuation); anything else → None."""
    m = re.match(r"\W*(yes|no)\b", str(answer), flags=re.I)
    return None if m is None else m[1].lower() == "yes"


class Judge:
    """A captioner config (preset name, YAML, or trained captioner folder) used as a judge; DiffSW mode always.

    ``claims_config``: another captioner that splits the prompts into claims (default: the judge itself). With
    ``oracle`` on synthworld prompts the claims are in the grammar the detector checks, so a model judge's
    verdicts get an agreement figure too."""

    def __init__(self, config: str | Path, tolerance: float = EVENT_TOL, claims_config: str | Path | None = None):
        from captioner.config import build_backend, load_captioner_config
        from captioner.prompting import PromptSet

        self.config = str(config)
        self.cfg = load_captioner_config(config, ["run.mode=diffsw", "run.window_seconds=0"])
        self.backend = build_backend(self.cfg.backend)
        self.prompts = PromptSet(self.cfg.run.prompts)
        self.tolerance = tolerance
        self.claims_config = str(claims_config) if claims_config else None
        self.claims_backend, self.claims_prompts = self.backend, self.prompts
        if claims_config:
            ccfg = load_captioner_config(claims_config)
            self.claims_backend, self.claims_prompts = build_backend(ccfg.backend), PromptSet(ccfg.run.prompts)

    def claims(self, prompts: list[str]) -> list[list[tuple[str, str]] | str]:
        """Per prompt its claims, or the reason there are none (the prompt is then not judged)."""
        answers = self.claims_backend.generate([self.claims_prompts.claims(p) for p in prompts])
        out: list[list[tuple[str, str]] | str] = []
        for k, a in enumerate(answers):
            try:
                if isinstance(a, Exception):
                    raise a
                out.append(parse_claims(str(a)))
            except Exception as e:
                log.warning("judge: no claims for prompt %d: %s", k, e)
                out.append(f"no claims: {e}")
        return out

    def captions(self, videos: list[np.ndarray], fps: float, folder: Path, desc: str = "") -> list[str | None]:
        """DiffSW dense captions of ``videos`` ((F, H, W, 3) uint8), written as mp4 into ``folder`` first;
        None where captioning failed (logged)."""
        from captioner.diffsw import ClipTask, DiffSWCaptioner
        from clipio.video import write_mp4

        folder.mkdir(parents=True, exist_ok=True)
        tasks = []
        for k, v in enumerate(videos):
            path = write_mp4(folder / f"{k:03d}.mp4", v, fps)
            tasks.append(ClipTask(id=f"{k:03d}", path=path, video=path.name))
        records = {}
        for rec in tqdm(DiffSWCaptioner(self.cfg, self.backend).caption(tasks), total=len(tasks),
                        desc=f"judge: captioning ({desc})", unit="video"):
            records[rec["id"]] = rec
            if rec.get("status") != "ok":
                log.warning("judge: video %s of %s could not be captioned: %s", rec["id"], desc, rec.get("error"))
        return [(records.get(t.id, {}).get("captions") or {}).get("dense") for t in tasks]

    def verify(self, captions: list[str | None], claims: list[list[tuple[str, str]] | str]) -> list[list[bool | None]]:
        """Per video and claim: True / False, or None (no caption, or an answer that is neither yes nor no)."""
        where, requests = [], []
        for k, (cap, cl) in enumerate(zip(captions, claims)):
            if cap and not isinstance(cl, str):
                for j, (_, text) in enumerate(cl):
                    where.append((k, j))
                    requests.append(self.prompts.verify(cap, text, self.tolerance))
        out: list[list[bool | None]] = [[None] * (0 if isinstance(cl, str) else len(cl)) for cl in claims]
        answers = self.backend.generate(requests) if requests else []
        if failed := next((a for a in answers if isinstance(a, Exception)), None):
            log.warning("judge: %d verify calls failed; the first: %s", sum(isinstance(a, Exception) for a in answers),
                        failed)
        for (k, j), a in zip(where, answers):
            out[k][j] = None if isinstance(a, Exception) else parse_verdict(str(a))
        if unread := sum(out[k][j] is None for k, j in where):
            log.warning("judge: %d of %d verdicts were neither yes nor no (or failed); they are left out",
                        unread, len(where))
        return out


def judged_rows(claims: list[list[tuple[str, str]] | str], verdicts: list[list[bool | None]]) -> list[dict]:
    """Per prompt: ``judge_<type>`` = the share of its claims of that type found true (types it has, verdicts given)."""
    rows = []
    for cl, vs in zip(claims, verdicts):
        by: dict[str, list[bool]] = defaultdict(list)
        if not isinstance(cl, str):
            for (kind, _), v in zip(cl, vs):
                if v is not None:
                    by[kind].append(v)
        rows.append({JUDGE_KEYS[t]: float(np.mean(v)) for t, v in by.items()})
    return rows


def detector_verdicts(claims: list[list[tuple[str, str]] | str], dets: list) -> list[list[bool | None]]:
    """The detector's verdict on each claim the synthworld grammar reads (None for others, or without a detection)."""
    out = []
    for cl, det in zip(claims, dets):
        if isinstance(cl, str):
            out.append([])
            continue
        reading = read_detection(det) if det is not None else None
        row: list[bool | None] = []
        for _, text in cl:
            try:
                row.append(verdict(read_claim(text), reading) if reading is not None else None)
            except ValueError:
                row.append(None)
        out.append(row)
    return out


def agreement(claims: list[list[tuple[str, str]] | str], judge: list[list[bool | None]],
              detector: list[list[bool | None]]) -> dict:
    """Per claim type (and ``all``): claims both judged, how many verdicts agree, and the rate; with the
    detector's share of true claims next to the judge's, so a judge that says yes to everything shows."""
    acc: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for cl, js, ds in zip(claims, judge, detector):
        if isinstance(cl, str):
            continue
        for (kind, _), j, d in zip(cl, js, ds):
            if j is not None and d is not None:
                acc[kind].append((j, d))
                acc["all"].append((j, d))
    out = {}
    for kind in [*CLAIM_TYPES, "all"]:
        pairs = acc.get(kind)
        if pairs:
            j, d = np.array(pairs).T
            out[kind] = {"n": len(pairs), "agree": int((j == d).sum()), "rate": float((j == d).mean()),
                         "judge_true": float(j.mean()), "detector_true": float(d.mean())}
    return out


def split_claims(judge: Judge, prompts: list[str]) -> list[list[tuple[str, str]] | str]:
    """The prompts' claims (text-only calls, before any video is made); ``ValueError`` when the judge reads claims
    in none of them (a synthworld oracle on real prompts, a model that does not answer in JSON)."""
    claims = judge.claims(prompts)
    if all(isinstance(c, str) for c in claims):
        raise ValueError(f"--judge {judge.claims_config or judge.config}: no claims in any of the {len(prompts)} "
                         f"prompts (first: {claims[0] if claims else 'no prompts'}); a judge must answer the claims "
                         "prompt with JSON objects {\"type\", \"claim\"}")
    return claims


def judge_models(judge: Judge, prompts: list[str], videos: dict[str, list[np.ndarray]], dets: dict[str, list],
                 fps: dict[str, float], out: Path, claims: list | None = None) -> tuple[dict[str, list[dict]], dict]:
    """Judge every model's videos of ``prompts`` (``fps`` per model). Returns per model its per-prompt ``judge_<type>`` rows, and
    the report's ``judge`` section (config, claim counts, per model its agreement with the detector)."""
    folder = out / "judge"
    folder.mkdir(parents=True, exist_ok=True)
    claims = claims if claims is not None else split_claims(judge, prompts)
    with open(folder / "claims.jsonl", "w") as f:
        for p, cl in zip(prompts, claims):
            f.write(json.dumps({"prompt": p, "claims": [{"type": t, "claim": c} for t, c in cl]
                                if not isinstance(cl, str) else [], "error": cl if isinstance(cl, str) else None}) + "\n")
    rows, section = {}, {"config": judge.config, "claims_by": judge.claims_config or judge.config,
                         "tolerance_s": judge.tolerance,
                         "prompts_with_claims": sum(not isinstance(c, str) for c in claims),
                         "claims": {t: sum(k == t for cl in claims if not isinstance(cl, str) for k, _ in cl)
                                    for t in CLAIM_TYPES}, "agreement": {}}
    for name, vids in videos.items():
        caps = judge.captions(vids, fps[name], folder / "videos" / name, desc=name)
        verdicts = judge.verify(caps, claims)
        rows[name] = judged_rows(claims, verdicts)
        det_v = detector_verdicts(claims, dets.get(name) or [None] * len(vids))
        if any(v is not None for row in det_v for v in row):
            section["agreement"][name] = agreement(claims, verdicts, det_v)
        with open(folder / f"{name}.jsonl", "w") as f:
            for k, (p, cap, cl) in enumerate(zip(prompts, caps, claims)):
                items = [] if isinstance(cl, str) else [
                    {"type": t, "claim": c, "judge": v, "detector": d}
                    for (t, c), v, d in zip(cl, verdicts[k], det_v[k] or [None] * len(cl))]
                f.write(json.dumps({"prompt": p, "video": f"videos/{name}/{k:03d}.mp4", "caption": cap,
                                    "claims": items}) + "\n")
    return rows, section


def agreement_note(section: dict) -> list[str]:
    """The report's note on the judge: what it is and, per model, its agreement with the detector per claim type."""
    split = "" if section["claims_by"] == section["config"] else f" (by {section['claims_by']})"
    notes = [f"**VLM judge** ({section['config']}): each video captioned with DiffSW, each prompt split into atomic "
             f"claims{split}, each claim checked against the caption (events within {section['tolerance_s']:g} s); "
             f"{section['prompts_with_claims']} prompts with claims; everything it said is in `judge/`."]
    for name, ag in section.get("agreement", {}).items():
        parts = [f"{t} {a['rate']:.2f} (n={a['n']})" for t, a in ag.items() if t != "all"]
        if "all" in ag:
            notes.append(f"Judge vs detector on {name}'s videos: {ag['all']['rate']:.2f} of {ag['all']['n']} claims "
                         f"agree; per type: {', '.join(parts)}.")
    return notes
