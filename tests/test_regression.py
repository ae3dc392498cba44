"""regression.py: the paper's Table 2 on the paper's data, exact fast scoring, clear errors."""
import json
import os
import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pytest

import regmix
import regression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
PAPER_TRAIN, PAPER_TEST = os.path.join(DATA, "paper_train_1m.csv"), os.path.join(DATA, "paper_test_1m.csv")


@pytest.fixture(scope="module")
def paper_fit(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("paper"))
    regmix.main(["--stage", "fit", "--results", PAPER_TRAIN, "--test", PAPER_TEST, "--out", out, "--data", out])
    return out


def test_table2_lightgbm_and_linear_rank_correlation(paper_fit):
    fit = json.load(open(os.path.join(paper_fit, "fit.json")))
    assert fit["target"] == "pile_cc" and fit["n_train"] == 512 and fit["n_test"] == 256
    assert fit["lightgbm"]["spearman"] >= 0.984  # paper Table 2: 98.45
    assert 0.88 <= fit["linear"]["spearman"] <= 0.92  # paper: 90.08
    assert fit["lightgbm"]["mse"] < fit["linear"]["mse"] and 0 < fit["lightgbm"]["r2"] <= 1
    assert os.path.getsize(os.path.join(paper_fit, "fit.png")) > 1000


def test_simulate_finds_the_papers_mixture(paper_fit):
    regmix.main(["--stage", "simulate", "--out", paper_fit, "--data", paper_fit,
                 "--prior", os.path.join(DATA, "paper_prior.json"),
                 "--compare", f"human={os.path.join(DATA, 'paper_human_1b.json')}",
                 "--compare", f"paper={os.path.join(DATA, 'paper_regmix_1b.json')}"])
    mix = json.load(open(os.path.join(paper_fit, "mixture.json")))
    w = mix["weights"]
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["pile_cc"] >= 0.80  # the paper's final mixture: pile_cc 0.870, ubuntu_irc 0.064
    assert sorted(w, key=w.get)[-2] == "ubuntu_irc"
    assert mix["n_samples"] == 1_000_000 and mix["top_k"] == 100 and mix["target"] == "pile_cc"
    b = mix["baselines"]
    assert {"natural (prior)", "uniform", "human", "paper"} <= set(b)
    assert mix["predicted_loss"] < b["natural (prior)"]["predicted_loss"] < b["uniform"]["predicted_loss"]
    assert b["human"]["predicted_loss"] > mix["predicted_loss"]
    assert os.path.getsize(os.path.join(paper_fit, "mixture.png")) > 1000


def test_forest_scores_equal_lightgbm_predict():
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(6) * 0.3, 400)
    y = X @ rng.normal(size=6) + np.sin(7 * X[:, 0]) + 0.01 * rng.normal(size=400)
    booster = regression.fit_lightgbm(X, y)
    forest = regression.Forest(booster)
    assert forest.kernel_args is not None  # the fast path, not the fallback
    C = np.vstack([rng.dirichlet(np.ones(6) * 0.2, 20000), X, np.eye(6)])  # zeros, ties at thresholds
    ref = booster.predict(C)
    assert np.abs(forest.predict(C, chunk=7000) - ref).max() <= 1e-9
    # split thresholds themselves: x == threshold must go left, as in LightGBM
    thr = [n["threshold"] for t in booster.dump_model()["tree_info"][:50] for n in _nodes(t["tree_structure"])]
    T = np.tile(X[:len(thr)], 1)
    T[:, 0] = thr[:len(T)]
    assert np.abs(forest.predict(T) - booster.predict(T)).max() <= 1e-9


def _nodes(n):
    if "leaf_value" in n:
        return []
    return [n] + _nodes(n["left_child"]) + _nodes(n["right_child"])


def test_forest_falls_back_where_the_scheme_does_not_apply():
    rng = np.random.default_rng(1)
    X = rng.random((300, 3))
    X[rng.random(300) < 0.3, 1] = 0.0
    y = X[:, 0] + (X[:, 1] == 0)
    booster = lgb.train(dict(objective="regression", verbose=-1, zero_as_missing=True, num_threads=1),
                        lgb.Dataset(X, y), 20)
    forest = regression.Forest(booster)
    assert forest.kernel_args is None
    assert np.allclose(forest.predict(X), booster.predict(X))


def test_spearman_and_metrics():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert regression.metrics(y, y ** 3)["spearman"] == pytest.approx(1.0)
    assert regression.metrics(y, -y)["spearman"] == pytest.approx(-1.0)
    assert regression.ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    m = regression.metrics(y, y + 1)
    assert m["mse"] == pytest.approx(1.0) and m["r2"] == pytest.approx(0.5) and m["pearson"] == pytest.approx(1.0)


def test_cross_validation_without_test_and_default_target(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 60)
    lines = ["run,weight.a,weight.b,weight.c,loss.a,loss.mine,failed"]
    for i, x in enumerate(X):
        failed = "nan loss" if i == 5 else ""
        lines.append(f"{i},{x[0]},{x[1]},{x[2]},{1 - x[0]},{2 - x[1] ** 2 + 0.01 * rng.normal()},{failed}")
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    fit = regmix_fit(tmp_path, "--results", str(tmp_path / "r.csv"))
    assert fit["target"] == "mine"  # the single loss without a weight: an eval-only domain
    assert fit["n_train"] == 59 and fit["n_test"] == 59 and fit["evaluation"] == "5-fold cross-validation"
    assert fit["linear"]["spearman"] > 0.8


def regmix_fit(tmp_path, *args):
    regmix.main(["--stage", "fit", "--out", str(tmp_path), "--data", str(tmp_path), *args])
    return json.load(open(tmp_path / "fit.json"))


def test_paper2csv_converts_the_papers_layout(tmp_path):
    (tmp_path / "m.csv").write_text("index,train_the_pile_pile_cc,train_the_pile_github\n1,0.7,0.3\n0,0.5,0.5\n")
    (tmp_path / "l.csv").write_text("index,metric/the_pile_pile_cc_val_loss,other\n0,5.5,x\n1,5.1,y\n")
    regression.paper2csv(str(tmp_path / "m.csv"), str(tmp_path / "l.csv"), str(tmp_path / "o.csv"))
    assert (tmp_path / "o.csv").read_text() == "run,weight.pile_cc,weight.github,loss.pile_cc\n0,0.5,0.5,5.5\n1,0.7,0.3,5.1\n"


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "regmix.py"), *args], capture_output=True, text=True,
                          cwd=ROOT)


@pytest.mark.parametrize("content,extra,message", [
    ("run,weight.a,weight.b,loss.a\n" + "".join(f"{i},0.5,0.5,{i}\n" for i in range(5)), [],
     "5 usable runs; a fit needs at least 10"),
    ("run,weight.a,weight.b,loss.a\n" + "".join(f"{i},0.5,0.5,{i}\n" for i in range(12)), ["--target", "b"],
     "no column loss.b"),
    ("run,weight.a,weight.b,loss.a\n" + "".join(f"{i},0.5,0.6,{i}\n" for i in range(12)), [],
     "sum to 1.1000, not 1"),
    ("run,weight.a,weight.b,loss.a\n" + "".join(f"{i},0.5,0.5,3.0\n" for i in range(12)), [],
     "loss.a is the same in every run"),
    ("run,weight.a,weight.b,loss.a\n" + "".join(f"{i},0.5,0.5,{i}\n" for i in range(12)), ["--test", "{tmp}/t.csv"],
     "its domains (a, c) differ"),
])
def test_bad_results_give_one_line_errors(tmp_path, content, extra, message):
    (tmp_path / "r.csv").write_text(content)
    (tmp_path / "t.csv").write_text("run,weight.a,weight.c,loss.a\n0,0.5,0.5,1\n")
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    if "--target" not in extra:
        extra += ["--target", "a"]
    r = run_cli("--stage", "fit", "--results", str(tmp_path / "r.csv"), "--out", str(tmp_path), "--data", str(tmp_path), *extra)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "r.csv" in r.stderr or "t.csv" in r.stderr
