"""Prompts in other words (synthworld.paraphrase): every fact of the scene kept, none of the oracle's patterns."""

from __future__ import annotations

import re

from synthworld.captions import dense_caption
from synthworld.dataset import DEMO_WORLD, World
from synthworld.paraphrase import NOUNS, PACES, PLACES, SIZES, WAYS, paraphrase
from synthworld.simulate import states_at
from synthworld.spec import region_of, speed_name


def _secs(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".")


def _alt(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


def test_paraphrases_keep_every_fact_in_other_words():
    """For 150 scenes of a busy world and the demo's, two wordings each: the background, each object's size, colour,
    noun and start place, and each event — in the sentence that names its second — its object and its direction
    with the speed word or new colour; no sentence pattern of the oracle's."""
    specs = [World(max_objects=3, max_events=2).scene(s, 4.0) for s in range(100)] + \
        [DEMO_WORLD.scene(s, 4.0) for s in range(50)]
    for spec in specs:
        for phrasing in (1, 2):
            text = paraphrase(spec, phrasing)
            assert not re.search(r"\bAt \d+(\.\d+)?s\b|Right from the start|In total|The video opens|The clip starts", text)
            bg = "gr[ae]y" if spec.background == "gray" else spec.background
            assert re.search(rf"\b{bg}\b", text), (spec.background, text)
            start = states_at(spec, 0.0)
            for o, s in zip(spec.objects, start):
                if not s.visible:
                    continue
                colour = "gr[ae]y" if s.colour == "gray" else s.colour
                noun = _alt(NOUNS[o.shape])
                size = _alt(SIZES[o.size])
                place = _alt(PLACES[region_of(s.x, s.y)])
                described = (rf"{size} {colour} {noun} {place}|{noun}, {size} and {colour}, {place}|"
                             rf"{place} (?:sits|rests|there is) an? (?:{size} {colour} {noun}|{noun}, {size} and {colour})")
                assert re.search(described, text, flags=re.I), (o, s, text)
            sentences = re.split(r"(?<=\.) ", text)
            for e in spec.events:
                when = "(?:from the very first frame|straight away|as soon as the clip begins|from the beginning)" \
                    if e.t == 0 else rf"(?<![\d.]){re.escape(_secs(e.t))}(?: seconds|-second)"
                hits = [x for x in sentences if re.search(when, x, flags=re.I)]
                assert hits, (e, text)
                noun = _alt(NOUNS[spec.objects[e.obj].shape])
                need = [rf"(?:{noun}|\bit\b)" if len(spec.objects) == 1 else noun]
                if e.kind == "move":
                    need += [_alt(WAYS[e.direction]), _alt(PACES[speed_name(e.speed)])]
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
