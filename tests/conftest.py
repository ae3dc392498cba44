import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # LightGBM's OpenMP must not spin against torch

import corpora  # noqa: E402
import prepare  # noqa: E402


@pytest.fixture(scope="session")
def enc4096():
    return prepare.get_tokenizer("gpt2", 4096)


def make_corpus(root, n_docs=40, seed=0):
    """A small folder of three domains that look different, and one eval-only domain."""
    rng = np.random.default_rng(seed)
    words = {
        "alpha": ["apple", "banana", "cherry", "grape", "melon", "lemon"],
        "beta": ["def", "return", "class", "import", "lambda", "(x)", "=", ":"],
        "gamma": ["whereas", "hereby", "licence", "party", "shall", "agreement"],
        "target": ["apple", "def", "return", "banana", "cherry", "class"],
    }
    for dom, vocab in words.items():
        os.makedirs(os.path.join(root, dom), exist_ok=True)
        for i in range(n_docs):
            text = " ".join(rng.choice(vocab, size=int(rng.integers(50, 200))))
            with open(os.path.join(root, dom, f"{i:03d}.txt"), "w") as f:
                f.write(f"{dom} document {i}: {text}\n")
    return root


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory, enc4096):
    """A prepared data folder (vocab 4096): alpha, beta, gamma trainable; target eval-only."""
    src = make_corpus(str(tmp_path_factory.mktemp("src")))
    out = str(tmp_path_factory.mktemp("data"))
    prepare.prepare(corpora.folder_docs(src, corpora.Skips()), out, enc4096, eval_only={"target"},
                    val_fraction=0.2, progress=False)
    return out
