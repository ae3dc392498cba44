"""
Domains for a corpus that has none: its documents clustered by what they say.

    python prepare.py --shards web/*.jsonl.zst --cluster 16 --out data/web
    python prepare.py --shards more/*.jsonl.zst --clusters-from data/web --out data/more

The Pile came with `pile_set_name`; web dumps (FineWeb, DCLM, Common Crawl) come as one stream.
CLIMB (NVIDIA, 2025) embeds documents, clusters them with k-means and searches mixtures over the
clusters; this does the same, offline and on CPU:

1. a sample: a first pass reads (does not tokenize) the corpus and keeps a uniform random sample
   of --cluster-sample documents (reservoir sampling: memory is the sample, whatever the corpus);
2. a representation: TF-IDF of words, the vocabulary and IDF learned on the sample (the default:
   no download, a few ms per document), or the mean-pooled last hidden states of a local Hugging
   Face model (--cluster-model DIR), as CLIMB embeds;
3. k-means (scikit-learn) on the sample's unit-length vectors, K clusters, a seed;
4. the tokenizing pass of prepare.py assigns every document to its nearest centre as it goes, and
   writes OUT/clusters.csv (doc = position in the input, 0-based; cluster).

The clustering is saved beside the data (OUT/clustering.json + clustering.npz) so another corpus
is assigned to the same clusters. meta.json gets each cluster's size and describing terms.
"""
import csv
import json
import os
import pickle
from dataclasses import dataclass

import numpy as np

from data import DataError, atomic_write_json

SAMPLE = 20_000     # documents the clustering is fitted on (docs/prepare.md: why this many)
VOCAB = 2 ** 16     # most frequent words of the sample kept as TF-IDF features
BATCH = 1024        # documents vectorised at once in the assigning pass
TERMS = 8           # describing terms per cluster in meta.json


def sample(docs, n, seed):
    """A uniform random sample of n texts of the stream (Algorithm R), and how many there were."""
    rng = np.random.default_rng(seed)
    kept, count = [], 0
    for _, text, _ in docs:
        if count < n:
            kept.append(text)
        else:
            j = int(rng.integers(0, count + 1))
            if j < n:
                kept[j] = text
        count += 1
    return kept, count


@dataclass
class Clustering:
    centres: np.ndarray          # K x features
    vocab: list = None           # TF-IDF: the words, in feature order
    idf: np.ndarray = None       # TF-IDF: each word's inverse document frequency
    model: str = None            # an embedding model's folder instead of TF-IDF

    @property
    def k(self):
        return len(self.centres)

    def vectors(self, texts):
        """Unit-length vectors of texts: TF-IDF (log-scaled counts x idf), or the model's embedding."""
        if self.model:
            return embed(self.model, texts)
        from sklearn.feature_extraction.text import CountVectorizer
        return tfidf(CountVectorizer(vocabulary=self.vocab, dtype=np.float32).transform(texts), self.idf)

    def assign(self, texts):
        """The nearest centre of each text (Euclidean, as k-means fitted them)."""
        v = self.vectors(texts)
        if v.shape[1] != self.centres.shape[1]:  # (a model clustering: its width is known only now)
            raise DataError(f"the saved clustering's centres have {self.centres.shape[1]} columns, but "
                            f"{self.model or 'TF-IDF'} gives vectors of {v.shape[1]}: not the model it was made with; "
                            "prepare that folder again with --cluster K")
        return np.asarray(np.argmax(v @ self.centres.T - 0.5 * (self.centres ** 2).sum(1), axis=1)).ravel()

    def save(self, out):
        np.savez(os.path.join(out, "clustering.npz.tmp.npz"), centres=self.centres,
                 idf=self.idf if self.idf is not None else np.zeros(0))
        os.replace(os.path.join(out, "clustering.npz.tmp.npz"), os.path.join(out, "clustering.npz"))
        atomic_write_json(os.path.join(out, "clustering.json"), dict(k=self.k, vocab=self.vocab, model=self.model))

    @classmethod
    def load(cls, data_dir):
        try:
            with open(os.path.join(data_dir, "clustering.json"), encoding="utf-8") as f:
                spec = json.load(f)
            arrays = np.load(os.path.join(data_dir, "clustering.npz"))
            centres, idf = arrays["centres"], arrays["idf"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"--clusters-from {data_dir}: no clustering saved there ({e}); it must be a folder "
                            "prepared with --cluster K") from None
        return check_saved(data_dir, cls(centres, spec["vocab"], idf if spec["vocab"] else None, spec["model"]), spec)


def check_saved(data_dir, c, spec):
    """clustering.npz and clustering.json must belong together: a K x width table of finite centres,
    K as the json says, width the TF-IDF vocabulary's (a model's is checked when it embeds)."""
    where = f"--clusters-from {data_dir}"
    if c.centres.ndim != 2 or not len(c.centres) or not np.isfinite(c.centres).all():
        raise DataError(f"{where}: clustering.npz holds no table of finite centres (shape {c.centres.shape}); prepare "
                        "that folder again with --cluster K")
    if spec.get("k") is not None and spec["k"] != len(c.centres):
        raise DataError(f"{where}: clustering.json says k = {spec['k']}, clustering.npz holds {len(c.centres)} centres: "
                        "the two files do not belong together; prepare that folder again with --cluster K")
    if c.vocab and not (c.centres.shape[1] == len(c.vocab) == len(c.idf)):
        raise DataError(f"{where}: clustering.npz's centres have {c.centres.shape[1]} columns and {len(c.idf)} idf "
                        f"values, clustering.json's vocabulary {len(c.vocab)} words: the two files do not belong "
                        "together; prepare that folder again with --cluster K")
    return c


def fit(texts, k, seed=0, model=None):
    """k-means with k clusters on the sample's vectors."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import CountVectorizer
    texts = [t for t in texts if t.strip()]
    if k < 2:
        raise DataError(f"--cluster {k}: need at least 2 clusters")
    if len(texts) < 2:
        raise DataError(f"--cluster {k}: the input has {len(texts)} non-empty document(s); clustering needs at least 2")
    if len(texts) < k:
        raise DataError(f"--cluster {k}: the input has only {len(texts)} non-empty document(s) to cluster; "
                        f"ask for at most {len(texts)} clusters")
    if model:
        c = Clustering(np.zeros((0, 0)), model=model)
    else:
        cv = CountVectorizer(max_features=VOCAB, stop_words="english", min_df=2 if len(texts) >= 100 else 1,
                             dtype=np.float32)
        try:
            counts = cv.fit_transform(texts)
        except ValueError:  # sklearn: "empty vocabulary"
            raise DataError(f"--cluster {k}: the documents hold no words to cluster by") from None
        df = np.diff(counts.tocsc().indptr)  # documents holding each word
        c = Clustering(np.zeros((0, len(df))), list(cv.get_feature_names_out()), np.log((1 + len(texts)) / (1 + df)) + 1)
    v = c.vectors(texts) if model else tfidf(counts, c.idf)
    import warnings
    with warnings.catch_warnings():  # (scikit-learn warns where fewer distinct points than k: said below)
        warnings.simplefilter("ignore")
        km = KMeans(k, n_init=3, random_state=seed).fit(v)
    found = len(np.unique(km.labels_))
    if found < 2:
        raise DataError(f"--cluster {k}: the sample's documents are all alike (identical texts): nothing to cluster")
    if found < k:  # near-identical documents: fewer groups than asked for
        raise DataError(f"--cluster {k}: the sample's documents form only {found} distinct clusters (identical or "
                        f"near-identical texts); ask for --cluster {found} or fewer")
    c.centres = km.cluster_centers_.astype(np.float32)
    return c


def tfidf(counts, idf):
    """Unit-length TF-IDF rows from word counts: log-scaled counts (a word said 10 times is not 10
    times the evidence) times the word's inverse document frequency (smoothed, as scikit-learn's)."""
    from sklearn.preprocessing import normalize
    counts = counts.astype(np.float32)
    counts.data = np.log1p(counts.data)
    return normalize(counts.multiply(idf.astype(np.float32)).tocsr())


def describe(c, top=TERMS):
    """The words that weigh most in each centre (TF-IDF only), to help people name their domains."""
    if not c.vocab:
        return [[] for _ in range(c.k)]
    return [[c.vocab[j] for j in np.argsort(-row, kind="stable")[:top]] for row in c.centres]


def name(i):
    return f"cluster_{i:03d}"


def assigned(docs, c, csv_path):
    """(cluster name, text, where) for each document of the stream, assigned in batches of BATCH;
    OUT/clusters.csv written alongside (to a temporary name: renamed only when the stream ends)."""
    tmp = f"{csv_path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["doc", "cluster"])
        n, batch = 0, []
        for doc in docs:
            batch.append(doc)
            if len(batch) == BATCH:
                yield from _flush(batch, c, w, n)
                n, batch = n + len(batch), []
        yield from _flush(batch, c, w, n)
    os.replace(tmp, csv_path)


def _flush(batch, c, writer, start):
    if not batch:
        return
    ids = c.assign([text for _, text, _ in batch])
    writer.writerows((start + i, name(j)) for i, j in enumerate(ids))
    for (_, text, where), j in zip(batch, ids):
        yield name(j), text, where


def embed(folder, texts, batch=32, max_length=512):
    """Mean-pooled last hidden states of a local Hugging Face model (a sentence-transformers folder
    holds one too), unit length. Loaded once; never downloads (local_files_only)."""
    global _EMBEDDER
    import torch
    if _EMBEDDER is None or _EMBEDDER[0] != folder:
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise DataError("--cluster-model needs transformers: pip install transformers") from None
        if not os.path.isdir(folder):
            raise DataError(f"--cluster-model {folder}: no such folder (a local Hugging Face model folder; nothing "
                            "is downloaded)")
        if not os.path.exists(os.path.join(folder, "config.json")):
            raise DataError(f"--cluster-model {folder}: no config.json in it: not a Hugging Face model folder")
        try:
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        except pickle.UnpicklingError as e:  # torch.load's weights_only refused a pickle holding code or objects
            found = [f for f in os.listdir(folder) if f.endswith((".bin", ".pt", ".pth", ".ckpt"))]
            raise DataError(f"--cluster-model {folder}: refused: its pickled weights ({', '.join(found) or 'a .bin'}) "
                            f"hold more than tensors ({type(e).__name__}: code or objects); nothing of it ran. Use a "
                            "model saved as model.safetensors, or one you trust converted to it") from None
        except (OSError, ValueError) as e:
            raise DataError(f"--cluster-model {folder}: cannot load a Hugging Face model from it ({e})") from None
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        _EMBEDDER = (folder, tok, model)
    _, tok, model = _EMBEDDER
    # documents are cut at the model's own limit of positions where it is below max_length
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", None) or max_length)
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append(((h * m).sum(1) / m.sum(1).clamp(min=1)).float().numpy())
    v = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


_EMBEDDER = None
