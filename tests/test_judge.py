"""The VLM judge's rule book (synthworld.score.claims), its text-only calls (oracle backend, PromptSet) and the
parsing of a model judge's answers (t2v.compare.judge)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from synthworld.captions import dense_caption
from synthworld.detect import detect_video
from synthworld.generate import random_scene
from synthworld.render import render
from synthworld.score.claims import (
    CLAIM_TYPES,
    Fact,
    Happening,
    Reading,
    Thing,
    claims_of,
    read_caption,
    read_claim,
    read_detection,
    verdict,
    write_claim,
)
from synthworld.spec import Event, ObjectSpec, SceneSpec


def test_claims_of_oracle_captions_read_back_and_are_true_of_them():
    """Every claim of 300 random dense captions reads back to itself and is true of the caption it came from;
    every claim type occurs."""
    kinds = Counter()
    for seed in range(300):
        cap = dense_caption(random_scene(seed, duration=4.0, max_objects=3))
        reading = read_caption(cap)
        for f in claims_of(cap):
            text = write_claim(f)
            assert write_claim(read_claim(text)) == text
            assert verdict(f, reading), (cap, text)
            kinds[f.type] += 1
    assert set(kinds) == set(CLAIM_TYPES), kinds


def test_claims_of_a_two_object_scene():
    spec = SceneSpec("black", [ObjectSpec("circle", "red", "small", 0.2, 0.2), ObjectSpec("square", "blue", "large", 0.8, 0.8)],
                     [Event(1.0, 0, "move", "right", 0.12), Event(2.0, 1, "colour", colour="green"),
                      Event(3.0, 1, "move", "up", 0.12)], duration=4.0, seed=1)
    texts = [write_claim(f) for f in claims_of(dense_caption(spec))]
    assert texts[0] == "There are exactly two objects at the start."
    for t in ["There is a red circle at the start.", "The red circle starts in the top-left corner.",
              "The blue square starts in the bottom-right corner.", "The red circle moves to the right.",
              "The blue square moves up.", "At 1s, the red circle starts moving to the right.",
              "At 2s, the blue square turns green.", "At 3s, the green square starts moving up.",
              "First the red circle starts moving to the right, then the blue square turns green.",
              "First the blue square turns green, then the green square starts moving up."]:
        assert t in texts, (t, texts)


def test_detector_verdicts_true_for_own_scene_mostly_false_for_another():
    own, other = Counter(), Counter()
    n = Counter()
    for seed in range(20):
        spec, nxt = random_scene(seed, 4.0, max_objects=2), random_scene(seed + 1, 4.0, max_objects=2)
        reading = read_detection(detect_video(render(spec, size=48, fps=4), 4))
        for f in claims_of(dense_caption(spec)):
            own[f.type] += verdict(f, reading)
            n[f.type] += 1
        for f in claims_of(dense_caption(nxt)):
            other[f.type] += verdict(f, reading)
            n["other " + f.type] += 1
    for t in ("object", "position", "motion", "event", "order"):
        assert own[t] == n[t], (t, own, n)
        assert other[t] <= 0.35 * n["other " + t], (t, other, n)


def _thing(colour, shape, region="center", at_start=True, events=()):
    return Thing(colour, shape, at_start, region, {f"{colour} {shape}"},
                 [Happening(t, k, colour, shape, v) for t, k, v in events])


def test_verdict_rules_subjects_tolerance_and_order():
    r = Reading([_thing("red", "circle", "top-left", events=[(1.0, "move", "right"), (3.0, "stop", None)]),
                 _thing("blue", "square", "right", events=[(2.0, "colour", "green")])])
    r.things[1].names.add("green square")
    ok = {text: verdict(read_claim(text), r) for text in [
        "There are exactly two objects at the start.", "There is exactly one object at the start.",
        "There is a red circle at the start.", "There is a red square at the start.",
        "The red circle starts in the top-left corner.", "The red triangle starts in the top-left corner.",  # by colour
        "The blue square moves up.", "At 1.4s, the red circle starts moving to the right.",
        "At 1.6s, the red circle starts moving to the right.", "At 2s, the blue square turns green.",
        "First the red circle starts moving to the right, then the blue square turns green.",
        "First the blue square turns green, then the red circle starts moving to the right.",
        "First the blue square turns green, then the red circle stops.", "At 1s, a red circle appears."]}
    assert ok == {"There are exactly two objects at the start.": True, "There is exactly one object at the start.": False,
                  "There is a red circle at the start.": True, "There is a red square at the start.": False,
                  "The red circle starts in the top-left corner.": True,
                  "The red triangle starts in the top-left corner.": True, "The blue square moves up.": False,
                  "At 1.4s, the red circle starts moving to the right.": True,
                  "At 1.6s, the red circle starts moving to the right.": False,
                  "At 2s, the blue square turns green.": True,
                  "First the red circle starts moving to the right, then the blue square turns green.": True,
                  "First the blue square turns green, then the red circle starts moving to the right.": False,
                  "First the blue square turns green, then the red circle stops.": True,
                  "At 1s, a red circle appears.": False}


def test_a_vanished_object_does_not_take_the_events_of_a_new_one_of_its_name():
    cap = ("The video opens on a plain black background with a small red circle on the left. At 1.0s, the red circle "
           "disappears. At 2.0s, a small red circle appears on the right. At 3.0s, the red circle starts moving up.")
    r = read_caption(cap)
    assert [len(th.events) for th in r.things] == [1, 2]  # the disappearance; the appearance and the move
    assert not verdict(read_claim("The red circle moves up."), r)  # the one there at the start never moved
    assert verdict(read_claim("At 3s, the red circle starts moving up."), r)
    assert verdict(read_claim("First the red circle disappears, then a red circle appears."), r)


def test_read_claim_names_text_outside_the_grammar():
    with pytest.raises(ValueError, match="not a claim of the synthworld grammar"):
        read_claim("The cat sits on the mat.")
    with pytest.raises(ValueError, match="unknown claim type"):
        write_claim(Fact("smell"))


def test_parse_claims_and_verdicts_of_a_model_judge(caplog):
    from t2v.compare.judge import parse_claims, parse_verdict

    lines = '{"type": "colour", "claim": "There is a red object."}\n{"type": "Motion", "claim": "It moves left."},'
    assert parse_claims(lines) == [("colour", "There is a red object."), ("motion", "It moves left.")]
    fenced = '```json\n[{"type": "count", "claim": "One object."}, {"type": "vibe", "claim": "Calm."}]\n```'
    assert parse_claims(fenced) == [("count", "One object.")]
    assert "vibe" in caplog.text
    with pytest.raises(ValueError, match="no claim of a known type"):
        parse_claims("Sure! Here are the claims: none.")
    pretty = 'Here you go:\n{\n  "type": "shape",\n  "claim": "There is a circle."\n}\n{"type": "count", "claim": "One."}'
    assert parse_claims(pretty) == [("shape", "There is a circle."), ("count", "One.")]
    assert parse_claims('{"claims": [{"type": "order", "claim": "A, then B."}]}') == [("order", "A, then B.")]
    assert parse_claims('[{"type": "event", "claim": "At 1s, X."}, {"type": "mot') == [("event", "At 1s, X.")]
    assert [parse_verdict(a) for a in ["yes", "No.", " **Yes**, it does", "yesterday", "maybe"]] == \
        [True, False, True, None, None]


def test_oracle_answers_the_judges_text_calls():
    from captioner.backends.oracle import OracleBackend
    from captioner.prompting import PromptSet
    from t2v.compare.judge import parse_claims

    spec = random_scene(7, 4.0, max_objects=2)
    cap, other = dense_caption(spec), dense_caption(random_scene(8, 4.0, max_objects=2))
    p, backend = PromptSet(), OracleBackend()
    claims, bad = backend.generate([p.claims(cap), p.claims("A cat sits on a mat.")])
    assert isinstance(bad, ValueError) and "no '<colour> <shape>' object" in str(bad)  # fails alone
    claims = parse_claims(claims)
    assert [t for t, _ in claims] == [f.type for f in claims_of(cap)]
    assert "Prompt: " + cap in p.claims(cap).text  # a model reads the prompt from the text
    yes = backend.generate([p.verify(cap, c, 0.5) for _, c in claims])
    assert yes == ["yes"] * len(claims)
    verdicts = backend.generate([p.verify(other, c, 0.5) for _, c in claims])
    assert "no" in verdicts and "within 0.5 seconds" in p.verify(other, claims[0][1], 0.5).text


def test_oracle_diffsw_keeps_one_object_through_a_shape_flip(tmp_path):
    """A generated blob read as a square in one key-frame is still the moving circle: no disappear/appear, and
    the caption calls it by the shape it has in most key-frames."""
    from captioner.backends.oracle import OracleBackend
    from captioner.config import load_captioner_config
    from captioner.diffsw import ClipTask, DiffSWCaptioner
    from clipio.video import write_mp4

    circle = SceneSpec("black", [ObjectSpec("circle", "red", "large", 0.3, 0.5)], [Event(0.0, 0, "move", "right", 0.12)],
                       duration=4.0)
    square = SceneSpec("black", [ObjectSpec("square", "red", "large", 0.3, 0.5)], [Event(0.0, 0, "move", "right", 0.12)],
                       duration=4.0)
    v = render(circle, size=48, fps=2)
    v[0] = render(square, size=48, fps=2)[0]  # the first key-frame reads a square
    v[3] = render(square, size=48, fps=2)[3]
    path = write_mp4(tmp_path / "flip.mp4", v, 2)
    cfg = load_captioner_config("oracle")
    rec = next(DiffSWCaptioner(cfg, OracleBackend()).caption([ClipTask("flip", path, path.name)]))
    dense = rec["captions"]["dense"]
    assert "appear" not in dense and "vanish" not in dense and "disappear" not in dense, dense
    assert verdict(read_claim("There is a red circle at the start."), read_caption(dense)), dense
    assert verdict(read_claim("The red circle moves to the right."), read_caption(dense)), dense


def test_judge_with_a_model_backends_answers(tmp_path):
    """A model judge's answers as they come (a fenced JSON list, "Yes." with an explanation, an answer that is
    neither): claims parsed, verdicts read, an unreadable verdict left out of the rates, a prompt without claims
    not judged."""
    from t2v.compare.judge import Judge, judged_rows

    class Chatty:  # answers like an instruction-tuned VLM would, the captions from the oracle
        name = "chatty"

        def __init__(self, inner):
            self.inner = inner

        def generate(self, requests):
            out = []
            for r in requests:
                if r.task == "claims":
                    out.append('```json\n[{"type": "colour", "claim": "There is a red object at the start."},\n'
                               ' {"type": "motion", "claim": "The red circle moves to the right."}]\n```'
                               if "red" in r.fields["prompt"] else "I cannot split this.")
                elif r.task == "verify":
                    out.append("Yes. The description says so." if "right" not in r.fields["claim"] else "Unclear.")
                else:
                    out.extend(self.inner.generate([r]))
            return out

    judge = Judge("oracle")
    judge.backend = judge.claims_backend = Chatty(judge.backend)
    claims = judge.claims(["A red circle moves right.", "A blue thing."])
    assert claims[0] == [("colour", "There is a red object at the start."), ("motion", "The red circle moves to the right.")]
    assert isinstance(claims[1], str) and claims[1].startswith("no claims")
    spec = SceneSpec("black", [ObjectSpec("circle", "red", "large", 0.3, 0.5)], [Event(0.0, 0, "move", "right", 0.12)],
                     duration=4.0)
    caps = judge.captions([render(spec, size=48, fps=4)] * 2, 4.0, tmp_path / "v")
    assert all(c and "red circle" in c for c in caps)
    verdicts = judge.verify(caps, claims)
    assert verdicts == [[True, None], []]
    assert judged_rows(claims, verdicts) == [{"judge_colour": 1.0}, {}]
    assert np.isclose(judged_rows(claims, [[False, None], []])[0]["judge_colour"], 0.0)


def test_judge_through_the_hf_backend(annotated, tmp_path):
    """A transformers VLM folder as judge (the untrained miniature ShareCaptioner: the hf backend, its chat template
    and processor): every video gets a DiffSW caption, and answers that are not claims or verdicts leave the prompt
    unjudged instead of failing the run."""
    from t2v.compare.judge import Judge, judged_rows

    root, _ = annotated
    config = tmp_path / "judge.yaml"
    config.write_text(f"backend:\n  kind: hf\n  path: {root / 'untrained'}\n  max_new_tokens: 48\n"
                      "keyframes:\n  interval: 0.5\n  threshold: 1.0\n  embedder: pixels\n")
    judge = Judge(config)
    assert judge.backend.name == "hf"
    spec = random_scene(3, 2.0, max_objects=1)
    caps = judge.captions([render(spec, size=48, fps=4)], 4.0, tmp_path / "v")
    assert len(caps) == 1 and isinstance(caps[0], str) and caps[0].strip()
    claims = judge.claims([dense_caption(spec)])
    assert len(claims) == 1
    verdicts = judge.verify(caps, claims)
    by_oracle = Judge(config, claims_config="oracle")  # claims the detector can check, verdicts by the model
    oracle_claims = by_oracle.claims([dense_caption(spec)])
    assert [write_claim(read_claim(c)) for _, c in oracle_claims[0]] == [c for _, c in oracle_claims[0]]
    checked = by_oracle.verify(caps, oracle_claims)
    assert len(checked[0]) == len(oracle_claims[0])
    kinds = {t for t, _ in oracle_claims[0]}  # the rates count exactly the verdicts that were read
    want = {f"judge_{t}": np.mean(vs) for t in kinds
            if (vs := [v for (u, _), v in zip(oracle_claims[0], checked[0]) if u == t and v is not None])}
    assert judged_rows(oracle_claims, checked)[0] == pytest.approx(want)
    assert len(verdicts) == 1 and all(v in (True, False, None) for v in verdicts[0])
    assert len(verdicts[0]) == (0 if isinstance(claims[0], str) else len(claims[0]))
