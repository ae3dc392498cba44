"""Mixture reuse (issue 35): an earlier mixture kept as one virtual domain, a small sweep over it and
the new domains, the answer back on every domain."""
import csv
import json
import os

import numpy as np
import pytest

import regmix
import reuse
from data import DataError

SMALL = ["--model", "tiny", "--steps", "3", "--batch-size", "4", "--micro-batch-size", "4", "--block-size", "16",
         "--eval-seqs", "2", "--warmup", "1", "--workers", "1"]


def old_mixture(tmp_path, weights):
    path = tmp_path / "old_mixture.json"
    path.write_text(json.dumps({"weights": weights, "target": "target"}))
    return str(path)


def test_collapse_and_expand_round_trip_exactly():
    g = reuse.Reuse({"existing": {"a": 0.25, "c": 0.75}, "web": {"d": 0.5, "e": 0.5}})
    leaves = ["a", "b", "c", "d", "e", "f"]
    cols = g.columns(leaves)
    assert cols == ["existing", "web", "b", "f"] and g.leaves(cols) == ["a", "c", "d", "e", "b", "f"]
    C = np.random.default_rng(0).dirichlet(np.ones(4), 50)
    W = reuse.to_leaves(g, C, cols, leaves)
    assert np.allclose(W.sum(1), 1)
    assert np.allclose(g.collapse(W, leaves), C, rtol=0, atol=1e-15)  # back to the columns
    assert np.allclose(W[:, 0] / W[:, 2], 0.25 / 0.75)  # the members keep their ratio in every row
    assert np.allclose(reuse.to_leaves(g, g.collapse(W, leaves), cols, leaves), W, rtol=0, atol=1e-15)


def test_a_virtual_domain_is_capped_by_its_tightest_member():
    g = reuse.Reuse({"existing": {"a": 0.2, "c": 0.8}})
    leaves = ["a", "b", "c"]
    leaf_caps = np.array([0.1, 1.0, 0.6])  # a may take 0.1 at most, c 0.6
    caps = dict(zip(g.columns(leaves), g.column_caps(leaf_caps, leaves)))
    assert caps["existing"] == pytest.approx(min(0.1 / 0.2, 0.6 / 0.8))  # 0.5 (a binds), not 0.7 (the sum)
    for v in np.linspace(0, caps["existing"], 7):  # any weight within the cap expands within every leaf's
        w = reuse.to_leaves(g, [[v, 1 - v]], g.columns(leaves), leaves)[0]
        assert (w <= leaf_caps + 1e-12).all()


def test_token_counts_of_the_virtual_domain_alone_keep_its_own_cap(tmp_path):
    """--tokens with a count for the virtual domain but none for its members (a swarm's own config):
    the members' caps cannot be known, so the virtual domain keeps the cap of its own count."""
    import constraints
    g = reuse.Reuse({"existing": {"a": 0.5, "b": 0.5}})
    counts = tmp_path / "tokens.json"
    counts.write_text(json.dumps({"existing": 100, "c": 100}))
    c = constraints.Constraints(tokens=str(counts), target_tokens=50)
    key = "token budget (4 epochs of 50 tokens)"
    by_constraint = {key: np.array([1.0, 1.0])}
    out = constraints.member_caps(by_constraint, g, ["existing", "c"], None, c)
    assert out[key].tolist() == [1.0, 1.0]
    counts.write_text(json.dumps({"a": 5, "b": 100, "c": 100}))  # members known: a binds (4 x 5 / 50 / 0.5)
    out = constraints.member_caps(by_constraint, g, ["existing", "c"], None, c)
    assert out[key].tolist() == pytest.approx([0.8, 1.0])


def test_reuse_from_an_earlier_mixture_json_end_to_end(corpus_dir, tmp_path, capsys):
    """alpha and beta of an earlier mixture (delta has gone) at their old ratio 1:2, gamma new."""
    old = old_mixture(tmp_path, {"alpha": 0.2, "beta": 0.4, "delta": 0.4})
    out = str(tmp_path / "out")
    regmix.main(["--stage", "all", "--reuse", old, "--data", corpus_dir, "--out", out, "--samples", "20000",
                 "--top-k", "10", "--bootstrap", "2", *SMALL])
    printed = capsys.readouterr().out
    assert printed.count("1 domain(s) of") == 1 and "delta" in printed  # the removed domain, named once
    rows = list(csv.DictReader(open(os.path.join(out, "mixtures.csv"))))
    assert len(rows) == reuse.MIN_REUSE_RUNS  # 2 columns x 3 runs, at least 16
    for r in rows:  # every leaf written, the reused two at 1:2
        a, b, g = (float(r[f"weight.{d}"]) for d in ("alpha", "beta", "gamma"))
        assert a + b + g == pytest.approx(1, abs=1e-5) and (a + b < 1e-9 or b / a == pytest.approx(2, rel=1e-3))
    fit = json.load(open(os.path.join(out, "fit.json")))
    assert fit["domains"] == ["existing", "gamma"] and fit["reuse"]["groups"]["existing"] == pytest.approx(
        {"alpha": 1 / 3, "beta": 2 / 3})
    mix = json.load(open(os.path.join(out, "mixture.json")))
    w = mix["weights"]
    assert set(w) == {"alpha", "beta", "gamma"} and sum(w.values()) == pytest.approx(1)
    assert w["beta"] == pytest.approx(2 * w["alpha"]) and mix["columns"]["existing"] == pytest.approx(w["alpha"] + w["beta"])
    assert set(mix["baselines"]["natural (prior)"]["weights"]) == {"alpha", "beta", "gamma"}  # leaves, trainable


def test_a_killed_reuse_sweep_resumes(corpus_dir, tmp_path):
    old = old_mixture(tmp_path, {"alpha": 0.5, "beta": 0.5})
    out = str(tmp_path / "out")
    base = ["--reuse", old, "--data", corpus_dir, "--out", out, "--n-mixtures", "12", *SMALL]
    regmix.main(["--stage", "proxy", "--shard", "0/2", *base])  # half the sweep, then a stop
    first = {f: os.path.getmtime(os.path.join(out, "runs", f)) for f in os.listdir(os.path.join(out, "runs"))}
    mixtures_csv = open(os.path.join(out, "mixtures.csv")).read()
    assert len(first) == 6
    regmix.main(["--stage", "all", "--samples", "5000", "--top-k", "5", "--bootstrap", "0", *base])
    runs = os.listdir(os.path.join(out, "runs"))
    assert len(runs) == 12 and all(os.path.getmtime(os.path.join(out, "runs", f)) == t for f, t in first.items())
    assert open(os.path.join(out, "mixtures.csv")).read() == mixtures_csv  # the same sweep, resumed
    assert json.load(open(os.path.join(out, "fit.json")))["n_train"] == 12


def test_a_removal_alone_needs_no_sweep(corpus_dir, tmp_path, capsys):
    old = old_mixture(tmp_path, {"alpha": 0.1, "beta": 0.2, "gamma": 0.3, "delta": 0.4})
    out = str(tmp_path / "out")
    regmix.main(["--stage", "simulate", "--reuse", old, "--data", corpus_dir, "--out", out])
    mix = json.load(open(os.path.join(out, "mixture.json")))
    assert mix["weights"] == pytest.approx({"alpha": 1 / 6, "beta": 2 / 6, "gamma": 3 / 6})
    printed = capsys.readouterr().out
    assert "nothing needs a sweep" in printed and "(delta)" in printed and not os.path.exists(os.path.join(out, "runs"))
    with pytest.raises(SystemExit, match="A removal alone needs no proxies"):
        regmix.main(["--stage", "mixtures", "--reuse", old, "--data", corpus_dir, "--out", out])


def test_reuse_of_domains_that_match_nothing_is_one_clear_line(corpus_dir, tmp_path):
    old = old_mixture(tmp_path, {"web": 0.5, "books": 0.5})
    with pytest.raises(SystemExit) as e:
        regmix.main(["--stage", "mixtures", "--reuse", old, "--data", corpus_dir, "--out", str(tmp_path / "out")])
    msg = str(e.value.code)
    assert msg.startswith("error: --reuse") and "none of its domains (web, books)" in msg and "--data" in msg
    with pytest.raises(DataError, match="--unfreeze gamma: not a domain of --reuse"):
        reuse.read_reuse(old_mixture(tmp_path, {"alpha": 1.0}), ["alpha", "beta"], ["gamma"])
    (tmp_path / "bad.json").write_text('{"existing": {"alpha": "x"}}')
    with pytest.raises(DataError, match="ratios of 'existing' must be numbers"):
        reuse.read_reuse(str(tmp_path / "bad.json"), ["alpha"])


def test_unfreeze_takes_a_domain_out_of_the_virtual_one(tmp_path):
    g = reuse.read_reuse(old_mixture(tmp_path, {"alpha": 0.2, "beta": 0.3, "gamma": 0.5}), ["alpha", "beta", "gamma"],
                         ["beta"])
    assert g.groups == {"existing": pytest.approx({"alpha": 0.2 / 0.7, "gamma": 0.5 / 0.7})}
    assert g.columns(["alpha", "beta", "gamma"]) == ["existing", "beta"]


def test_reuse_in_rounds_within_a_token_budget(corpus_dir, tmp_path):
    """--rounds proposes on the columns and writes the leaves; --target-tokens caps every leaf, the
    virtual domain by its tightest member."""
    meta = json.load(open(os.path.join(corpus_dir, "meta.json")))
    tokens = {d: meta["domains"][d]["train_tokens"] for d in ("alpha", "beta", "gamma")}
    target_tokens = int(sum(tokens.values()) * 2 / 1.5)  # 2 epochs of every domain: the caps sum to 1.5
    old = old_mixture(tmp_path, {"alpha": 0.7, "beta": 0.3})
    out = str(tmp_path / "out")
    regmix.main(["--stage", "all", "--reuse", old, "--data", corpus_dir, "--out", out, "--rounds", "2",
                 "--n-mixtures", "20", "--target-tokens", str(target_tokens), "--max-epochs", "2", "--samples", "20000",
                 "--top-k", "10", "--bootstrap", "0", *SMALL])
    rows = list(csv.DictReader(open(os.path.join(out, "mixtures.csv"))))
    assert {r["round"] for r in rows} == {"1", "2"} and len(rows) == 20
    for r in rows:  # every round on the leaves, alpha and beta at 7:3
        a, b = float(r["weight.alpha"]), float(r["weight.beta"])
        assert a + b < 1e-9 or a / (a + b) == pytest.approx(0.7, abs=2e-3)
    mix = json.load(open(os.path.join(out, "mixture.json")))
    for d, w in mix["weights"].items():  # each leaf within 2 epochs of its own tokens
        assert w <= 2 * tokens[d] / target_tokens + 1e-9
