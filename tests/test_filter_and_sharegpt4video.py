"""Semantic filtering (real MiniLM CLS embeddings) and ShareGPT4Video 40K import/export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from captioner.cli import main
from captioner.filter import TextEmbedder, filter_manifest, novelty_filter
from captioner.sharegpt4video import export_sharegpt4video, import_sharegpt4video
from clipio.manifest import ManifestWriter, read_manifest, resolve_video, validate_record

NEAR_A = "a red circle moves left"
NEAR_B = "a red circle is moving to the left"
UNRELATED = ["a blue square jumps up and down", "a person is cooking pasta in a kitchen",
             "two green triangles rotate slowly in the center"]


# ---------------------------------------------------------------- novelty_filter on hand-made vectors


def test_novelty_filter_greedy_in_input_order():
    # e0, then e0 again (dup of 0), e1 (orthogonal), a vector at 45° between e0 and e1 (cos 0.707 to both),
    # and e2. With threshold 0.8: 0 kept, 1 dropped (cos 1), 2 kept, 3 kept (0.707 < 0.8), 4 kept.
    s = np.sqrt(0.5)
    x = np.array([[1, 0, 0], [2, 0, 0], [0, 1, 0], [s, s, 0], [0, 0, 3]], dtype=np.float32)
    assert novelty_filter(x, 0.8) == [0, 2, 3, 4]
    # At 0.7 the 45° vector is too close to the kept e0 -> dropped.
    assert novelty_filter(x, 0.7) == [0, 2, 4]
    # Greedy, not global: dropping item 1 must not let a later item compare against it.
    y = np.array([[1, 0], [np.cos(0.5), np.sin(0.5)], [np.cos(1.0), np.sin(1.0)]], dtype=np.float32)
    assert novelty_filter(y, np.cos(0.6)) == [0, 2]  # 1 is within 0.5 rad of 0; 2 is 1.0 rad from 0


def test_novelty_filter_blocks_match_sequential_and_threshold_one_keeps_distinct():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 8)).astype(np.float32)
    x = np.concatenate([base, base[:20] + 0.05 * rng.normal(size=(20, 8)).astype(np.float32)])  # 20 near-dups
    x = x[rng.permutation(len(x))]
    expected = novelty_filter(x, 0.97, block=1)  # plain sequential greedy
    assert novelty_filter(x, 0.97, block=7) == expected
    assert len(expected) < len(x)
    assert novelty_filter(base, 1.0) == list(range(len(base)))
    assert novelty_filter(np.zeros((0, 8), np.float32), 0.9) == []
    with pytest.raises(ValueError, match="zero vector"):
        novelty_filter(np.zeros((2, 8), np.float32), 0.9)


# ---------------------------------------------------------------- real MiniLM CLS embedder


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder("minilm", batch_size=2)  # batch 2: several batches of different padding


def test_minilm_ranks_paraphrase_above_unrelated(embedder):
    emb = embedder([NEAR_A, NEAR_B, *UNRELATED])
    assert emb.shape == (5, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2:].max() and sims[0, 1] > sims[1, 2:].max()
    # batching and padding must not change an embedding
    np.testing.assert_allclose(embedder([NEAR_B])[0], emb[1], atol=1e-5)


def _write_manifest(path: Path, shorts: list[str], n_errors: int = 1) -> None:
    with ManifestWriter(path) as w:
        for i, s in enumerate(shorts):
            w.write({"id": f"c{i}", "video": f"clips/c{i}.mp4", "status": "ok", "error": None,
                     "captions": {"short": s, "dense": f"dense {i}"}, "meta": {"k": i}})
        for j in range(n_errors):
            w.write({"id": f"e{j}", "video": f"clips/e{j}.mp4", "status": "error", "error": "OSError: boom"})


def test_filter_manifest_drops_near_duplicate(tmp_path, embedder):
    shorts = [NEAR_A, UNRELATED[0], NEAR_B, UNRELATED[1], UNRELATED[2]]
    emb = embedder(shorts)
    sims = emb @ emb.T
    near = sims[0, 2]
    distinct = max(sims[i, j] for i in range(5) for j in range(i) if {i, j} != {0, 2})
    assert near > distinct
    threshold = float((near + distinct) / 2)  # measured, between the paraphrase and everything else

    src = tmp_path / "m.jsonl"
    _write_manifest(src, shorts)
    out = tmp_path / "kept.jsonl"
    summary = filter_manifest(src, out, threshold=threshold, embedder=embedder)
    assert summary == {"input": 6, "kept": 4, "dropped_similar": 1, "errors": 1, "truncated": 0}
    kept = read_manifest(out, strict=True)
    assert [r["id"] for r in kept] == ["c0", "c1", "c3", "c4"]  # the later paraphrase c2 is dropped
    originals = {r["id"]: r for r in read_manifest(src)}
    assert all(r == originals[r["id"]] for r in kept)  # records unchanged

    # a threshold above every similarity keeps every ok record
    assert filter_manifest(src, out, threshold=1.01, embedder=embedder)["kept"] == 5


def test_filter_manifest_errors_name_record_and_field(tmp_path, embedder):
    src = tmp_path / "m.jsonl"
    with ManifestWriter(src) as w:
        w.write({"id": "c0", "video": "a.mp4", "status": "ok", "captions": {"short": "x"}})
        w.write({"id": "c1", "video": "b.mp4", "status": "ok", "captions": {"dense": "only dense"}})
    with pytest.raises(ValueError, match=r"'c1' has no caption field 'short'"):
        filter_manifest(src, tmp_path / "out.jsonl", embedder=embedder)
    with pytest.raises(ValueError, match="is the input manifest"):
        filter_manifest(src, src, field="dense", embedder=embedder)


def test_filter_cli_rebases_video_paths(tmp_path, capsys):
    src = tmp_path / "m.jsonl"
    _write_manifest(src, [NEAR_A, NEAR_B, UNRELATED[1]], n_errors=0)
    out = tmp_path / "sub" / "kept.jsonl"
    assert main(["filter", str(src), "--out", str(out), "--threshold", "0.95"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"input": 3, "kept": 2, "dropped_similar": 1, "errors": 0, "truncated": 0}
    kept = read_manifest(out)
    assert [r["id"] for r in kept] == ["c0", "c2"]
    assert resolve_video(out, kept[1]).resolve() == resolve_video(src, read_manifest(src)[2]).resolve()


def test_minilm_pools_as_trained_mean_over_the_mask(embedder):
    """MiniLM's sentence-transformers config says mean pooling; a folder without one gets BERT's CLS."""
    import torch

    assert embedder.pooling == "mean" and embedder.max_length == 256  # 1_Pooling/config.json, sentence_bert_config
    texts = [NEAR_A, UNRELATED[1]]  # different lengths: the short one is padded in the batch
    batch = embedder.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = embedder.model(**batch).last_hidden_state  # (2, L, 384)
    m = batch["attention_mask"].unsqueeze(-1).float()
    mean = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    cls = torch.nn.functional.normalize(h[:, 0], dim=-1).numpy()
    got = embedder(texts)
    np.testing.assert_allclose(got, mean, atol=1e-5)
    assert np.abs(got - cls).max() > 0.1  # the two poolings differ: the check above has teeth


def test_pooling_is_read_from_the_model_folder(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from captioner.filter import model_pooling, resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    folder = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    tok.save_pretrained(folder)
    assert model_pooling(folder) == "cls"  # a plain encoder: CLS, as the paper does with BERT
    plain = TextEmbedder(str(folder))
    assert (plain.pooling, plain.max_length) == ("cls", 64)  # capped by its position embeddings
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "pool").mkdir()
    (folder / "pool" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": False,
                                                             "pooling_mode_max_tokens": True}))
    assert model_pooling(folder) == "max"
    maxed = TextEmbedder(str(folder))
    assert maxed.pooling == "max" and maxed(["a red circle", "a blue square moves left"]).shape == (2, 16)
    (folder / "pool" / "config.json").write_text(json.dumps({"pooling_mode_weightedmean_tokens": True}))
    with pytest.raises(ValueError, match="pooling_mode_weightedmean_tokens"):
        model_pooling(folder)


def test_captions_cut_at_the_model_length_are_logged_and_counted(tmp_path, embedder, caplog):
    long = " ".join(["a red circle moves left and then a blue square jumps"] * 30)  # ~330 tokens > 256
    src = tmp_path / "m.jsonl"
    _write_manifest(src, [NEAR_A, long, UNRELATED[1]], n_errors=0)
    with caplog.at_level("WARNING", logger="captioner.filter"):
        summary = filter_manifest(src, tmp_path / "kept.jsonl", threshold=0.99, embedder=embedder)
    assert summary["truncated"] == 1 and embedder.last_truncated == [1]
    assert "1 of 3 captions are longer than the model's 256 tokens" in caplog.text and "'c1'" in caplog.text


# ---------------------------------------------------------------- ShareGPT4Video 40K


def _line(vid: str, kf: list[str], dense: str, timestamp=None, idx_type=str, **extra) -> str:
    caps = [{"idx": idx_type(i), "content": c} for i, c in enumerate(kf)] + [{"idx": idx_type(-1), "content": dense}]
    obj = {"video_id": vid, "video_path": f"panda/{vid}.mp4", "captions": caps, "zip_folder": "panda_videos_1.zip",
           **extra}
    if timestamp is not None:
        obj["timestamp"] = timestamp
    return json.dumps(obj)


@pytest.fixture
def sharegpt_file(tmp_path) -> Path:
    lines = [
        _line("v1", ["A man stands in a kitchen.", "He picks up a knife."], "A man cooks.", timestamp=[0.0, 2.5],
              keyframe=[0, 60]),
        _line("v2", ["A dog on grass.", "It runs left.", "It stops."], "A dog runs.",
              timestamp=[[0.0, 0.0], [0.0, 1.5], [1.5, 4.0]], idx_type=int),
        '{"video_id": "v3", "video_path": "panda/v3.mp4", "captions": [{"idx": "0", "content": "x"}]}',  # no -1
        "",
        _line("v4", ["Sky."], "Clouds drift.", timestamp=[0.0, 30.0, 60.0]),  # not one entry per key-frame
        '{"video_id": "v5", "video_path": ',  # truncated JSON
    ]
    path = tmp_path / "sharegpt4video_40k.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_maps_schema_and_records_errors(tmp_path, sharegpt_file):
    out = tmp_path / "m.jsonl"
    summary = import_sharegpt4video(sharegpt_file, out)
    assert summary == {"lines": 5, "ok": 3, "errors": 2, "skipped_done": 0, "duplicates": 0,
                       "keyframes_without_times": 1}
    recs = {r["id"]: r for r in read_manifest(out, strict=True)}
    for r in recs.values():
        validate_record(r)
    v1 = recs["v1"]
    assert v1["status"] == "ok" and v1["video"] == "panda/v1.mp4"
    assert v1["keyframes"] == [{"t": 0.0, "caption": "A man stands in a kitchen."},
                               {"t": 2.5, "caption": "He picks up a knife."}]
    assert v1["captions"] == {"dense": "A man cooks."}
    assert v1["meta"]["source"] == "sharegpt4video-40k" and v1["meta"]["keyframe"] == [0, 60]
    assert [k["t"] for k in recs["v2"]["keyframes"]] == [0.0, 0.0, 1.5]  # pairs: start; int idx accepted
    assert [k["t"] for k in recs["v4"]["keyframes"]] == [None]  # ambiguous timestamp: no invented time
    assert recs["v4"]["meta"]["timestamp"] == [0.0, 30.0, 60.0]
    assert recs["v3"]["status"] == "error" and ":3:" in recs["v3"]["error"] and "idx -1" in recs["v3"]["error"]
    bad = recs["sharegpt4video_40k.jsonl:line-6"]
    assert bad["status"] == "error" and ":6:" in bad["error"] and "JSONDecodeError" in bad["error"]

    # resume: nothing is written twice
    assert import_sharegpt4video(sharegpt_file, out)["skipped_done"] == 5
    assert len(read_manifest(out)) == 5

    # video_root makes video paths absolute under it
    rooted = tmp_path / "rooted.jsonl"
    import_sharegpt4video(sharegpt_file, rooted, video_root=tmp_path / "videos")
    v1 = next(r for r in read_manifest(rooted) if r["id"] == "v1")
    assert Path(v1["video"]) == (tmp_path / "videos" / "panda" / "v1.mp4").resolve()


def test_round_trip_export_import(tmp_path):
    src = tmp_path / "m.jsonl"
    with ManifestWriter(src) as w:
        w.write({"id": "a", "video": "clips/a.mp4", "status": "ok", "fps": 8.0,
                 "keyframes": [{"t": 0.0, "caption": "first"}, {"t": 1.5, "caption": "then"}],
                 "captions": {"short": "short a", "dense": "dense a"}})
        w.write({"id": "b", "video": "clips/b.mp4", "status": "ok", "keyframes": [],
                 "captions": {"dense": "dense b"}})
        w.write({"id": "c", "video": "clips/c.mp4", "status": "error", "error": "OSError: x"})
    exported = tmp_path / "40k.jsonl"
    assert export_sharegpt4video(src, exported) == {"records": 3, "exported": 2, "skipped_errors": 1}
    first = json.loads(exported.read_text().splitlines()[0])
    assert first["captions"] == [{"idx": "0", "content": "first"}, {"idx": "1", "content": "then"},
                                 {"idx": "-1", "content": "dense a"}]
    assert first["timestamp"] == [0.0, 1.5]

    back = tmp_path / "back.jsonl"
    assert import_sharegpt4video(exported, back)["ok"] == 2
    orig = {r["id"]: r for r in read_manifest(src) if r["status"] == "ok"}
    again = {r["id"]: r for r in read_manifest(back)}
    assert again.keys() == orig.keys()
    for k, r in orig.items():
        assert again[k]["keyframes"] == r["keyframes"]
        assert again[k]["captions"] == r["captions"]
        assert again[k]["video"] == r["video"]


def test_sharegpt4video_clis(tmp_path, sharegpt_file, capsys):
    out = tmp_path / "m.jsonl"
    assert main(["import-sharegpt4video", str(sharegpt_file), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["errors"] == 2
    exported = tmp_path / "40k.jsonl"
    assert main(["export-sharegpt4video", str(out), "--out", str(exported)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "records": 5, "exported": 3, "skipped_errors": 2}
    assert [json.loads(x)["video_id"] for x in exported.read_text().splitlines()] == ["v1", "v2", "v4"]
