"""Bring your own corpus, tokenizer and mixtures: every reader, tokenizer.json files, vocabularies
beyond uint16, and a hand-written mixtures.csv."""
import csv
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import corpora
import prepare
import regmix
import regression
from data import DataError, open_domains, read_tokens

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEOX = os.path.join(ROOT, "tests", "data", "gptneox", "tokenizer.json")
SMALL = ["--model", "tiny", "--steps", "3", "--batch-size", "2", "--micro-batch-size", "2", "--block-size", "16",
         "--eval-seqs", "2", "--warmup", "1"]


def docs_of(name, n):
    return [f"{name} document {i}: " + " ".join(["café", "naïve", name, str(i)] * (5 + i)) for i in range(n)]


def write_records(path, records):
    """records (dicts) into `path`, in the format its name says."""
    path = str(path)
    if path.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=3)  # several row groups
    elif path.endswith(".arrow"):  # the Arrow stream format, as datasets.save_to_disk writes it
        table = pa.Table.from_pylist(records)
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table, max_chunksize=4)
    else:
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        if path.endswith(".gz"):
            data = gzip.compress(data)
        elif path.endswith(".zst"):
            data = zstandard.ZstdCompressor().compress(data)
        with open(path, "wb") as f:
            f.write(data)


FORMATS = ["a.parquet", "a.arrow", "a.jsonl", "a.jsonl.gz", "a.json.gz", "a.jsonl.zst", "a.json.zst"]


def test_every_format_in_a_domain_folder(tmp_path):
    """One domain per format (and *.txt): every document comes out, in order, with its text."""
    root = tmp_path / "in"
    want = {}
    for fmt in FORMATS:
        dom = corpora.slug(fmt.split(".", 1)[1])
        (root / dom).mkdir(parents=True)
        want[dom] = docs_of(dom, 7)
        write_records(root / dom / fmt, [{"text": t, "id": i} for i, t in enumerate(want[dom])])
    (root / "txt").mkdir()
    want["txt"] = docs_of("txt", 3)
    for i, t in enumerate(want["txt"]):
        (root / "txt" / f"{i}.txt").write_text(t)
    write_records(root / "Top Level.parquet", [{"text": t} for t in docs_of("top", 4)])  # a file is a domain too
    want["top_level"] = docs_of("top", 4)
    skips = corpora.Skips()
    got = {}
    for dom, text, where in corpora.folder_docs(str(root), skips):
        got.setdefault(corpora.slug(dom), []).append(text)  # the name as the input gives it; prepare slugs it
        assert where.startswith(str(root))
    assert got == want and skips.count == 0


def test_shards_with_nested_domain_key_and_text_key(tmp_path):
    recs = [{"content": t, "meta": {"redpajama_set_name": "RedPajamaArXiv" if i % 2 else "RedPajamaC4"}}
            for i, t in enumerate(docs_of("x", 10))]
    files = [tmp_path / "s0.parquet", tmp_path / "s1.jsonl.gz", tmp_path / "s2.arrow"]
    for f in files:
        write_records(f, recs)
    skips = corpora.Skips()
    got = list(corpora.shard_docs([str(f) for f in files], skips, "meta.redpajama_set_name", "content"))
    assert len(got) == 30 and skips.count == 0
    assert {d for d, _, _ in got} == {"RedPajamaArXiv", "RedPajamaC4"}  # as the records name them; prepare slugs
    assert [t for _, t, _ in got[:10]] == [r["content"] for r in recs]
    assert got[3][2] == f"{files[0]}:row 4" and got[13][2] == f"{files[1]}:4"


def test_bad_records_are_counted_with_their_position(tmp_path):
    recs = [{"text": "fine", "source": "web"}, {"text": "no domain"}, {"text": None, "source": "web"},
            {"text": "fine too", "source": "code"}, {"text": "empty domain", "source": ""}]
    for name in ("s.parquet", "s.jsonl.gz"):
        path = tmp_path / name
        write_records(path, recs)
        skips = corpora.Skips()
        got = list(corpora.shard_docs([str(path)], skips, "source"))
        assert [(d, t) for d, t, _ in got] == [("web", "fine"), ("code", "fine too")]
        assert skips.count == 3
        sep = ":row " if name.endswith(".parquet") else ":"
        assert skips.first[0] == f"{path}{sep}2 (no source)"
        assert skips.first[1] == f'{path}{sep}3 (no "text" string)'


@pytest.mark.parametrize("name,damage,message", [
    ("s.jsonl.gz", lambda b: b[:-30], "truncated or corrupt"),
    ("s.json.zst", lambda b: b[:-30], "truncated or corrupt"),
    ("s.arrow", lambda b: b"this is not arrow" * 10, "not in the format its name says"),
    ("s.parquet", lambda b: b[:len(b) // 2], "not in the format its name says"),
    ("s.parquet", None, "no column 'text' for --text-key text (columns: body, source)"),
])
def test_broken_files_stop_with_one_line_and_leave_the_folder_as_it_was(tmp_path, name, damage, message):
    good = tmp_path / "good.jsonl"
    write_records(good, [{"text": t, "source": "web"} for t in docs_of("w", 20)])
    out = tmp_path / "out"
    run = [sys.executable, os.path.join(ROOT, "prepare.py"), "--shards", str(good), "--domain-key", "source",
           "--out", str(out), "--vocab-size", "512"]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    before = {p: (out / p).read_bytes() for p in ["meta.json", "web/train.bin", "web/val.bin"]}
    bad = tmp_path / name
    write_records(bad, [{"text" if damage else "body": t, "source": "web"} for t in docs_of("b", 50)])
    if damage:
        bad.write_bytes(damage(bad.read_bytes()))
    run[3] = str(bad)
    r = subprocess.run(run, capture_output=True, text=True)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]  # above it: only the progress bar
    assert last.startswith("error: ") and str(bad) in last and message in last, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert {p: (out / p).read_bytes() for p in before} == before
    assert not [p for p in os.listdir(out / "web") if ".tmp" in p]


def test_tokenizer_json_files_equal_the_tokenizers_library_plus_eot(tmp_path):
    from tokenizers import Tokenizer
    texts = docs_of("neox", 12) + ["Ünïcödé ✓ 日本語 tabs\tand\nnewlines  and   spaces"]
    enc = prepare.get_tokenizer(NEOX)
    assert (enc.vocab_size, enc.eot, enc.eot_token) == (50277, 0, "<|endoftext|>")  # from tokenizer_config.json
    meta = prepare.prepare(iter(("d", t, "") for t in texts), str(tmp_path), enc, val_fraction=0, progress=False)
    ref = Tokenizer.from_file(NEOX)
    want = np.concatenate([ref.encode(t, add_special_tokens=False).ids + [0] for t in texts])
    got = read_tokens(tmp_path / "d" / "train.bin", 50277)
    assert got.dtype == np.uint16 and np.array_equal(got, want)
    tok = meta["tokenizer"]
    assert tok["kind"] == "tokenizers" and tok["vocab_size"] == 50277 and tok["eot"] == 0
    assert (tmp_path / "tokenizer.json").read_bytes() == open(NEOX, "rb").read()
    import hashlib
    assert tok["sha256"] == hashlib.sha256(open(NEOX, "rb").read()).hexdigest()


def wide_tokenizer(path, n=70_000, eot=True):
    """A word-level tokenizer.json with more ids than uint16 holds."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(n)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if eot:
        tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(path))
    return path


def test_vocabulary_beyond_uint16_end_to_end(tmp_path):
    tok = wide_tokenizer(tmp_path / "wide.json")
    rng = np.random.default_rng(0)
    for dom, lo in (("low", 0), ("high", 60_000)):
        (tmp_path / "in" / dom).mkdir(parents=True)
        for i in range(30):
            (tmp_path / "in" / dom / f"{i}.txt").write_text(" ".join(f"w{k}" for k in rng.integers(lo, lo + 10_000, 80)))
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "prepare.py"), "--input", str(tmp_path / "in"), "--out", str(data),
                        "--tokenizer", str(tok)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = json.load(open(data / "meta.json"))
    assert meta["tokenizer"]["vocab_size"] == 70_002 and meta["tokenizer"]["eot"] == 70_001
    d = open_domains(str(data))
    assert d.train["high"].dtype == np.uint32 and int(d.train["high"].max()) == 70_001  # the EOT
    assert int(np.sort(np.asarray(d.train["high"]))[-31]) >= 60_001  # real ids above 65,535
    assert np.fromfile(data / "high" / "train.bin", dtype="<i8", count=5)[4] == 4  # bytes per token
    out = str(tmp_path / "out")
    regmix.main(["--stage", "proxy", "--data", str(data), "--out", out, "--n-mixtures", "2", "--workers", "1", *SMALL])
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    assert len(rows) == 2 and all(np.isfinite(float(x["loss.high"])) and not x["failed"] for x in rows)


def test_tokenizer_without_eot_is_a_clear_error(tmp_path):
    tok = wide_tokenizer(tmp_path / "t.json", n=100, eot=False)
    with pytest.raises(DataError, match="no end-of-document token.*--eot-token"):
        prepare.get_tokenizer(str(tok))
    assert prepare.get_tokenizer(str(tok), eot_token="w5").eot == 6
    with pytest.raises(DataError, match="--eot-token nope: not a token"):
        prepare.get_tokenizer(str(tok), eot_token="nope")


def test_version_1_token_files_stay_readable(tmp_path):
    toks = np.arange(100, dtype=np.uint16)
    path = tmp_path / "v1.bin"
    path.write_bytes(np.array([0x584D4752, 1, 4096, 100], dtype="<i8").tobytes() + toks.tobytes())
    assert np.array_equal(read_tokens(path, 4096), toks)


def write_mixtures(path, runs, weights, cols=("alpha", "beta", "gamma")):
    with open(path, "w") as f:
        f.write("run," + ",".join(f"weight.{c}" for c in cols) + "\n")
        for r, w in zip(runs, weights):
            f.write(f"{r}," + ",".join(map(str, w)) + "\n")


def test_hand_written_mixtures_are_trained_as_written(corpus_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_mixtures(out / "mixtures.csv", [7, 3, 100], [(0.5, 0.5, 0), (0.2, 0.3, 0.5), (0, 0, 1)])
    regmix.main(["--stage", "proxy", "--data", corpus_dir, "--out", str(out), *SMALL])
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["run"] for r in rows] == ["3", "7", "100"]
    assert [(r["weight.alpha"], r["weight.beta"], r["weight.gamma"]) for r in rows] == \
        [("0.2", "0.3", "0.5"), ("0.5", "0.5", "0"), ("0", "0", "1")]
    # --stage mixtures still refuses to replace a file it would not have written
    with pytest.raises(SystemExit, match="made from other data or settings"):
        regmix.main(["--stage", "mixtures", "--data", corpus_dir, "--out", str(out)])


@pytest.mark.parametrize("runs,weights,cols,message", [
    ([0], [(0.5, 0.5)], ("alpha", "beta"), "no column weight.gamma for the trainable domain 'gamma'"),
    ([0], [(0.5, 0.5, 0, 0)], ("alpha", "beta", "gamma", "target"), "column weight.target is not a trainable domain"),
    ([0, 5], [(1, 0, 0), (0.5, -0.1, 0.6)], ("alpha", "beta", "gamma"), "run 5 gives 'beta' the weight -0.1"),
    ([0, 5], [(1, 0, 0), (0.5, "nan", 0.5)], ("alpha", "beta", "gamma"), "run 5 gives 'beta' the weight nan"),
    ([4], [(0.5, 0.3, 0.3)], ("alpha", "beta", "gamma"), "weights of run 4 sum to 1.1"),
    ([2, 2], [(1, 0, 0), (0, 1, 0)], ("alpha", "beta", "gamma"), "run 2 appears twice"),
    (["x"], [(1, 0, 0)], ("alpha", "beta", "gamma"), "run id 'x'"),
])
def test_bad_mixtures_csv_is_named(corpus_dir, tmp_path, runs, weights, cols, message):
    out = tmp_path / "out"
    out.mkdir()
    write_mixtures(out / "mixtures.csv", runs, weights, cols)
    with pytest.raises(SystemExit, match=message):
        regmix.main(["--stage", "proxy", "--data", corpus_dir, "--out", str(out), *SMALL])
    assert not (out / "results.csv").exists()


def test_paper_mixtures_convert_to_a_trainable_mixtures_csv(tmp_path):
    src = tmp_path / "train_mixture_1m.csv"
    src.write_text("index,train_the_pile_arxiv,train_the_pile_pile_cc\n1,0.333,0.663\n2,0.5,0.502\n")
    regression.paper2csv(str(src), None, str(tmp_path / "m.csv"))
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert list(rows[0]) == ["run", "weight.arxiv", "weight.pile_cc"]
    for r in rows:  # renormalised: the released rows sum to 0.996 and 1.002
        assert abs(float(r["weight.arxiv"]) + float(r["weight.pile_cc"]) - 1) < 1e-5
    assert float(rows[0]["weight.arxiv"]) == pytest.approx(0.333 / 0.996, rel=1e-5)


def test_arrow_file_format_is_read_too(tmp_path):
    """datasets.save_to_disk writes Arrow's stream format; pyarrow's own file format (random access) reads as well."""
    table = pa.Table.from_pylist([{"text": t, "source": "web"} for t in docs_of("f", 9)])
    path = tmp_path / "file_format.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=4)
    got = list(corpora.shard_docs([str(path)], corpora.Skips(), "source"))
    assert [t for _, t, _ in got] == docs_of("f", 9) and got[5][2] == f"{path}:row 6"
