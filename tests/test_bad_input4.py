"""Bad input, round four (issue 36): runs reused whatever their settings, names that collide,
values that overflow, bombs and paths. Each case gets one clear line naming the file, flag or
domain and what to do, or a correct result."""
import csv
import gzip
import json
import os
import shutil

import numpy as np
import pytest
import torch

import clusters
import corpora
import mixtures
import prepare
import regmix
import sweep
import regression
import regressors
import results
from conftest import make_corpus
from data import DataError, mixture_vector, open_domains

from test_bad_input import DATA, PAPER_TRAIN, SMALL, error_of  # round three's helpers


def with_flag(argv, flag, value):
    """argv with flag's value replaced (SMALL's --steps 4 -> --steps 9)."""
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def table(path, n=30, losses=None, seed=0):
    """A results table of n runs over domains a, b, c and the loss x (or `losses`: {name: values})."""
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(3), n)
    losses = losses or {"x": 3 + X[:, 0] - 0.5 * X[:, 1] + 0.01 * rng.normal(size=n)}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "weight.a", "weight.b", "weight.c"] + [f"loss.{k}" for k in losses])
        for i in range(n):
            w.writerow([i, *(f"{x:.6f}" for x in X[i]), *(repr(float(v[i])) for v in losses.values())])
    return str(path)


# -- finished runs are reused only at their own settings ----------------------------------------

@pytest.fixture(scope="module")
def swept(tmp_path_factory, corpus_dir):
    """A sweep of 12 tiny runs (SMALL: 4 steps each), fitted and simulated."""
    out = str(tmp_path_factory.mktemp("swept") / "out")
    regmix.main(["--stage", "all", "--n-mixtures", "12", "--samples", "5000", "--top-k", "10", "--bootstrap", "0",
                 "--data", corpus_dir, "--out", out, *SMALL])
    return out


def copy_of(swept, tmp_path):
    out = str(tmp_path / "out")
    shutil.copytree(swept, out)
    return out


def add_mixture(out, run=12):
    with open(os.path.join(out, "mixtures.csv")) as f:
        rows = list(csv.DictReader(f))
    row = dict(rows[0], run=str(run))
    with open(os.path.join(out, "mixtures.csv"), "a") as f:
        f.write(",".join(row[c] for c in rows[0]) + "\n")


def test_a_sweep_continued_with_other_steps_is_refused(swept, corpus_dir, tmp_path):
    out = copy_of(swept, tmp_path)
    add_mixture(out)
    base = ["--stage", "proxy", "--data", corpus_dir, "--out", out]
    msg = error_of(regmix.main, [*base, *with_flag(SMALL, "--steps", "9")])
    assert "was trained with --steps 4, this command asks for 9" in msg and "another --out" in msg
    assert not os.path.exists(sweep.run_file(out, 12))  # nothing trained at the other setting
    # run files written before the settings were recorded: compared by their tokens
    for name in os.listdir(os.path.join(out, "runs")):
        path = os.path.join(out, "runs", name)
        row = json.load(open(path))
        del row["settings"]
        json.dump(row, open(path, "w"))
    msg = error_of(regmix.main, [*base, *with_flag(SMALL, "--batch-size", "8")])
    assert "trained 256 tokens, this command 512" in msg
    regmix.main([*base, *SMALL])  # the same flags: the new run is trained, the old ones kept
    assert os.path.exists(sweep.run_file(out, 12))


def test_a_sweep_continued_on_other_data_is_refused(swept, tmp_path, enc4096):
    other = str(tmp_path / "other")
    src = make_corpus(str(tmp_path / "src"), n_docs=30, seed=1)  # the same domains, other documents
    prepare.prepare(corpora.folder_docs(src, corpora.Skips()), other, enc4096, eval_only={"target"},
                    val_fraction=0.2, progress=False)
    out = copy_of(swept, tmp_path)
    add_mixture(out)
    msg = error_of(regmix.main, ["--stage", "proxy", "--data", other, "--out", out, *SMALL])
    assert "was trained on other data than --data" in msg


def test_a_results_table_of_two_settings_is_not_fitted_as_one(swept, corpus_dir, tmp_path):
    """A table mixed before the check (the issue's 256- and 576-token runs): fit and collect say so."""
    out = copy_of(swept, tmp_path)
    path = os.path.join(out, "runs", "run_00003.json")
    row = json.load(open(path))
    row["tokens"] = 9 * 4 * 16
    row.get("settings", {})["steps"] = 9
    json.dump(row, open(path, "w"))
    msg = error_of(regmix.main, ["--stage", "collect", "--data", corpus_dir, "--out", out, *SMALL])
    assert "runs 0 and 3 were trained at other settings (--steps 4 and 9)" in msg
    msg = error_of(regmix.main, ["--stage", "fit", "--data", corpus_dir, "--out", out, *SMALL])
    assert "other settings" in msg
    # the same table given to fit --results (copied out of its sweep, as a user shares it): checked too
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    rows[5]["tokens"] = str(9 * 4 * 16)
    shared = str(tmp_path / "shared.csv")
    with open(shared, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    msg = error_of(regmix.main, ["--stage", "fit", "--results", shared, "--out", str(tmp_path / "fit")])
    assert "shared.csv: runs 0 and 5 were trained at other settings (256 and 576 tokens)" in msg


def test_the_ladder_reruns_only_at_its_own_settings(swept, corpus_dir, tmp_path):
    out = copy_of(swept, tmp_path)
    base = ["--stage", "ladder", "--ladder-runs", "3", "--data", corpus_dir, "--out", out, *SMALL]
    regmix.main([*base, "--ladder-steps", "8"])
    msg = error_of(regmix.main, [*base, "--ladder-steps", "12"])
    assert "was trained with --ladder-steps 8, this command asks for 12" in msg and "delete" in msg
    # a new simulate: the ladder must not train (and report as chosen) the previous mixture
    path = os.path.join(out, "mixture.json")
    mix = json.load(open(path))
    mix["weights"] = {d: 1 / len(mix["weights"]) + (0.1 if i == 0 else -0.05) for i, d in enumerate(mix["weights"])}
    json.dump(mix, open(path, "w"))
    msg = error_of(regmix.main, [*base, "--ladder-steps", "8"])
    assert "mixtures.csv: made for another fit.json, mixture.json" in msg


def test_the_ladders_extras_train_at_the_sweeps_scale(swept, corpus_dir, tmp_path):
    out = copy_of(swept, tmp_path)
    msg = error_of(regmix.main, ["--stage", "ladder", "--ladder-runs", "3", "--ladder-steps", "8", "--data", corpus_dir,
                                 "--out", out, *with_flag(SMALL, "--steps", "5")])
    assert "was trained with --steps 4, this command asks for 5" in msg and "the sweep's own scale" in msg
    assert not os.path.exists(os.path.join(out, "ladder", "base", "runs", "run_00012.json"))


def test_compare_reuses_its_runs_only_at_their_settings(swept, corpus_dir, tmp_path, enc4096):
    out = copy_of(swept, tmp_path)
    base = ["--stage", "compare", "--data", corpus_dir, "--out", out]
    regmix.main([*base, *SMALL])
    msg = error_of(regmix.main, [*base, *with_flag(SMALL, "--steps", "5")])
    assert "eval.json was trained with --steps 4, this command asks for 5" in msg
    other = str(tmp_path / "other")  # the same domains, other documents: other runs
    prepare.prepare(corpora.folder_docs(make_corpus(str(tmp_path / "src"), n_docs=30, seed=1), corpora.Skips()), other,
                    enc4096, eval_only={"target"}, val_fraction=0.2, progress=False)
    msg = error_of(regmix.main, ["--stage", "compare", "--data", other, "--out", out, *SMALL])
    assert "eval.json was trained on other data than --data" in msg


# -- names that collide, values that overflow --------------------------------------------------------

def test_a_column_named_twice_is_refused(tmp_path, corpus_dir):
    path = tmp_path / "r.csv"
    table(path)
    lines = path.read_text().splitlines()
    rng = np.random.default_rng(1)
    lines = [lines[0] + ",loss.x"] + [ln + f",{rng.normal():.4f}" for ln in lines[1:]]  # loss.x again: noise
    path.write_text("\n".join(lines) + "\n")
    msg = error_of(regmix.main, ["--stage", "fit", "--results", str(path), "--out", str(tmp_path / "o"), "--target", "x"])
    assert "column 'loss.x' appears twice (columns 5 and 6)" in msg
    # a mixtures.csv with a weight twice
    mix_csv = tmp_path / "mixtures.csv"
    mix_csv.write_text("run,weight.alpha,weight.beta,weight.gamma,weight.alpha\n0,0.5,0.5,0,0.2\n")
    with pytest.raises(DataError, match="column 'weight.alpha' appears twice"):
        mixtures.check_mixtures(str(mix_csv), open_domains(corpus_dir))
    # the paper's release converted by paper2csv alike
    (tmp_path / "m.csv").write_text("index,train_the_pile_a,train_the_pile_b\n0,0.5,0.5\n")
    (tmp_path / "l.csv").write_text("index,metric/the_pile_a_val_loss,metric/the_pile_a_val_loss\n0,3,4\n")
    with pytest.raises(DataError, match="column 'metric/the_pile_a_val_loss' appears twice"):
        results.paper2csv(str(tmp_path / "m.csv"), str(tmp_path / "l.csv"), str(tmp_path / "o.csv"))


def test_two_columns_that_become_one_metric_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 20)
    mix = tmp_path / "mix.csv"
    mix.write_text("index,train_the_pile_a,train_the_pile_b,train_the_pile_c\n"
                   + "".join(f"{i},{x[0]:.4f},{x[1]:.4f},{x[2]:.4f}\n" for i, x in enumerate(X)))
    loss = tmp_path / "loss.csv"
    loss.write_text("index,metric/the_pile_pile_cc_val_loss,pile_cc\n"
                    + "".join(f"{i},{3 + x[0]:.4f},{rng.normal():.4f}\n" for i, x in enumerate(X)))
    msg = error_of(regmix.main, ["--stage", "fit", "--results", str(mix), "--metrics", str(loss),
                                 "--out", str(tmp_path / "o"), "--target", "pile_cc"])
    assert "columns 'metric/the_pile_pile_cc_val_loss' and 'pile_cc' both name the metric 'pile_cc'" in msg
    assert f"--metrics {loss}" in msg


def test_losses_that_overflow_are_left_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = 3 + rng.normal(0, 0.1, 40)
    y[[3, 7, 11, 15]] = 1e308  # a tenth of the runs
    out = str(tmp_path / "o")
    regmix.main(["--stage", "fit", "--results", table(tmp_path / "r.csv", n=40, losses={"x": y}), "--out", out,
                 "--target", "x", "--regressor", "gp"])
    assert "4 run(s) with a loss beyond 1e+150 left out (run 3: x 1e+308)" in capsys.readouterr().err
    assert json.load(open(os.path.join(out, "fit.json")))["n_train"] == 36
    # one such run among many: every score and the searched mixture stay finite
    y = 3 + rng.normal(0, 0.1, 40)
    y[5] = 1e308
    out = str(tmp_path / "o1")
    regmix.main(["--stage", "fit", "--results", table(tmp_path / "r1.csv", n=40, losses={"x": y}), "--out", out,
                 "--target", "x", "--regressor", "linear"])
    fit = json.load(open(os.path.join(out, "fit.json")))
    assert all(np.isfinite(v) for v in fit["regressors"]["linear"].values())
    regmix.main(["--stage", "simulate", "--out", out, "--prior", "uniform", "--samples", "5000", "--bootstrap", "0",
                 "--data", str(tmp_path / "none")])
    assert np.isfinite(json.load(open(os.path.join(out, "mixture.json")))["predicted_loss"])


def test_a_regressor_file_of_another_regressor_is_refused(tmp_path):
    out = str(tmp_path / "o")
    regmix.main(["--stage", "fit", "--results", table(tmp_path / "r.csv"), "--out", out, "--target", "x",
                 "--data", str(tmp_path / "none")])
    shutil.copy(os.path.join(out, "regressors", "lightgbm.json"), os.path.join(out, "regressors", "gp.json"))
    msg = error_of(regmix.main, ["--stage", "simulate", "--out", out, "--regressor", "gp", "--prior", "uniform",
                                 "--samples", "5000", "--bootstrap", "0"])
    assert "gp.json: holds a lightgbm regressor, not gp" in msg


def ladder_tables(tmp_path, n, big_losses):
    """A small scale's table of n runs and a large one of the same mixtures with these losses."""
    small = table(tmp_path / "small.csv", n=n, losses={"x": 3 + np.arange(n) * 0.1})
    big = tmp_path / "big.csv"
    shutil.copy(small, big)
    rows = list(csv.DictReader(open(big)))
    for r, v in zip(rows, big_losses):
        r["loss.x"] = v
    with open(big, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return small, str(big)


def test_a_ladder_of_three_runs_gives_an_interval_and_no_verdict(tmp_path):
    small, big = ladder_tables(tmp_path, 3, ["2", "2.5", "3"])
    regmix.main(["--stage", "ladder", "--results", small, "--ladder-results", big, "--out", str(tmp_path), "--target", "x"])
    lad = json.load(open(tmp_path / "ladder.json"))
    lo, hi = lad["interval"]
    assert lad["spearman"]["target"] == pytest.approx(1.0) and -1 <= lo <= lad["spearman"]["target"] <= hi <= 1
    assert "too few to judge" in lad["verdict"] and "trusted" not in lad["verdict"]


@pytest.mark.parametrize("values,want", [(["", "", "", "", ""], "only 0 of the 5 shared mixtures have a x"),
                                         (["nan"] * 5, "only 0 of the 5 shared mixtures have a x"),
                                         (["2"] * 5, "x is 2 for every shared mixture: nothing to rank")])
def test_a_ladder_table_without_a_ranking_is_refused(tmp_path, values, want):
    small, big = ladder_tables(tmp_path, 5, values)
    msg = error_of(regmix.main, ["--stage", "ladder", "--results", small, "--ladder-results", big, "--out",
                                 str(tmp_path), "--target", "x"])
    assert want in msg and big in msg
    assert not (tmp_path / "ladder.json").exists()


def test_the_ladders_tables_and_flags_name_themselves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/default here
    small = table(tmp_path / "small.csv", n=5)
    msg = error_of(regmix.main, ["--stage", "ladder", "--results", small, "--out", "o", "--target", "x"])
    assert "needs --ladder-results" in msg and "data/default" not in msg
    msg = error_of(regmix.main, ["--stage", "ladder", "--results", small, "--ladder-results", "nope.csv", "--out", "o"])
    assert msg.startswith("error: --ladder-results nope.csv: no such file; pass the large scale's results table")
    ratios = os.path.join(DATA, "olmix_dclm_ratios_40.csv")
    msg = error_of(regmix.main, ["--stage", "ladder", "--results", small, "--ladder-results", ratios,
                                 "--ladder-metrics", "nope.csv", "--out", "o"])
    assert "--ladder-metrics nope.csv: no such file" in msg
    msg = error_of(regmix.main, ["--stage", "fit", "--results", ratios, "--metrics", "nope.csv", "--out", "o"])
    assert msg.startswith("error: --metrics nope.csv: no such file; pass the table of each run's measurements")
    msg = error_of(regmix.main, ["--stage", "fit", "--results", table(tmp_path / "t.csv"), "--test", "nope.csv",
                                 "--out", "o", "--target", "x"])
    assert msg.startswith("error: --test nope.csv: no such file")


def test_target_all_names_every_metric_and_can_leave_one_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 30)
    losses = {f"m{j:02d}": 3 + X[:, j % 3] * (j + 1) / 10 + 0.01 * rng.normal(size=30) for j in range(13)}
    losses["wall_seconds"] = rng.uniform(3000, 4000, 30)  # a numeric column that is no metric
    path = table(tmp_path / "t.csv", n=30, losses=losses)
    out = ["--out", str(tmp_path / "o"), "--regressor", "linear", "--results", path]
    regmix.main(["--stage", "fit", "--target", "all", *out])
    printed = capsys.readouterr().out
    assert "the mean of 14 metric(s): m00, m01" in printed and "m12, wall_seconds" in printed
    assert "wall_seconds sit(s) far from the others' values" in printed and "--target all,-wall_seconds" in printed
    regmix.main(["--stage", "fit", "--target", "all,-wall_seconds", *out])
    tw = json.load(open(tmp_path / "o" / "fit.json"))["target_weights"]
    assert "wall_seconds" not in tw and len(tw) == 13 and sum(tw.values()) == pytest.approx(1)
    assert "no such metric 'nope'" in error_of(regmix.main, ["--stage", "fit", "--target", "all,-nope", *out])


def test_a_metric_named_with_a_comma_can_be_weighted(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 24)
    path = table(tmp_path / "t.csv", n=24, losses={"acc,none": 0.5 + 0.3 * X[:, 0], "other": 0.2 + 0.1 * X[:, 1]})
    regmix.main(["--stage", "fit", "--results", path, "--out", str(tmp_path / "o"), "--target", "acc,none=0.7,other=0.3",
                 "--regressor", "linear", "--maximize"])
    tw = json.load(open(tmp_path / "o" / "fit.json"))["target_weights"]
    assert tw == pytest.approx({"acc,none": 0.7, "other": 0.3})
    names = ["acc,none", "other", "a"]
    assert results.target_parts("acc,none,other", names) == ["acc,none", "other"]
    assert results.target_parts("a,acc,none=2", names) == ["a", "acc,none=2"]
    assert results.target_parts("a,b", names) == ["a", "b"]  # (b: no such metric, said by target_weights)


def test_simulate_beside_the_default_data_of_other_domains_uses_the_runs_mean(tmp_path, corpus_dir, monkeypatch,
                                                                              capsys):
    shutil.copytree(corpus_dir, tmp_path / "data" / "default")
    monkeypatch.chdir(tmp_path)
    with open(PAPER_TRAIN) as f:
        (tmp_path / "r.csv").write_text("".join(f.readlines()[:25]))
    regmix.main(["--stage", "fit", "--results", "r.csv", "--out", "o", "--regressor", "linear", "--target", "pile_cc"])
    regmix.main(["--stage", "simulate", "--out", "o", "--samples", "5000", "--bootstrap", "0"])
    assert "the runs' mean weights serve as one" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "o" / "mixture.json")
    # an explicit --data of other domains is still an error that names the domain
    msg = error_of(regmix.main, ["--stage", "simulate", "--out", "o", "--samples", "5000", "--bootstrap", "0",
                                 "--data", "./data/default"])  # (named: not the default)
    assert "no share for" in msg


def test_shares_that_overflow_are_refused(tmp_path):
    out = str(tmp_path / "o")
    regmix.main(["--stage", "fit", "--results", table(tmp_path / "r.csv"), "--out", out, "--target", "x",
                 "--regressor", "linear", "--data", str(tmp_path / "none")])
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({"a": 1e308, "b": 1e308, "c": 1.0}))
    msg = error_of(regmix.main, ["--stage", "simulate", "--out", out, "--prior", str(prior), "--samples", "5000",
                                 "--bootstrap", "0"])
    assert f"--prior {prior}: the shares sum to more than a float holds (the share of 'a' is 1e+308)" in msg
    with pytest.raises(DataError, match="the weight of 'b' is 1e"):  # a --mixture or --compare alike
        mixture_vector({"a": 1.0, "b": 1e308, "c": 1e308}, ["a", "b", "c"], source="--mixture m.json")


# -- resources and paths ---------------------------------------------------------------------------------

def test_documents_and_lines_are_bounded_in_every_format(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpora, "MAX_DOC_CHARS", 100)
    monkeypatch.setattr(corpora, "MAX_LINE_CHARS", 1000)
    import zstandard
    long_line = json.dumps({"text": "a" * 5000}) + "\n"  # beyond the line bound: skipped
    long_doc = json.dumps({"text": "b" * 500}) + "\n"  # beyond the document bound: cut
    short = json.dumps({"text": "short one"}) + "\n"
    body = (long_line + long_doc + short).encode()
    root = tmp_path / "in"
    (root / "z").mkdir(parents=True)
    (root / "g").mkdir()
    (root / "t").mkdir()
    (root / "j").mkdir()
    (root / "z" / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    with gzip.open(root / "g" / "a.json.gz", "wb") as f:
        f.write(body)
    (root / "j" / "a.jsonl").write_bytes(body)
    (root / "t" / "a.txt").write_text("c" * 500)
    skips = corpora.Skips()
    docs = list(corpora.folder_docs(str(root), skips))
    assert sorted((d, len(t)) for d, t, _ in docs) == sorted(
        [(d, n) for d in ("g", "j", "z") for n in (100, 9)] + [("t", 100)])
    assert skips.count == 3 and all("a line of more than 1,000 characters" in s for s in skips.first[:3])
    err = capsys.readouterr().err
    assert err.count("cut to its first 100") == 1 and err.count("too long to parse") == 1  # said once a run
    # shards (--shards, --pile) alike
    skips = corpora.Skips()
    docs = list(corpora.shard_docs([str(root / "z" / "a.jsonl.zst")], skips, None))
    assert [len(t) for _, t, _ in docs] == [100, 9] and skips.count == 1


def test_a_zstd_bomb_comes_out_in_bounded_pieces(tmp_path):
    import zstandard
    path = tmp_path / "bomb.jsonl.zst"
    with open(path, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as f:
        for _ in range(256):
            f.write(b"a" * (1 << 20))  # 256 MiB of one line, a few KB compressed
    assert os.path.getsize(path) < 100_000
    sizes = [len(c) for c in corpora.zst_chunks(str(path))]
    assert sum(sizes) == 256 << 20 and max(sizes) < 64 << 20


def test_a_large_fit_subsamples_the_costly_regressors_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(regressors, "FIT_BUDGET", 1e7)
    monkeypatch.setattr(regressors, "MIN_BUDGET_RUNS", 20)
    monkeypatch.setattr(regression, "LARGE_FIT", 100)
    assert regressors.max_runs("gp", 60, 3) == 46 and regressors.max_runs("linear", 60, 3) == 60
    out = tmp_path / "o"
    regmix.main(["--stage", "fit", "--results", table(tmp_path / "r.csv", n=60), "--out", str(out), "--target", "x",
                 "--regressor", "gp"])
    printed = capsys.readouterr().out
    assert "gp on a random 46 of them" in printed and "fold 1 of 5 done" in printed
    gp = json.load(open(out / "regressors" / "gp.json"))
    assert len(gp["X"]) == 46  # the refit too: on a random 46 of the 60 runs
    # the curve's points as far as CURVE_FITS x FIT_BUDGET goes (the 45-run point's folds would pass it), then all
    cost = [regression.FOLDS * regressors.fit_cost("gp", n, 3, 1) for n in (15, 30, 45)]
    assert sum(cost[:2]) <= regression.CURVE_FITS * 1e7 < sum(cost)
    assert [p["runs"] for p in json.load(open(out / "fit.json"))["learning_curve"]] == [15, 30, 60]


@pytest.mark.parametrize("name", ["../../x", "/abs"])
def test_a_run_name_outside_out_is_refused(tmp_path, corpus_dir, name):
    name = str(tmp_path / "abs") if name == "/abs" else name
    out = tmp_path / "a" / "b" / "out"
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1}))
    for stage in (["--stage", "train", "--mixture", str(mix)], ["--stage", "export"]):
        msg = error_of(regmix.main, [*stage, "--name", name, "--data", corpus_dir, "--out", str(out), *SMALL])
        assert f"--name '{name}': a run folder under --out" in msg
    assert not os.path.exists(tmp_path / "a" / "x") and not os.path.exists(tmp_path / "abs")


def bad_checkpoint(path, corpus_dir):
    from model import GPT, config_for
    model = GPT(config_for("tiny", open_domains(corpus_dir).vocab_size, 16))
    ck = model.checkpoint()
    ck["model"]["wte.weight"] = torch.zeros(100, ck["config"]["n_embd"])  # the embedding of another vocabulary
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, path)
    return path


def test_a_checkpoint_whose_tensors_do_not_fit_its_config(tmp_path, corpus_dir):
    ckpt = bad_checkpoint(tmp_path / "out" / "target" / "ckpt.pt", corpus_dir)
    base = ["--data", corpus_dir, "--out", str(tmp_path / "out"), *SMALL]
    msg = error_of(regmix.main, ["--stage", "export", "--ckpt", str(ckpt), *base])
    assert "wte.weight has shape (100, 128), its config says (4096, 128)" in msg
    assert not os.path.exists(tmp_path / "out" / "target" / "ckpt_hf" / "config.json")
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1}))
    msg = error_of(regmix.main, ["--stage", "train", "--resume", "--mixture", str(mix), *base])
    assert "wte.weight has shape (100, 128)" in msg


def test_resuming_on_data_of_another_vocabulary_is_refused(tmp_path, corpus_dir):
    out = str(tmp_path / "out")
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1, "beta": 1, "gamma": 1}))
    train = ["--stage", "train", "--mixture", str(mix), "--out", out, *SMALL, "--ckpt-every", "2"]
    regmix.main([*train, "--data", corpus_dir])
    other = str(tmp_path / "other")
    src = make_corpus(str(tmp_path / "src"), n_docs=20)
    prepare.prepare(corpora.folder_docs(src, corpora.Skips()), other, prepare.get_tokenizer("gpt2", 2048),
                    eval_only={"target"}, val_fraction=0.2, progress=False)
    msg = error_of(regmix.main, [*train, "--resume", "--data", other])
    assert "holds a model of another shape than these flags build on this data" in msg


def test_a_checkpoint_whose_optimizer_state_is_broken(tmp_path, corpus_dir):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1}))
    train = ["--stage", "train", "--mixture", str(mix), "--data", corpus_dir, "--out", str(tmp_path / "out"), *SMALL]
    regmix.main(train)
    path = tmp_path / "out" / "target" / "ckpt.pt"
    ck = torch.load(path, weights_only=True)
    ck["optimizer"]["param_groups"] = []  # a bad copy, a hand
    torch.save(ck, path)
    msg = error_of(regmix.main, [*train, "--resume"])
    assert "its optimizer or batch state does not fit this run" in msg


class RunsCode:
    """Unpickling this calls os.system: what a crafted weights file can do with a full pickle load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_pytorch_model_bin_is_refused_in_one_line(tmp_path):
    pytest.importorskip("transformers")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(dict(model_type="bert", hidden_size=8, num_hidden_layers=1,
                                                       num_attention_heads=1, intermediate_size=8, vocab_size=30)))
    marker = tmp_path / "it_ran"
    torch.save({"payload": RunsCode(marker)}, model / "pytorch_model.bin")
    clusters._EMBEDDER = None
    with pytest.raises(DataError, match=r"--cluster-model .*: refused: its pickled weights \(pytorch_model.bin\)"):
        clusters.embed(str(model), ["a document"])
    assert not marker.exists()


def test_saved_clusters_of_the_wrong_width_are_refused(tmp_path):
    src = make_corpus(str(tmp_path / "src"), n_docs=10)
    data = str(tmp_path / "data")
    prepare.main(["--input", src, "--out", data, "--cluster", "2", "--vocab-size", "4096"])
    arrays = dict(np.load(os.path.join(data, "clustering.npz")))
    np.savez(os.path.join(data, "clustering.npz"), centres=arrays["centres"][:, :-3], idf=arrays["idf"])
    msg = error_of(prepare.main, ["--input", src, "--out", str(tmp_path / "more"), "--clusters-from", data,
                                  "--vocab-size", "4096"])
    assert "clustering.npz's centres have" in msg and "do not belong together" in msg
    np.savez(os.path.join(data, "clustering.npz"), centres=arrays["centres"][:1], idf=arrays["idf"])
    msg = error_of(prepare.main, ["--input", src, "--out", str(tmp_path / "more"), "--clusters-from", data,
                                  "--vocab-size", "4096"])
    assert "clustering.json says k = 2, clustering.npz holds 1 centres" in msg


def test_clustering_says_a_cut_document_once(tmp_path, monkeypatch, capsys):
    """--cluster reads the input twice (the sample k-means is fitted on, then every document): a
    warning is said once a run, and skipped records are counted once."""
    monkeypatch.setattr(corpora, "MAX_DOC_CHARS", 100)
    src = make_corpus(str(tmp_path / "src"), n_docs=10)
    with open(os.path.join(src, "alpha", "long.txt"), "w") as f:
        f.write("word " * 100)
    prepare.main(["--input", src, "--out", str(tmp_path / "data"), "--cluster", "2", "--vocab-size", "4096"])
    assert capsys.readouterr().err.count("cut to its first 100") == 1
