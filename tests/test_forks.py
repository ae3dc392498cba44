"""A researcher forking the project for their own corpus (issue 34): a vocabulary that suits its
size, every text file of a domain folder a document, a sweep without a target that says so."""
import json
import os

import regmix
import prepare

SMALL = ["--model", "tiny", "--steps", "2", "--batch-size", "4", "--micro-batch-size", "4", "--block-size", "16",
         "--eval-seqs", "2", "--warmup", "1", "--workers", "1"]


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def small_corpus(root):
    for d in ("man", "news", "code"):
        for i in range(8):
            write(os.path.join(root, d, f"{i}.txt"), f"{d} page {i}: " + " ".join([d, "alpha", "beta", str(i)] * 60))
    return root


def test_a_small_corpus_gets_a_small_vocabulary_and_says_so(tmp_path, capsys):
    src = small_corpus(str(tmp_path / "in"))
    prepare.main(["--input", src, "--out", str(tmp_path / "data")])
    meta = json.load(open(tmp_path / "data" / "meta.json"))
    assert meta["tokenizer"]["vocab_size"] == prepare.SMALL_VOCAB
    assert "vocabulary: GPT-2's BPE cut to 4,096 ids, chosen for a small corpus" in capsys.readouterr().out
    prepare.main(["--input", src, "--out", str(tmp_path / "full"), "--vocab-size", "50257"])  # the flag still decides
    assert json.load(open(tmp_path / "full" / "meta.json"))["tokenizer"]["vocab_size"] == 50257


def test_a_large_corpus_keeps_gpt2s_vocabulary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare, "SMALL_CORPUS", 1000)  # this corpus counts as large
    prepare.main(["--input", small_corpus(str(tmp_path / "in")), "--out", str(tmp_path / "data")])
    assert json.load(open(tmp_path / "data" / "meta.json"))["tokenizer"]["vocab_size"] == 50257
    assert "vocabulary: GPT-2's full 50,257 ids" in capsys.readouterr().out


def test_every_text_file_of_a_domain_folder_is_a_document(tmp_path):
    import gzip
    src = small_corpus(str(tmp_path / "in"))
    write(os.path.join(src, "news", "CHANGELOG"), "version 2: " + "fixed things " * 80)
    write(os.path.join(src, "news", "notes.md"), "# notes\n" + "a note " * 80)
    with gzip.open(os.path.join(src, "news", "changelog.Debian.gz"), "wt") as f:
        f.write("pkg (1.0) unstable; " * 40)
    write(os.path.join(src, "news", "logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 20, "wb")
    prepare.main(["--input", src, "--out", str(tmp_path / "data"), "--vocab-size", "4096"])
    meta = json.load(open(tmp_path / "data" / "meta.json"))
    assert meta["domains"]["news"]["documents"] == 8 + 3  # the three text files, not the image
    assert meta["skipped"]["lines"] == 1 and "a binary file" in meta["skipped"]["first"][0]


def test_a_sweep_without_a_target_says_so_and_labels_no_loss_target(tmp_path, capsys):
    data = str(tmp_path / "data")
    prepare.main(["--input", small_corpus(str(tmp_path / "in")), "--out", data])  # no eval-only domain
    regmix.main(["--stage", "proxy", "--data", data, "--out", str(tmp_path / "out"), "--n-mixtures", "2", *SMALL])
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).splitlines()
    header = next(ln for ln in lines if ln.startswith("proxy sweep:"))
    assert header.endswith("no --target: every domain's loss is recorded, fit will ask which to minimise")
    runs = [ln for ln in lines if ln.startswith("[proxy] run")]
    assert len(runs) == 2 and all("mean loss" in ln and "target" not in ln for ln in runs)
