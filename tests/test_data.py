"""prepare.py and data.py: tokenizer, token files, corpora, the mixture sampler."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import zstandard

import corpora
import prepare
from data import Batches, DataError, open_domains, read_tokens, val_windows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpt2_ids_offline():
    enc = prepare.get_tokenizer("gpt2")
    assert enc.encode("hello world").tolist() == [31373, 995]
    assert enc.vocab_size == 50257 and enc.eot == 50256


def test_truncated_vocab_round_trips(enc4096):
    text = open(prepare.__file__).read() + "Ünïcödé ✓ 日本語 \x00 tabs\tand\nnewlines"
    ids = enc4096.encode(text)
    assert max(ids) < 4096 and enc4096.eot == 4095
    assert enc4096.decode(ids) == text
    full = prepare.get_tokenizer("gpt2").encode(text)
    assert len(ids) > len(full)  # fewer merges -> more tokens, same text


def test_round_trip_every_document(tmp_path, enc4096):
    docs = [("a", f"document {i} " + "x y z " * i, f"mem:{i}") for i in range(30)]
    docs += [("b", "β " * (i + 1), f"mem:b{i}") for i in range(30)]
    meta = prepare.prepare(iter(docs), str(tmp_path), enc4096, val_fraction=0.3, progress=False)
    for dom in ("a", "b"):
        toks = np.concatenate([read_tokens(tmp_path / dom / f"{s}.bin", 4096) for s in ("train", "val")])
        got = sorted(t for t in enc4096.decode(toks.tolist()).split("<|endoftext|>") if t)
        assert got == sorted(text for d, text, _ in docs if d == dom)
        s = meta["domains"][dom]
        assert s["train_tokens"] > 0 and s["val_tokens"] > 0 and s["documents"] == 30
    assert meta["prior"]["a"] + meta["prior"]["b"] == pytest.approx(1.0)
    assert meta["prior"]["a"] == pytest.approx(meta["domains"]["a"]["train_tokens"]
                                                / (meta["domains"]["a"]["train_tokens"] + meta["domains"]["b"]["train_tokens"]))


def test_prepare_is_idempotent(tmp_path, enc4096):
    docs = [("a", f"doc {i} " * 20, "") for i in range(50)]
    prepare.prepare(iter(docs), str(tmp_path), enc4096, progress=False)
    first = (tmp_path / "a" / "train.bin").read_bytes(), (tmp_path / "meta.json").read_text()
    prepare.prepare(iter(docs), str(tmp_path), enc4096, progress=False)
    assert first == ((tmp_path / "a" / "train.bin").read_bytes(), (tmp_path / "meta.json").read_text())
    assert not [p for p in os.listdir(tmp_path / "a") if ".tmp" in p]


def test_eval_only_domains(corpus_dir):
    meta = json.load(open(os.path.join(corpus_dir, "meta.json")))
    assert meta["domains"]["target"]["eval_only"] and meta["domains"]["target"]["train_tokens"] == 0
    assert not os.path.exists(os.path.join(corpus_dir, "target", "train.bin"))
    assert set(meta["prior"]) == {"alpha", "beta", "gamma"}
    d = open_domains(corpus_dir)
    assert d.trainable == ["alpha", "beta", "gamma"] and "target" in d.val
    with pytest.raises(DataError, match="target.*eval-only"):
        Batches(d, {"target": 1.0}, 4, 16, seed=0)


def test_header_corruption_detected(tmp_path, corpus_dir):
    good = open(os.path.join(corpus_dir, "alpha", "train.bin"), "rb").read()
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x01" + good[1:])
    with pytest.raises(DataError, match="x.bin.*magic"):
        read_tokens(bad)
    bad.write_bytes(good[:-10])
    with pytest.raises(DataError, match="x.bin.*truncated"):
        read_tokens(bad)
    bad.write_bytes(good[:31])
    with pytest.raises(DataError, match="x.bin.*shorter than the header"):
        read_tokens(bad)
    bad.write_bytes(good)
    with pytest.raises(DataError, match="vocabulary of 4096, expected 50257"):
        read_tokens(bad, 50257)


def write_zst(path, lines):
    path.write_bytes(zstandard.ZstdCompressor().compress("".join(lines).encode()))


def test_pile_shards_bad_lines_and_truncated_archive(tmp_path, enc4096):
    lines = [json.dumps({"text": f"web page {i}", "meta": {"pile_set_name": "Pile-CC"}}) + "\n" for i in range(20)]
    lines += [json.dumps({"text": f"paper {i}", "meta": {"pile_set_name": "Gutenberg (PG-19)"}}) + "\n" for i in range(20)]
    lines.insert(3, "{not json\n")
    lines.insert(7, json.dumps({"meta": {"pile_set_name": "Pile-CC"}}) + "\n")
    lines.insert(9, b"{\"text\": \"caf\xe9\", \"meta\": {\"pile_set_name\": \"Pile-CC\"}}\n".decode("latin-1"))
    shard = tmp_path / "00.jsonl.zst"
    write_zst(shard, lines)
    out = tmp_path / "out"
    skips = corpora.Skips()
    meta = prepare.prepare(corpora.pile_docs([str(shard)], skips), str(out), enc4096, progress=False, skips=skips)
    assert set(meta["domains"]) == {"pile_cc", "gutenberg_pg_19"}
    assert meta["skipped"]["lines"] == 2
    assert meta["skipped"]["first"][0].startswith(f"{shard}:4 ")
    assert meta["domains"]["pile_cc"]["documents"] == 21  # the bad-UTF-8 line was kept, with a replacement

    # a truncated shard: one-line error naming the file, and the finished folder is untouched
    before = {p: open(os.path.join(out, p), "rb").read() for p in ["meta.json", "pile_cc/train.bin"]}
    cut = tmp_path / "01.jsonl.zst"
    cut.write_bytes(shard.read_bytes()[:-40])
    r = subprocess.run([sys.executable, os.path.join(ROOT, "prepare.py"), "--pile", str(cut), "--out", str(out),
                        "--vocab-size", "4096"], capture_output=True, text=True)
    assert r.returncode != 0
    assert str(cut) in r.stderr and "Traceback" not in r.stderr
    assert {p: open(os.path.join(out, p), "rb").read() for p in before} == before
    assert not [p for p in os.listdir(out / "pile_cc") if ".tmp" in p]


def test_folder_input_and_empty_domain(tmp_path, enc4096, capsys):
    (tmp_path / "in" / "notes").mkdir(parents=True)
    (tmp_path / "in" / "notes" / "a.txt").write_text("some notes " * 30)
    (tmp_path / "in" / "empty").mkdir()
    (tmp_path / "in" / "blank").mkdir()
    (tmp_path / "in" / "blank" / "a.txt").write_text("   ")
    (tmp_path / "in" / "Web Pages.jsonl").write_text("\n".join(json.dumps({"text": f"page {i} " * 10}) for i in range(10)))
    meta = prepare.prepare(corpora.folder_docs(str(tmp_path / "in"), corpora.Skips()), str(tmp_path / "out"),
                           enc4096, progress=False)
    assert set(meta["domains"]) == {"notes", "web_pages"}
    err = capsys.readouterr().err
    assert "empty" in err and "'blank' has no text" in err
    # 'notes' has one document: it cannot be split, so it serves as both train and val (with a warning)
    assert meta["domains"]["notes"]["val_tokens"] == meta["domains"]["notes"]["train_tokens"] > 0


def test_sampler_frequencies_match_weights(corpus_dir):
    d = open_domains(corpus_dir)
    w = {"alpha": 0.6, "beta": 0.3, "gamma": 0.1}
    b = Batches(d, w, batch_size=64, block_size=8, seed=1)
    counts = np.zeros(3)
    for _ in range(200):
        doms, offs = b.draw()
        counts += np.bincount(doms, minlength=3)
        assert all(0 <= o <= len(d.train[d.trainable[k]]) - 8 for k, o in zip(doms, offs))
    n = counts.sum()
    p = np.array([0.6, 0.3, 0.1])
    assert np.all(np.abs(counts / n - p) < 5 * np.sqrt(p * (1 - p) / n))


def test_each_sequence_comes_from_one_domain(corpus_dir):
    d = open_domains(corpus_dir)
    b = Batches(d, {"alpha": 1, "beta": 1}, batch_size=16, block_size=32, seed=3)
    b2 = Batches(d, {"alpha": 1, "beta": 1}, batch_size=16, block_size=32, seed=3)
    doms, offs = b2.draw()
    x, y = b.next()
    assert x.shape == y.shape == (16, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    for i, (k, o) in enumerate(zip(doms, offs)):
        src = np.asarray(d.train[d.trainable[k]][o:o + 33], dtype=np.int64)
        assert np.array_equal(x[i].numpy(), src[:-1]) and np.array_equal(y[i].numpy(), src[1:])


def test_same_seed_same_batches_other_seed_differs(corpus_dir):
    d = open_domains(corpus_dir)
    w = {"alpha": 0.5, "beta": 0.25, "gamma": 0.25}
    a, b, c = (Batches(d, w, 8, 16, seed=s) for s in (7, 7, 8))
    xa = [a.next()[0] for _ in range(3)]
    assert all(torch.equal(p, b.next()[0]) for p in xa)
    assert not all(torch.equal(p, c.next()[0]) for p in xa)
    # a checkpointed state resumes the same stream
    state = a.state()
    nxt = a.next()[0]
    b.load_state(state)
    assert torch.equal(nxt, b.next()[0])


def test_bad_mixtures_and_tiny_domain(corpus_dir):
    d = open_domains(corpus_dir)
    with pytest.raises(DataError, match="'delta' is not among the domains"):
        Batches(d, {"delta": 1.0}, 4, 8, seed=0)
    with pytest.raises(DataError, match="'beta' is -0.5"):
        Batches(d, {"alpha": 1.0, "beta": -0.5}, 4, 8, seed=0)
    with pytest.raises(DataError, match="'alpha' is nan"):
        Batches(d, {"alpha": float("nan")}, 4, 8, seed=0)
    with pytest.raises(DataError, match="all zero"):
        Batches(d, {"alpha": 0.0}, 4, 8, seed=0)
    n = len(d.train["gamma"])
    with pytest.raises(DataError, match=f"'gamma' has {n} training tokens"):
        Batches(d, {"gamma": 1.0}, 4, n, seed=0)
    assert np.allclose(Batches(d, {"alpha": 2, "beta": 2}, 4, 8, seed=0).p, [0.5, 0.5, 0])


def test_val_windows_fixed_and_disjoint(corpus_dir):
    d = open_domains(corpus_dir)
    v = d.val["target"]
    w1 = val_windows(v, 10, 16, "target")
    assert torch.equal(w1, val_windows(v, 10, 16, "target"))
    assert w1.shape == (10, 17)
    with pytest.raises(DataError, match="'target' has"):
        val_windows(v, 4, len(v), "target")


def test_cli_folder_with_eval_only_and_skip(tmp_path):
    from conftest import make_corpus
    src = make_corpus(str(tmp_path / "src"), n_docs=10)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "prepare.py"), "--input", src, "--out", str(tmp_path / "out"),
                        "--vocab-size", "2048", "--eval-only", "target", "--skip", "gamma"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = json.load(open(tmp_path / "out" / "meta.json"))
    assert set(meta["domains"]) == {"alpha", "beta", "target"} and set(meta["prior"]) == {"alpha", "beta"}
    assert meta["tokenizer"] == {"name": "gpt2-2048", "kind": "gpt2", "vocab_size": 2048, "eot": 2047,
                                 "eot_token": "<|endoftext|>", "sha256": prepare.VOCAB_BPE_SHA256}
    assert "Jensen-Shannon" in r.stdout
    r = subprocess.run([sys.executable, os.path.join(ROOT, "prepare.py"), "--input", src, "--out", str(tmp_path / "o2"),
                        "--eval-only", "nope"], capture_output=True, text=True)
    assert r.returncode != 0 and "--eval-only nope: no such domain" in r.stderr and "Traceback" not in r.stderr
