"""ladder.py and the fit's own diagnostics (issue 27): how far the proxies speak for the target."""
import json
import os

import numpy as np
import pytest
from scipy.stats import spearmanr

import regmix
from results import Results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
SMALL = ["--model", "tiny", "--steps", "4", "--batch-size", "4", "--micro-batch-size", "2", "--block-size", "16",
         "--eval-seqs", "2", "--warmup", "1", "--workers", "1"]


@pytest.mark.parametrize("target", ["pile_cc", "all"])
def test_offline_ladder_of_the_papers_1m_and_60m_runs(tmp_path, target):
    small, big = os.path.join(DATA, "paper_test_1m.csv"), os.path.join(DATA, "paper_test_60m.csv")
    regmix.main(["--stage", "ladder", "--results", small, "--ladder-results", big, "--out", str(tmp_path),
                 "--target", target])
    lad = json.load(open(tmp_path / "ladder.json"))
    a, b = Results(small), Results(big)
    assert a.runs == b.runs and lad["runs"] == 256
    # independently: scipy's Spearman of each loss column, and of the plain mean for `all`
    cols = [d for d in a.loss_domains if d in b.loss_domains]
    la = np.array([[float(r[f"loss.{d}"]) for d in cols] for r in a.rows])
    lb = np.array([[float(r[f"loss.{d}"]) for d in cols] for r in b.rows])
    for j, d in enumerate(cols):
        assert lad["spearman"][d] == pytest.approx(spearmanr(la[:, j], lb[:, j])[0], abs=1e-12)
    ya, yb = (la.mean(1), lb.mean(1)) if target == "all" else (la[:, cols.index("pile_cc")], lb[:, cols.index("pile_cc")])
    assert lad["spearman"]["target"] == pytest.approx(spearmanr(ya, yb)[0], abs=1e-12)
    assert os.path.getsize(tmp_path / "ladder.png") > 1000 and lad["verdict"]


def test_offline_ladder_refuses_tables_of_other_mixtures(tmp_path):
    small, big = os.path.join(DATA, "paper_test_1m.csv"), os.path.join(DATA, "paper_test_1b.csv")
    with pytest.raises(SystemExit, match="not the same mixture"):
        regmix.main(["--stage", "ladder", "--results", small, "--ladder-results", big, "--out", str(tmp_path)])


def test_ladder_trains_a_second_scale_and_resumes(corpus_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    base = ["--data", corpus_dir, "--out", out, *SMALL]
    regmix.main(["--stage", "all", "--n-mixtures", "12", "--samples", "5000", "--top-k", "10", "--bootstrap", "0", *base])
    regmix.main(["--stage", "ladder", "--ladder-runs", "5", "--ladder-steps", "8", *base])
    lad = json.load(open(os.path.join(out, "ladder.json")))
    big = Results(os.path.join(out, "ladder", "results.csv"))
    assert len(big.runs) == 8 and lad["runs"] == 8  # 5 of the sweep's, chosen, natural, uniform
    assert json.load(open(os.path.join(out, "ladder", "runs", f"run_{int(big.runs[0]):05d}.json")))["tokens"] == 8 * 4 * 16
    assert set(lad["chosen"]) == {"tiny", "tiny x 8 steps"} and "target" in lad["spearman"]
    assert "verdict:" in capsys.readouterr().out
    # killed after some runs: the rest are trained, the finished ones kept as they were
    runs = sorted(os.listdir(os.path.join(out, "ladder", "runs")))
    kept = {f: open(os.path.join(out, "ladder", "runs", f)).read() for f in runs[:4]}
    for f in runs[4:]:
        os.remove(os.path.join(out, "ladder", "runs", f))
    os.remove(os.path.join(out, "ladder", "results.csv"))
    regmix.main(["--stage", "ladder", "--ladder-runs", "5", "--ladder-steps", "8", *base])
    assert {f: open(os.path.join(out, "ladder", "runs", f)).read() for f in runs[:4]} == kept
    again = json.load(open(os.path.join(out, "ladder.json")))
    assert again["spearman"] == pytest.approx(lad["spearman"], abs=2e-6)  # (losses kept to 6 decimals)


def write_table(path, X, y):
    with open(path, "w") as f:
        f.write(",".join(["run"] + [f"weight.d{j}" for j in range(X.shape[1])] + ["loss.t"]) + "\n")
        for i, (x, v) in enumerate(zip(X, y)):
            f.write(",".join([str(i)] + [f"{w:.6f}" for w in x] + [f"{v:.6f}"]) + "\n")
    return str(path)


def test_learning_curve_and_regret_tell_signal_from_noise(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(4), 120)
    clean = 3 + X @ np.array([0.6, -0.3, 0.2, 0.0])
    ys = {"clean": clean, "noise": rng.normal(3, 0.1, len(clean))}
    fits = {}
    for name, y in ys.items():
        out = tmp_path / name
        regmix.main(["--stage", "fit", "--results", write_table(tmp_path / f"{name}.csv", X, y), "--out", str(out),
                     "--target", "t", "--regressor", "linear", "--data", str(tmp_path / "none")])
        fits[name] = json.load(open(out / "fit.json"))
    c, n = fits["clean"], fits["noise"]
    assert [p["runs"] for p in c["learning_curve"]] == [30, 60, 90, 120]
    assert min(p["spearman"] for p in c["learning_curve"]) > 0.95
    assert max(abs(p["spearman"]) for p in n["learning_curve"]) < 0.5  # flat: more runs would not help
    # regret as a share of the runs' range: near 0 for a fit that ranks, large for one that cannot
    share = {k: fits[k]["top1_regret"] / np.ptp(y) for k, y in ys.items()}
    assert share["clean"] < 0.01 and share["noise"] > 0.1


def test_the_ladder_picks_runs_by_their_own_ids_when_a_run_failed(tmp_path):
    """A failed run (left out of the fit) must not shift the ids of the runs the ladder retrains
    against their weights: each picked row carries its run's own mixture."""
    from types import SimpleNamespace

    import ladder
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 30)
    path = tmp_path / "runs.csv"
    with open(path, "w") as f:
        f.write("run,weight.a,weight.b,weight.c,loss.x,failed\n")
        for i, x in enumerate(X):
            loss, failed = ("nan", "loss nan at step 2") if i < 3 else (f"{3 + x[0] - x[1]:.6f}", "")
            f.write(f"{i},{x[0]:.6f},{x[1]:.6f},{x[2]:.6f},{loss},{failed}\n")
    out = str(tmp_path / "out")
    regmix.main(["--stage", "fit", "--results", str(path), "--target", "x", "--regressor", "linear", "--out", out])
    with open(os.path.join(out, "mixture.json"), "w") as f:
        json.dump(dict(weights=dict(a=0.5, b=0.3, c=0.2)), f)
    domains = SimpleNamespace(trainable=["a", "b", "c"], meta=dict(prior=dict(a=0.3, b=0.3, c=0.4)))
    rows, named = ladder.ladder_mixtures(SimpleNamespace(out=out, ladder_runs=6, data="d"), domains)
    picked = [r for r in rows if r["run"] not in named]
    assert len(picked) == 6
    for r in picked:
        assert int(r["run"]) >= 3  # never a failed run
        assert [float(r[f"weight.{d}"]) for d in "abc"] == pytest.approx(X[int(r["run"])], abs=1e-5)
