"""Domains from an unlabelled corpus: how well prepare.py --cluster K recovers real domains, and
what clustering costs, as a ratio to preparing the same documents without it, in the same run.
Goal (issue 18): adjusted Rand index >= 0.75 with K = the number of true domains.

    python bench/cluster_domains.py [--per-domain 1000] [--docs 100000]

The corpus: text this machine already holds, its labels removed. Five domains: Debian's
copyright files (licenses), Debian changelogs, manual pages (troff source), Python source and
Markdown / reStructuredText documentation of the installed packages; up to --per-domain files
each (a seeded sample), the first 20,000 characters of each. The quality run clusters them with
K = 5 and compares OUT/clusters.csv with the true domains. The cost run cuts the same text into
--docs documents of ~1,000 characters and prepares them with and without --cluster 5: documents/s
and the peak memory of each process.
"""
import argparse
import glob
import gzip
import os
import site
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--per-domain", type=int, default=1000, help="files per true domain in the quality run")
p.add_argument("--docs", type=int, default=100_000, help="documents in the cost run")
p.add_argument("--max-chars", type=int, default=20_000, help="characters kept of each file")
args = p.parse_args()

packages = site.getsitepackages()[0]
SOURCES = {
    "copyright": glob.glob("/usr/share/doc/*/copyright"),
    "changelog": glob.glob("/usr/share/doc/*/changelog.Debian.gz"),
    "manpage": glob.glob("/usr/share/man/man1/*.gz") + glob.glob("/usr/share/man/man3/*.gz"),
    "python": glob.glob(os.path.join(packages, "**", "*.py"), recursive=True),
    "markdown": glob.glob(os.path.join(packages, "**", "*.md"), recursive=True)
    + glob.glob(os.path.join(packages, "**", "*.rst"), recursive=True),
}


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            return f.read(args.max_chars)
    except (OSError, EOFError):
        return ""


def write_corpus(root, docs_by_domain):
    """--input layout: one folder per domain, one .txt per document, in order (prepare.py reads sorted)."""
    for domain, docs in docs_by_domain.items():
        os.makedirs(os.path.join(root, domain))
        for i, text in enumerate(docs):
            with open(os.path.join(root, domain, f"{i:07d}.txt"), "w") as f:
                f.write(text)


# prepare.py in a process that reports its own peak memory when it ends
RUN = ("import resource, runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
       "finally:\n    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")


def prepare(src, out, *extra):
    """Run prepare.py as a process: (seconds, peak resident memory of that process in MB)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", RUN, os.path.join(ROOT, "prepare.py"), "--input", src, "--out", out, *extra],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    peak = next(int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("PEAK_KB"))
    return time.perf_counter() - t0, peak / 1024


rng = np.random.default_rng(0)
corpus = {}
for domain, files in SOURCES.items():
    files = sorted(files)
    picked = [files[i] for i in sorted(rng.choice(len(files), min(args.per_domain, len(files)), replace=False))]
    corpus[domain] = [t for t in map(read, picked) if len(t.split()) >= 20]
print("corpus: " + ", ".join(f"{d} {len(v)}" for d, v in corpus.items()) + " documents")

from sklearn.metrics import adjusted_rand_score  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "quality")
    write_corpus(src, corpus)
    labels = [d for d in sorted(corpus) for _ in corpus[d]]
    seconds, _ = prepare(src, os.path.join(tmp, "q_out"), "--cluster", str(len(corpus)))
    with open(os.path.join(tmp, "q_out", "clusters.csv")) as f:
        found = [line.split(",")[1].strip() for line in f.readlines()[1:]]
    assert len(found) == len(labels), (len(found), len(labels))
    print(f"quality: {len(labels):,} documents, K = {len(corpus)}: adjusted Rand index "
          f"{adjusted_rand_score(labels, found):.3f} ({seconds:.0f} s)")
    for d in sorted(corpus):
        got = [c for c, t in zip(found, labels) if t == d]
        top = max(set(got), key=got.count)
        print(f"  {d:<10} -> {top} ({got.count(top) / len(got):.0%} of its documents)")

    pieces = [t[i:i + 1000] for d in sorted(corpus) for t in corpus[d] for i in range(0, len(t), 1000)]
    pieces = [pieces[i % len(pieces)] for i in range(args.docs)]
    cost = os.path.join(tmp, "cost")
    write_corpus(cost, {"all": pieces})
    # plain: one domain, as given; clustered: the same documents into 5 clusters (the first prepare
    # also warms the file cache for the second)
    t_plain, m_plain = prepare(cost, os.path.join(tmp, "c_plain"))
    t_clu, m_clu = prepare(cost, os.path.join(tmp, "c_clu"), "--cluster", "5")
    print(f"cost: {args.docs:,} documents of ~1,000 characters; plain {args.docs / t_plain:,.0f} docs/s, "
          f"peak {m_plain:,.0f} MB; --cluster 5 {args.docs / t_clu:,.0f} docs/s, peak {m_clu:,.0f} MB")
    print(f"clustered / plain: time {t_clu / t_plain:.2f}x, peak memory {m_clu / m_plain:.2f}x")
