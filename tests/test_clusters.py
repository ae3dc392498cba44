"""Domains for an unlabelled corpus: prepare.py --cluster K, --clusters-from, and the loop on them."""
import csv
import json
import os

import numpy as np
import pytest

import clusters
import prepare
import regmix

WORDS = {  # three kinds of text, told apart only by their words
    "fruit": ["apple", "banana", "cherry", "grape", "melon", "lemon", "peach", "plum"],
    "code": ["def", "return", "class", "import", "lambda", "yield", "while", "assert"],
    "law": ["whereas", "hereby", "licence", "party", "shall", "agreement", "warranty", "liable"],
}


def unlabelled(path, n=30, seed=0):
    """A shard of records with text and no domain, the kinds interleaved; returns the true kinds."""
    rng = np.random.default_rng(seed)
    kinds = [list(WORDS)[i % 3] for i in rng.permutation(3 * n)]
    with open(path, "w") as f:
        for i, kind in enumerate(kinds):
            f.write(json.dumps({"text": f"doc {i} " + " ".join(rng.choice(WORDS[kind], size=int(rng.integers(40, 120))))})
                    + "\n")
    return kinds


def prep(*argv):
    prepare.main(["--vocab-size", "4096", *map(str, argv)])


def read_clusters(out):
    with open(os.path.join(out, "clusters.csv")) as f:
        return [(int(r["doc"]), r["cluster"]) for r in csv.DictReader(f)]


def test_sample_is_uniform_and_deterministic():
    docs = [("", str(i), None) for i in range(10_000)]
    s, n = clusters.sample(iter(docs), 500, 3)
    assert n == 10_000 and len(s) == 500 and len(set(s)) == 500
    assert s == clusters.sample(iter(docs), 500, 3)[0]
    assert 4000 < np.mean([int(x) for x in s]) < 6000  # not the first 500
    assert clusters.sample(iter(docs[:7]), 500, 3) == ([str(i) for i in range(7)], 7)


def test_clusters_recover_the_kinds_deterministically(tmp_path):
    shard = tmp_path / "web.jsonl"
    kinds = unlabelled(shard)
    outs = [str(tmp_path / name) for name in ("a", "b")]
    for out in outs:
        prep("--shards", shard, "--cluster", 3, "--out", out)
    assert read_clusters(outs[0]) == read_clusters(outs[1])
    for f in ("meta.json", "cluster_000/train.bin", "cluster_001/val.bin"):
        assert open(os.path.join(outs[0], f), "rb").read() == open(os.path.join(outs[1], f), "rb").read()
    found = read_clusters(outs[0])
    assert [d for d, _ in found] == list(range(len(kinds)))
    # each kind in one cluster of its own
    by_kind = {k: {c for (_, c), kk in zip(found, kinds) if kk == k} for k in WORDS}
    assert all(len(c) == 1 for c in by_kind.values()) and len(set.union(*by_kind.values())) == 3
    meta = json.load(open(os.path.join(outs[0], "meta.json")))
    assert sorted(meta["domains"]) == sorted(meta["clusters"]) == ["cluster_000", "cluster_001", "cluster_002"]
    for kind, (c,) in by_kind.items():
        assert meta["clusters"][c]["documents"] == kinds.count(kind) == meta["domains"][c]["documents"]
        assert set(meta["clusters"][c]["terms"][:3]) <= set(WORDS[kind])  # what names the domain


def test_a_second_corpus_goes_to_the_same_clusters(tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    unlabelled(first, seed=1)
    kinds = unlabelled(second, n=10, seed=2)
    prep("--shards", first, "--cluster", 3, "--out", tmp_path / "a")
    prep("--shards", second, "--clusters-from", tmp_path / "a", "--out", tmp_path / "b")
    found = read_clusters(tmp_path / "a")
    first_kinds = unlabelled(tmp_path / "again.jsonl", seed=1)
    name_of = {k: c for (_, c), k in zip(found, first_kinds)}
    assert [c for _, c in read_clusters(tmp_path / "b")] == [name_of[k] for k in kinds]


@pytest.mark.parametrize("docs,k,message", [
    ([], 2, "has 0 non-empty document.s.; clustering needs at least 2"),
    (["just one document here"], 2, "has 1 non-empty document.s.; clustering needs at least 2"),
    (["the same words here"] * 30, 3, "all alike .identical texts.: nothing to cluster"),
    (["the same words here"] * 15 + ["other text entirely"] * 15, 3, "form only 2 distinct clusters"),
    (["a b c", "d e f", "g h i"], 5, "--cluster 5: the input has only 3 non-empty document.s. to cluster; ask for at most 3"),
    (["a b c", "d e f"], 1, "--cluster 1: need at least 2 clusters"),
])
def test_too_few_documents_is_a_clear_error(tmp_path, docs, k, message):
    shard = tmp_path / "s.jsonl"
    shard.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    with pytest.raises(SystemExit, match=message):
        prep("--shards", shard, "--cluster", k, "--out", tmp_path / "out")
    assert not os.path.exists(tmp_path / "out" / "meta.json")


def test_clusters_from_a_folder_without_them(tmp_path):
    shard = tmp_path / "s.jsonl"
    unlabelled(shard, n=5)
    with pytest.raises(SystemExit, match="--clusters-from .*: no clustering saved there"):
        prep("--shards", shard, "--clusters-from", tmp_path, "--out", tmp_path / "out")


def test_a_local_embedding_model(tmp_path):
    """--cluster-model: a (tiny, random) BERT folder made here, embedded offline."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "bert"
    folder.mkdir()
    words = sorted({w for ws in WORDS.values() for w in ws} | {"doc"} | {str(i) for i in range(100)})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    # 64 positions: documents (40-120 words) are cut at the model's limit, not at 512 tokens
    cfg = transformers.BertConfig(vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    shard = tmp_path / "s.jsonl"
    kinds = unlabelled(shard, n=10)
    prep("--shards", shard, "--cluster", 3, "--cluster-model", folder, "--out", tmp_path / "a")
    prep("--shards", shard, "--clusters-from", tmp_path / "a", "--out", tmp_path / "b")
    assert len(read_clusters(tmp_path / "a")) == len(kinds)
    assert read_clusters(tmp_path / "a") == read_clusters(tmp_path / "b")  # the saved clustering names the model
    assert json.load(open(tmp_path / "a" / "clustering.json"))["model"] == str(folder)


def test_the_whole_loop_on_clustered_domains(tmp_path):
    shard = tmp_path / "web.jsonl"
    unlabelled(shard, n=40)
    data = str(tmp_path / "data")
    prep("--shards", shard, "--cluster", 3, "--out", data)
    out = str(tmp_path / "out")
    regmix.main(["--stage", "all", "--data", data, "--out", out, "--target", "all", "--n-mixtures", "12",
                 "--workers", "1", "--model", "tiny", "--steps", "4", "--batch-size", "4", "--micro-batch-size", "4", "--block-size", "16",
                 "--eval-seqs", "4", "--warmup", "1", "--samples", "20000", "--top-k", "10", "--bootstrap", "0", "--regressor", "linear"])
    mix = json.load(open(os.path.join(out, "mixture.json")))
    assert sorted(mix["weights"]) == ["cluster_000", "cluster_001", "cluster_002"]
    assert sum(mix["weights"].values()) == pytest.approx(1)


def test_cluster_flags_that_cannot_work(tmp_path, capsys):
    shard = tmp_path / "s.jsonl"
    unlabelled(shard, n=5)
    with pytest.raises(SystemExit, match="no such folder"):
        prep("--shards", shard, "--cluster", 3, "--cluster-model", tmp_path / "missing", "--out", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no config.json in it"):
        prep("--shards", shard, "--cluster", 3, "--cluster-model", tmp_path / "empty", "--out", tmp_path / "o")
    for argv, message in ((["--cluster", 3, "--cluster-sample", 0], "--cluster-sample 0: at least 1"),
                          (["--clusters-from", tmp_path, "--cluster-model", tmp_path], "--cluster-model is for --cluster K")):
        with pytest.raises(SystemExit):
            prep("--shards", shard, *argv, "--out", tmp_path / "o")
        assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "meta.json")
