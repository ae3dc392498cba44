"""
Token files, memory-mapped domains and the mixture sampler.

On disk, a prepared data folder looks like

    DIR/meta.json              tokenizer, per-domain counts, and the prior (token shares)
    DIR/tokenizer.json         the tokenizer, when it was a Hugging Face tokenizer.json
    DIR/<domain>/train.bin     header + tokens (absent for eval-only domains)
    DIR/<domain>/val.bin       header + tokens

Each .bin starts with a header of little-endian int64s, checked on load: (magic, format version,
vocab size, number of tokens, bytes per token, 0, 0, 0), 64 bytes. Tokens are uint16 while the
vocabulary fits (<= 65,536 ids) and uint32 beyond (Llama-3's 128k). Version-1 files (a 32-byte
header of the first four fields, always uint16) are still read. Every document ends in the
tokenizer's end-of-document token.

In RegMix every training sequence comes from a single domain, picked with probability equal to
its mixture weight, at a uniformly random offset (`Batches`). Validation uses the same token
windows for every proxy (`val_windows`), so loss differences come from the mixture, not from
which windows were drawn.
"""
import csv
import io
import json
import os
from dataclasses import dataclass

import numpy as np

# torch is imported only where batches become tensors (Batches, val_windows): prepare, fit and
# simulate never need it, and importing it takes ~2.5 s.

MAGIC = 0x584D4752  # "RGMX"
VERSION = 2
HEADER_INTS = {1: 4, 2: 8}  # format version -> int64s in its header


def token_dtype(vocab_size):
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class DataError(Exception):
    """A problem with the user's data or arguments; scripts print it as one line, no traceback."""


# -----------------------------------------------------------------------------
# small file helpers shared by prepare.py and regmix.py

def make_dir(path, flag):
    """os.makedirs, with one clear line where the folder cannot be made or written to (a file in
    the way, no permission, a read-only disk), before any work is done."""
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"{flag} {path}: a file is in the way (a folder is needed there); choose another {flag}") from None
    except OSError as e:
        raise DataError(f"{flag} {path}: cannot create this folder ({e.strerror}); choose another {flag}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataError(f"{flag} {path}: cannot write in this folder; choose another {flag}")


def print0(*a, **k):
    """print, on the first rank only (torchrun's RANK; every process that has none is the first)."""
    if int(os.environ.get("RANK", 0)) == 0:
        print(*a, **k, flush=True)


def usable_cores():
    """The cores this process may run on (a job scheduler's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def atomic_write_text(path, text):
    """Write `text` to `path` so that a reader sees the old file or the new one, never half of one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_csv(path):
    """The rows of a CSV table, or one clear line for a folder or a file that is not UTF-8 text."""
    if os.path.isdir(path):
        raise DataError(f"{path}: a folder, not a CSV table")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark is no column name
            reader = csv.DictReader(f)
            check_header(path, reader.fieldnames)
            return list(reader)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#x} at offset {e.start}); save it as UTF-8 "
                        "(a spreadsheet's 'CSV UTF-8')") from None


def check_header(path, columns):
    """A column named twice would be read as its last copy only (csv.DictReader keeps one value per
    name), so that a table holding two loss.pile_cc fits one of them without a word. Unnamed
    columns (a spreadsheet's trailing commas) are never read and may repeat."""
    seen = {}
    for i, c in enumerate(columns or [], 1):
        if c and c in seen:
            raise DataError(f"{path}: column '{c}' appears twice (columns {seen[c]} and {i}); keep one of them "
                            "(or rename the other)")
        seen.setdefault(c, i)


def read_json(path, remedy):
    """A JSON file this project wrote, or one clear line saying what to do (`remedy`) when it is
    truncated or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({type(e).__name__}: truncated or not JSON); {remedy}") from None


def write_csv(path, rows, columns):
    """Atomic: a reader (or a killed writer) never leaves half a table behind."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# -----------------------------------------------------------------------------
# token files

class TokenWriter:
    """Appends tokens to a temporary file; commit() writes the header and renames it into place."""

    def __init__(self, path, vocab_size):
        self.path, self.vocab_size, self.n = path, vocab_size, 0
        self.dtype = token_dtype(vocab_size)
        self.tmp = f"{path}.tmp{os.getpid()}"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.f = open(self.tmp, "wb")
        self.f.write(b"\0" * 8 * HEADER_INTS[VERSION])  # placeholder until we know the count

    def write(self, tokens):
        tokens = np.asarray(tokens, dtype=self.dtype.newbyteorder("<"))
        self.f.write(tokens.tobytes())
        self.n += len(tokens)

    def written(self):
        """The tokens written so far (before commit)."""
        self.f.flush()
        return np.fromfile(self.tmp, dtype=self.dtype, offset=8 * HEADER_INTS[VERSION])

    def commit(self):
        self.f.seek(0)
        header = [MAGIC, VERSION, self.vocab_size, self.n, self.dtype.itemsize, 0, 0, 0]
        self.f.write(np.array(header, dtype="<i8").tobytes())
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        self.f.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def read_tokens(path, vocab_size=None):
    """Memory-map a token file after checking its header against its size (and the vocab)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: token file not found; run prepare.py for this data folder")
    size = os.path.getsize(path)
    if size < 8 * HEADER_INTS[1]:
        raise DataError(f"{path}: {size} bytes is shorter than the header; re-run prepare.py")
    magic, version, vocab, n = np.fromfile(path, dtype="<i8", count=4)
    if magic != MAGIC:
        raise DataError(f"{path}: not a RegMix token file (bad magic number); re-run prepare.py")
    if version not in HEADER_INTS:
        raise DataError(f"{path}: format version {version}, this code reads {', '.join(map(str, HEADER_INTS))}; "
                        "re-run prepare.py (or update this code)")
    header_bytes = 8 * HEADER_INTS[version]
    if size < header_bytes:
        raise DataError(f"{path}: {size} bytes is shorter than the header; re-run prepare.py")
    itemsize = 2 if version == 1 else int(np.fromfile(path, dtype="<i8", count=5)[4])
    if itemsize not in (2, 4):
        raise DataError(f"{path}: {itemsize} bytes per token in the header; the file is corrupt, re-run prepare.py")
    dtype = np.dtype("<u2" if itemsize == 2 else "<u4")
    if size != header_bytes + itemsize * n:
        raise DataError(f"{path}: header says {n} tokens but the file holds {(size - header_bytes) // itemsize}; "
                        "it is truncated or corrupt, re-run prepare.py")
    if vocab_size is not None and vocab != vocab_size:
        raise DataError(f"{path}: tokens use a vocabulary of {vocab}, expected {vocab_size}; "
                        "re-run prepare.py with the same --vocab-size for every file")
    if n == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=header_bytes, shape=(int(n),))


# -----------------------------------------------------------------------------
# a prepared data folder

@dataclass
class Domains:
    meta: dict           # the folder's meta.json
    names: list          # every domain, eval-only ones included (sorted)
    trainable: list      # the domains a mixture may weight (sorted)
    train: dict          # name -> memmap of training tokens (trainable domains only)
    val: dict            # name -> memmap of validation tokens (every domain)

    @property
    def vocab_size(self):
        return self.meta["tokenizer"]["vocab_size"]

    @property
    def prior(self):
        return np.array([self.meta["prior"][d] for d in self.trainable])


def load_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    if not os.path.exists(path):
        raise DataError(f"{data_dir}: no meta.json; prepare it first (python prepare.py, "
                        f"or python prepare.py --input DIR --out {data_dir})")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({e}); re-run prepare.py for this folder") from None
    if not isinstance(meta, dict) or not {"tokenizer", "domains", "prior"} <= set(meta):
        raise DataError(f"{path}: not a meta.json of prepare.py (no tokenizer, domains or prior); re-run prepare.py")
    return meta


def open_domains(data_dir):
    """Open every domain's token files once, read-only, checking each against meta.json."""
    meta = load_meta(data_dir)
    vocab = meta["tokenizer"]["vocab_size"]
    names = sorted(meta["domains"])
    trainable = [d for d in names if not meta["domains"][d]["eval_only"]]
    train = {d: read_tokens(os.path.join(data_dir, d, "train.bin"), vocab) for d in trainable}
    val = {d: read_tokens(os.path.join(data_dir, d, "val.bin"), vocab) for d in names}
    return Domains(meta, names, trainable, train, val)


def check_block_size(domains, block_size):
    """Every domain must hold one sequence for validation, and every trainable one for training."""
    for d in domains.names:
        for split, tokens in (("training", domains.train.get(d)), ("validation", domains.val[d])):
            if tokens is not None and len(tokens) < block_size + 1:
                raise DataError(f"domain '{d}' has {len(tokens)} {split} tokens, fewer than one sequence of "
                                f"{block_size + 1}; lower --block-size or prepare more data for it")


def mixture_vector(weights, trainable, names=(), source="the mixture"):
    """Check a {domain: weight} mixture against the trainable domains; return it normalised, in
    their order. Errors name `source` (a file or a flag)."""
    unknown = sorted(set(weights) - set(trainable))
    if unknown:
        why = "is eval-only and cannot be trained on" if unknown[0] in names else "is not among the domains"
        raise DataError(f"{source}: domain '{unknown[0]}' {why}; trainable domains: {', '.join(trainable)}")
    w = np.array([float(weights.get(d, 0.0)) for d in trainable])
    for d, x in zip(trainable, w):
        if not np.isfinite(x) or x < 0:
            raise DataError(f"{source}: the weight of '{d}' is {x}; weights must be finite and >= 0")
    check_finite_sum(w, trainable, source)
    if w.sum() <= 0:
        raise DataError(f"{source}: the weights are all zero; give at least one domain a positive weight")
    return w / w.sum()


def check_finite_sum(w, names, source, what="weight"):
    """Shares so large that their sum overflows (1e308 each) would normalise to all zeros: one line
    naming the largest, not a mixture of nothing."""
    with np.errstate(over="ignore"):
        total = np.sum(w)
    if not np.isfinite(total):
        d = names[int(np.argmax(w))]
        raise DataError(f"{source}: the {what}s sum to more than a float holds (the {what} of '{d}' is {np.max(w):g}); "
                        f"give {what}s as fractions or counts of a sensible size")


def read_mixture(path, olmix_key="relative_sizes"):
    """A mixture file: simulate's mixture.json ({"weights": {...}}) or a plain {domain: weight} JSON;
    or an Olmix fit config (.yaml), whose `priors` holds the domains' relative_sizes (--prior) and
    token_counts (--tokens: olmix_key)."""
    olmix = path.endswith((".yaml", ".yml"))
    if olmix:
        import yaml  # only for Olmix's configs
        load, error, kind = yaml.safe_load, yaml.YAMLError, "YAML"
    else:
        load, error, kind = json.load, json.JSONDecodeError, "JSON"
    try:
        with open(path) as f:
            obj = load(f)
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror})") from None
    except error as e:
        raise DataError(f"{path}: not valid {kind} ({str(e).splitlines()[0]})") from None
    if olmix:
        weights = (obj.get("priors") or {}).get(olmix_key) if isinstance(obj, dict) else None
        expected = f"an Olmix fit config with priors: {olmix_key}: (domain: number)"
    else:
        weights = obj.get("weights", obj) if isinstance(obj, dict) else None
        expected = "a JSON object of domain -> weight"
    if not isinstance(weights, dict) or not all(isinstance(v, (int, float)) for v in weights.values()):
        raise DataError(f"{path}: expected {expected}")
    return weights


# -----------------------------------------------------------------------------
# batches

class Batches:
    """Training batches drawn from a mixture: each sequence from one domain, at a random offset.

    The stream depends only on (data, weights, batch shape, seed); `state()` / `load_state()`
    capture it for checkpoints so a resumed run continues with exactly the batches it would
    have seen.
    """

    def __init__(self, domains, weights, batch_size, block_size, seed, device="cpu"):
        self.p = mixture_vector(weights, domains.trainable, domains.names)
        self.arrays = [domains.train[d] for d in domains.trainable]
        for d, a, w in zip(domains.trainable, self.arrays, self.p):
            if w > 0 and len(a) < block_size + 1:
                raise DataError(f"domain '{d}' has {len(a)} training tokens, fewer than one sequence of "
                                f"{block_size + 1}; lower --block-size or give it weight 0")
        import torch
        self.batch_size, self.block_size, self.device = batch_size, block_size, torch.device(device)
        self.rng = np.random.default_rng(seed)

    def draw(self):
        """Which domain and offset each sequence of the next batch comes from."""
        doms = self.rng.choice(len(self.p), size=self.batch_size, p=self.p)
        highs = np.array([len(self.arrays[d]) - self.block_size for d in doms])
        offs = self.rng.integers(0, highs)  # offsets in [0, len - block_size)
        return doms, offs

    def next(self):
        import torch
        doms, offs = self.draw()
        T = self.block_size
        buf = np.empty((self.batch_size, T + 1), dtype=np.int64)
        for i, (d, o) in enumerate(zip(doms, offs)):
            buf[i] = self.arrays[d][o:o + T + 1]
        return to_device(torch.from_numpy(buf), self.device)

    def state(self):
        return self.rng.bit_generator.state

    def load_state(self, state):
        self.rng.bit_generator.state = state


def to_device(buf, device):
    """Split a (B, T+1) token buffer into inputs and shifted targets on `device`."""
    x, y = buf[:, :-1], buf[:, 1:]
    if device.type == "cuda":  # pinned memory lets the copy overlap with compute
        return (x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True))
    return x.contiguous().to(device), y.contiguous().to(device)


def val_windows(tokens, n_seqs, block_size, name="?"):
    """The fixed validation windows of one domain: up to n_seqs evenly spaced, non-overlapping
    sequences of block_size + 1 tokens. The same for every proxy, so losses are comparable."""
    T = block_size + 1
    if len(tokens) < T:
        raise DataError(f"domain '{name}' has {len(tokens)} validation tokens, fewer than one sequence of "
                        f"{T}; lower --block-size or prepare more data for it")
    import torch
    n = min(n_seqs, len(tokens) // T)
    starts = np.linspace(0, len(tokens) - T, n).astype(np.int64) if n > 1 else np.zeros(1, dtype=np.int64)
    return torch.from_numpy(np.stack([np.asarray(tokens[s:s + T], dtype=np.int64) for s in starts]))
