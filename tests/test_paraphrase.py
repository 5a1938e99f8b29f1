"""Prompts in other words (synthworld.paraphrase): every fact of the scene kept, none of the oracle's patterns."""

from __future__ import annotations

import re

import pytest

from synthworld.captions import dense_caption
from synthworld.dataset import DEMO_WORLD, World
from synthworld.paraphrase import TRAINING, UNSEEN, paraphrase
from synthworld.simulate import states_at
from synthworld.spec import region_of, speed_name


def _secs(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".")


def _alt(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


@pytest.mark.parametrize("vocab", [TRAINING, UNSEEN], ids=["training", "unseen"])
def test_paraphrases_keep_every_fact_in_other_words(vocab):
    """For 150 scenes of a busy world and the demo's, two wordings each: the background, each object's size, colour,
    noun and start place, and each event — in the sentence that names its second — its object and its direction
    with the speed word or new colour; no sentence pattern of the oracle's."""
    specs = [World(max_objects=3, max_events=2).scene(s, 4.0) for s in range(100)] + \
        [DEMO_WORLD.scene(s, 4.0) for s in range(50)]
    for spec in specs:
        for phrasing in (1, 2):
            text = paraphrase(spec, phrasing, vocab)
            assert not re.search(r"\bAt \d+(\.\d+)?s\b|Right from the start|In total|The video opens|The clip starts", text)
            bg = "gr[ae]y" if spec.background == "gray" else spec.background
            assert re.search(rf"\b{bg}\b", text), (spec.background, text)
            start = states_at(spec, 0.0)
            for o, s in zip(spec.objects, start):
                if not s.visible:
                    continue
                colour = "gr[ae]y" if s.colour == "gray" else s.colour
                noun = _alt(vocab.nouns[o.shape])
                size = _alt(vocab.sizes[o.size])
                place = _alt(vocab.places[region_of(s.x, s.y)])
                described = (rf"{size} {colour} {noun} {place}|{noun}, {size} and {colour}, {place}|"
                             rf"{place} {_alt(vocab.sits)} an? (?:{size} {colour} {noun}|{noun}, {size} and {colour})")
                assert re.search(described, text, flags=re.I), (o, s, text)
            sentences = re.split(r"(?<=\.) ", text)
            for e in spec.events:
                when = _alt(vocab.at_zero) if e.t == 0 else rf"(?<![\d.]){re.escape(_secs(e.t))}(?: seconds|-second| s\b)"
                hits = [x for x in sentences if re.search(when, x, flags=re.I)]
                assert hits, (e, text)
                noun = _alt(vocab.nouns[spec.objects[e.obj].shape])
                need = [rf"(?:{noun}|\bit\b)" if len(spec.objects) == 1 else noun]
                if e.kind == "move":
                    need += [_alt(vocab.ways[e.direction]), _alt(vocab.paces[speed_name(e.speed)])]
                if e.kind == "colour":
                    need.append("gr[ae]y" if e.colour == "gray" else e.colour)
                assert any(all(re.search(w, x, flags=re.I) for w in need) for x in hits), (e, need, hits)


def test_paraphrases_are_reproducible_and_differ_by_phrasing_and_from_the_oracle():
    specs = [DEMO_WORLD.scene(s, 4.0) for s in range(40)]
    one = [paraphrase(s, 1) for s in specs]
    assert one == [paraphrase(s, 1) for s in specs]
    two = [paraphrase(s, 2) for s in specs]
    assert sum(a != b for a, b in zip(one, two)) >= 36
    assert not set(one) & {dense_caption(s) for s in specs}


def test_varied_captions_mix_the_oracles_wording_with_paraphrases():
    """``captions.varied`` of a synthworld record: per clip either the oracle's dense caption or one of three
    paraphrases, chosen by the scene — about a quarter the oracle's."""
    from synthworld.dataset import VARIED_PHRASINGS, varied_caption

    specs = [DEMO_WORLD.scene(s, 4.0) for s in range(200)]
    varied = [varied_caption(s) for s in specs]
    assert varied == [varied_caption(s) for s in specs]
    oracle = sum(v == dense_caption(s) for v, s in zip(varied, specs))
    paras = sum(v in {paraphrase(s, 100 + k) for k in range(1, VARIED_PHRASINGS + 1)} for v, s in zip(varied, specs))
    assert oracle + paras == len(specs) and 30 <= oracle <= 70, oracle


def test_held_out_combinations_never_in_training_clips_always_in_unseen_prompts(tmp_path):
    """Compositional generalisation: a world that holds out colour × shape × direction combinations renders none
    of them, records them in the manifest, and `t2v prompts --combos unseen` writes held-out scenes that each hold
    one (and are none of the training scenes); bad combinations are named."""
    from dataclasses import replace

    from clipio.manifest import read_manifest
    from synthworld.dataset import combinations, holdout_combinations, write_synth_dataset
    from synthworld.spec import SceneSpec
    from t2v.compare.prompts import load_prompts, write_heldout_prompts

    held = holdout_combinations(12, seed=3)
    assert len(held) == 12 and held == holdout_combinations(12, seed=3) != holdout_combinations(12, seed=4)
    world = replace(DEMO_WORLD, holdout=held)
    synth = write_synth_dataset(tmp_path / "d", 12, seed=0, size=32, fps=4.0, seconds=2.0, world=world, workers=1,
                                progress=False)
    recs = read_manifest(synth.manifest)
    assert all(tuple(r["meta"]["world"]["holdout"]) == held for r in recs)
    trained = [SceneSpec.from_dict(r["meta"]["scene"]) for r in recs]
    assert not any(set(combinations(s)) & set(held) for s in trained)
    unseen = load_prompts(write_heldout_prompts(tmp_path / "u.jsonl", 10, 2.0, train_manifest=synth.manifest,
                                                combos="unseen"))
    assert all(set(combinations(it.scene)) & set(held) for it in unseen)
    assert not {it.scene.seed for it in unseen} & {s.seed for s in trained}
    seen = load_prompts(write_heldout_prompts(tmp_path / "s.jsonl", 10, 2.0, train_manifest=synth.manifest))
    assert not any(set(combinations(it.scene)) & set(held) for it in seen)
    plain = write_synth_dataset(tmp_path / "p", 2, seed=0, size=32, fps=4.0, seconds=2.0, world=DEMO_WORLD, workers=1,
                                progress=False)
    with pytest.raises(ValueError, match="holds out no colour"):
        write_heldout_prompts(tmp_path / "x.jsonl", 2, 2.0, train_manifest=plain.manifest, combos="unseen")
    with pytest.raises(ValueError, match="expected 'colour shape direction'"):
        replace(DEMO_WORLD, holdout=("red ball left",))
    with pytest.raises(ValueError, match="at most a quarter"):
        holdout_combinations(50)


def test_the_unseen_vocabulary_is_in_no_training_caption():
    """No word or frame of UNSEEN occurs in the oracle's dense captions or the training paraphrases (varied)."""
    from synthworld.dataset import varied_caption

    specs = [World(max_objects=3, max_events=3).scene(s, 4.0) for s in range(150)] + \
        [DEMO_WORLD.scene(s, 4.0) for s in range(50)]
    corpus = " ".join(dense_caption(s) + " " + varied_caption(s) + " " + paraphrase(s, 7) for s in specs).lower()
    phrases = [w for group in (UNSEEN.nouns, UNSEEN.sizes, UNSEEN.places, UNSEEN.ways, UNSEEN.paces)
               for ws in group.values() for w in ws]
    phrases += UNSEEN.starts + UNSEEN.turns + UNSEEN.stops + UNSEEN.vanishes + UNSEEN.at_zero + UNSEEN.sits
    phrases += [f.split("{")[0].strip() or f.split("}")[-1].strip() for f in
                UNSEEN.recolours + UNSEEN.appears + UNSEEN.at_t + UNSEEN.backgrounds + UNSEEN.leads]
    found = [p for p in phrases if re.search(rf"\b{re.escape(p.lower())}\b", corpus)]
    assert not found, found
    # nor does an UNSEEN phrase hold a training phrase inside it ("high up on the left" holds "on the left")
    from synthworld import captions

    known = [w for group in (TRAINING.places, TRAINING.ways, TRAINING.paces, captions.REGION_PHRASES,
                             captions.DIRECTION_PHRASES, captions.SPEED_PHRASES) for ws in group.values() for w in ws]
    known += TRAINING.starts + TRAINING.turns + TRAINING.stops + captions.START_VERBS + captions.TURN_VERBS
    inside = [(p, k) for p in phrases for k in known if re.search(rf"\b{re.escape(k)}\b", p)]
    assert not inside, inside


def test_combinations_follow_the_colour_on_screen_and_rare_unseen_scenes_are_found():
    """A colour change before or during a move is another combination; held-out scenes holding one of only three
    left-out combinations are found (seeds whose candidates hold none are passed over)."""
    from dataclasses import replace

    from synthworld.dataset import combinations, heldout_specs, holdout_combinations
    from synthworld.spec import Event, ObjectSpec, SceneSpec

    spec = SceneSpec("black", [ObjectSpec("circle", "red", "large", 0.5, 0.5)],
                     [Event(0.0, 0, "move", "left", 0.12), Event(1.0, 0, "colour", colour="blue"),
                      Event(2.0, 0, "stop"), Event(2.5, 0, "colour", colour="green"), Event(3.0, 0, "move", "up", 0.12)],
                     duration=4.0)
    assert combinations(spec) == ["blue circle left", "green circle up", "red circle left"]
    held = holdout_combinations(3, seed=1)
    unseen = heldout_specs(8, 4.0, world=replace(DEMO_WORLD, holdout=held, combos="unseen"))
    assert len(unseen) == 8 and all(set(combinations(s)) & set(held) for s in unseen)
