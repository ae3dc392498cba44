"""Search in rounds: --rounds R in --stage all, and --stage mixtures --next M by hand."""
import csv
import json
import os

import numpy as np
import pytest

import mixtures
import regmix
import regression
import sweep
import proposals
from data import DataError

DATA = os.path.join(os.path.dirname(__file__), "data")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--model", "tiny", "--steps", "4", "--batch-size", "4", "--micro-batch-size", "4", "--block-size", "16",
         "--eval-seqs", "4", "--warmup", "1", "--samples", "20000", "--top-k", "10", "--bootstrap", "0", "--regressor", "linear"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def weights(rs, names):
    return np.array([[float(r[f"weight.{d}"]) for d in names] for r in rs])


def test_round_sizes_spend_the_budget():
    assert mixtures.round_sizes(512, 1) == [512]
    assert mixtures.round_sizes(48, 3) == [24, 12, 12]
    assert mixtures.round_sizes(25, 3) == [12, 7, 6]
    for n, r in [(48, 2), (64, 4), (27, 12)]:
        sizes = mixtures.round_sizes(n, r)
        assert sum(sizes) == n and len(sizes) == r and min(sizes) >= 1
    with pytest.raises(mixtures.DataError, match="--rounds 2 with --n-mixtures 19: the first round's 9 runs"):
        mixtures.round_sizes(19, 2)
    with pytest.raises(mixtures.DataError, match="--rounds 17 with --n-mixtures 30"):
        mixtures.round_sizes(30, 17)
    with pytest.raises(mixtures.DataError, match="--rounds 0"):
        mixtures.round_sizes(8, 0)


def test_a_proposal_never_repeats_a_run_or_another_proposal():
    # noiseless linear losses: every refit ranks the candidates alike, so each proposal after the
    # first must fall back to the next best candidate
    rng = np.random.default_rng(0)
    c = np.array([1.0, 2.0, 3.0, 4.0])
    X = mixtures.on_grid(rng.dirichlet(np.ones(4), 30))
    cand = mixtures.on_grid(rng.dirichlet(np.ones(4), 2000))
    order = cand[np.argsort(cand @ c, kind="stable")]
    taken = np.vstack([X, order[:1]])  # the very best candidate is already a run
    p = proposals.propose("linear", X, X @ c, None, cand, 6, 1, taken)
    assert p.shape == (6, 4) and np.allclose(p.sum(1), 1)
    assert np.allclose(p, order[1:7], atol=1e-3)  # each put on the grid again
    assert not any(np.allclose(w, t) for w in p for t in taken)
    assert np.array_equal(p, proposals.propose("linear", X, X @ c, None, cand, 6, 1, taken))  # a seed, the same
    # candidates that are all runs already: an error, not a repeat
    with pytest.raises(DataError, match="every one of the 5 candidates repeats a run"):
        proposals.propose("linear", X, X @ c, None, X[:5], 2, 1, X)


def test_next_from_results_elsewhere_without_data(tmp_path, capsys):
    """A user with 24 of the paper's runs and its prior, no data folder: what to train next."""
    results = tmp_path / "res.csv"
    with open(os.path.join(DATA, "paper_train_1m.csv")) as f:
        results.write_text("".join(f.readlines()[:25]))
    prior = os.path.join(DATA, "paper_prior.json")
    made = []
    for name in ("a", "b"):
        out = str(tmp_path / name)
        common = ["--data", str(tmp_path / "nothing"), "--out", out, "--target", "pile_cc"]
        regmix.main(["--stage", "fit", "--results", str(results), "--regressor", "lightgbm", *common])
        regmix.main(["--stage", "mixtures", "--next", "5", "--prior", prior, *common])
        made.append(rows(os.path.join(out, "mixtures.csv")))
        with pytest.raises(SystemExit, match="5 mixture.s. have no result yet .run 25, 26"):
            regmix.main(["--stage", "mixtures", "--next", "5", "--prior", prior, *common])
    with pytest.raises(SystemExit, match="--next 0: the number of mixtures to propose must be at least 1"):
        regmix.main(["--stage", "mixtures", "--next", "0", "--prior", prior, *common])
    assert made[0] == made[1]  # deterministic for a seed
    new = made[0]
    assert [r["run"] for r in new] == ["25", "26", "27", "28", "29"] and {r["round"] for r in new} == {"2"}
    res = regression.Results(str(results))
    w = weights(new, res.domains)
    assert np.allclose(w.sum(1), 1, atol=1e-6)
    assert not any(np.allclose(a, b) for a in w for b in res.X)
    # within simulate's availability bound, 15x the prior (not the proxy range: a proposal may try more)
    p = json.load(open(prior))
    p = np.array([p[d] for d in res.domains])
    assert (w <= 15 * p / p.sum() + 2e-4).all()


def test_first_round_from_a_prior_alone(tmp_path):
    out = str(tmp_path / "out")
    prior = os.path.join(DATA, "paper_prior.json")
    regmix.main(["--stage", "mixtures", "--prior", prior, "--data", str(tmp_path / "none"), "--out", out,
                 "--n-mixtures", "24", "--rounds", "2"])
    mix = rows(os.path.join(out, "mixtures.csv"))
    names = list(json.load(open(prior)))
    assert len(mix) == 12 and {r["round"] for r in mix} == {"1"} and list(mix[0]) == ["run", "round"] + [f"weight.{d}" for d in names]
    p = np.array(list(json.load(open(prior)).values()))
    assert np.allclose(weights(mix, names), mixtures.sample_mixtures(p, 12, seed=42), atol=1e-5)


def test_rounds_in_stage_all_resume_mid_round_and_next_by_shards(corpus_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    # --workers 1: the proxies train in this process (worker processes are tested in test_regmix.py)
    cmd = ["--stage", "all", "--data", corpus_dir, "--out", out, "--n-mixtures", "20", "--rounds", "2", "--workers", "1", *SMALL]
    regmix.main(cmd)
    mix = rows(os.path.join(out, "mixtures.csv"))
    assert list(mix[0])[:2] == ["run", "round"]
    assert [r["round"] for r in mix] == ["1"] * 10 + ["2"] * 10 and [r["run"] for r in mix] == [str(i) for i in range(20)]
    names = ["alpha", "beta", "gamma"]
    assert len({tuple(w) for w in weights(mix, names)}) == 20
    fit = json.load(open(os.path.join(out, "fit.json")))
    assert fit["n_train"] == 20 and sorted(fit["runs"], key=int) == [str(i) for i in range(20)]
    assert "round 2 of 2" in capsys.readouterr().out

    # killed in round 2: two of its runs never finished; the rerun trains those two and proposes nothing new
    for run in (15, 19):
        os.remove(sweep.run_file(out, run))
    res = [r for r in rows(os.path.join(out, "results.csv")) if r["run"] not in ("15", "19")]
    sweep.write_csv(os.path.join(out, "results.csv"), res, list(res[0]))
    kept = os.path.getmtime(sweep.run_file(out, 16))
    regmix.main(cmd)
    assert rows(os.path.join(out, "mixtures.csv")) == mix
    assert os.path.getmtime(sweep.run_file(out, 16)) == kept
    assert os.path.exists(sweep.run_file(out, 15)) and os.path.exists(sweep.run_file(out, 19))
    assert "round 2 of 2" not in capsys.readouterr().out

    # by hand: a third round, trained by two shards of a job array
    regmix.main(["--stage", "mixtures", "--next", "3", "--data", corpus_dir, "--out", out, *SMALL])
    third = rows(os.path.join(out, "mixtures.csv"))[20:]
    assert [r["run"] for r in third] == ["20", "21", "22"] and {r["round"] for r in third} == {"3"}
    for i in range(2):
        regmix.main(["--stage", "proxy", "--data", corpus_dir, "--out", out, "--shard", f"{i}/2", "--workers", "1", *SMALL])
    trained = rows(os.path.join(out, "results.csv"))
    assert sorted(int(r["run"]) for r in trained) == list(range(23))
    regmix.main(["--stage", "fit", "--data", corpus_dir, "--out", out, *SMALL])
    assert json.load(open(os.path.join(out, "fit.json")))["n_train"] == 23



def test_two_next_at_once_never_give_one_run_two_mixtures(tmp_path):
    """Two --stage mixtures --next 3 on one --out at the same time: one lands, the other fails
    loudly; the file names each run once."""
    import subprocess
    import sys
    results = tmp_path / "res.csv"
    with open(os.path.join(DATA, "paper_train_1m.csv")) as f:
        results.write_text("".join(f.readlines()[:25]))
    prior = os.path.join(DATA, "paper_prior.json")
    out = str(tmp_path / "o")
    common = ["--data", str(tmp_path / "nothing"), "--out", out, "--target", "pile_cc"]
    # LightGBM: each proposal refits a forest, so that both processes are still proposing when the
    # first of them writes (with a quick regressor one may finish before the other reads the file)
    regmix.main(["--stage", "fit", "--results", str(results), "--regressor", "lightgbm", *common])
    cmd = [sys.executable, os.path.join(ROOT, "regmix.py"), "--stage", "mixtures", "--next", "3", "--prior", prior, *common]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    done = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(rc for _, _, rc in done)
    mix = rows(os.path.join(out, "mixtures.csv"))
    ids = [r["run"] for r in mix]
    # one lands; the other fails loudly: at once (the claim, or the file changed under it), or after
    # the first finished (its round has no results yet). Never both "landed" with one set kept.
    assert codes == [0, 1] and ids == ["25", "26", "27"], done
    loser = next(err for _, err, rc in done if rc)
    assert "another --stage mixtures --next" in loser or "have no result yet" in loser, loser
    assert not os.path.exists(os.path.join(out, ".next_round_2"))
    with pytest.raises(SystemExit, match="--next 100000: at most 256 mixtures a round"):
        regmix.main(["--stage", "mixtures", "--next", "100000", "--prior", prior, *common])


def test_a_moved_out_folder_still_finds_its_results(tmp_path, monkeypatch):
    import shutil
    results = tmp_path / "a" / "results.csv"
    results.parent.mkdir()
    with open(os.path.join(DATA, "paper_train_1m.csv")) as f:
        results.write_text("".join(f.readlines()[:25]))
    monkeypatch.chdir(tmp_path)
    prior = os.path.join(DATA, "paper_prior.json")
    regmix.main(["--stage", "fit", "--results", "a/results.csv", "--out", "a", "--regressor", "linear", "--data", "none"])
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))  # renamed, and run from elsewhere
    monkeypatch.chdir(tmp_path / "b")
    regmix.main(["--stage", "mixtures", "--next", "2", "--prior", prior, "--out", ".", "--data", "none"])
    assert [r["run"] for r in rows("mixtures.csv")] == ["25", "26"]  # the table's runs are 1-24


def test_after_rounds_simulate_returns_the_mean_of_its_pick_and_the_best_run(tmp_path, capsys):
    """After rounds, mixture.json holds the mean of the search's mixture and the best measured run;
    after one shot (no round beyond the first) the search's own, as the paper; the flag overrides."""
    from test_trust import write_table
    rng = np.random.default_rng(5)
    X = rng.dirichlet(np.ones(3), 30)
    y = 3 + X @ np.array([0.4, -0.2, 0.0]) + rng.normal(0, 0.01, 30)
    path = write_table(tmp_path / "t.csv", X, y[:, None])
    out = str(tmp_path / "out")
    common = ["--out", out, "--data", str(tmp_path / "none"), "--prior", "uniform", "--samples", "5000",
              "--bootstrap", "0", "--regressor", "linear"]
    regmix.main(["--stage", "fit", "--results", path, "--target", "m0", *common])

    def simulate(*flags):
        regmix.main(["--stage", "simulate", *common, *flags])
        m = json.load(open(os.path.join(out, "mixture.json")))
        return np.array([m["weights"][f"d{j}"] for j in range(3)]), m

    one_shot, m = simulate()
    assert m["baseline_chosen"] is None and not m["blended_with_best_run"]
    best = X[np.argmin(y)]
    assert not np.allclose(one_shot, best, atol=1e-3)  # else the test could not tell the two apart
    with open(os.path.join(out, "mixtures.csv"), "w") as f:  # runs 20-29 came in a second round
        f.write("run,round\n" + "".join(f"{i},{1 + (i >= 20)}\n" for i in range(30)))
    capsys.readouterr()
    after_rounds, m = simulate()
    assert m["blended_with_best_run"] and "the mean of the search's mixture" in capsys.readouterr().out
    assert np.allclose(after_rounds, (one_shot + best) / 2, atol=1e-6)
    assert not np.isclose(m["search_predicted_loss"], m["predicted_loss"])  # predicted where it is returned
    assert np.allclose(simulate("--no-blend-best-run")[0], one_shot)
    os.remove(os.path.join(out, "mixtures.csv"))
    assert np.allclose(simulate("--blend-best-run")[0], after_rounds)
