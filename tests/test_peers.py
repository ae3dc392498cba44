"""Sweeps made by other tools (Olmix's two tables, CLIMB's one table), metrics to maximise, and
the friction points a new user met with them (issue 17). Excerpts in tests/data, sources in its README."""
import json
import os

import numpy as np
import pytest

import regmix
import regression
import regressors
import mixtures
import constraints

DATA = os.path.join(os.path.dirname(__file__), "data")
RATIOS, METRICS = (os.path.join(DATA, f"olmix_dclm_{k}_40.csv") for k in ("ratios", "metrics"))
CLIMB = os.path.join(DATA, "climb_60.csv")
OLMIX_CONFIG = os.path.join(DATA, "olmix_dclm_priors.yaml")


def run(tmp_path, *argv):
    regmix.main([*argv, "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no_data")])
    return json.load(open(tmp_path / "out" / "fit.json"))


def test_olmix_two_tables_join_on_run_and_metrics_keep_their_names(tmp_path):
    res = regression.Results(RATIOS, METRICS)
    assert len(res.domains) == 24 and res.domains[0] == "adult_content" and len(res.runs) == 40
    assert res.loss_domains[:2] == ["arc_challenge:rc::olmes", "arc_easy:rc::olmes"] and len(res.loss_domains) == 8
    assert np.allclose(res.X.sum(1), 1)
    fit = run(tmp_path, "--stage", "fit", "--results", RATIOS, "--metrics", METRICS, "--target", "all",
              "--regressor", "quadratic")
    assert fit["target"] == "all" and len(fit["target_weights"]) == 8 and fit["n_train"] == 40
    assert fit["regressors"]["quadratic"]["spearman"] > 0.5
    fit = run(tmp_path, "--stage", "fit", "--results", RATIOS, "--metrics", METRICS, "--target", "arc_easy:rc::olmes",
              "--regressor", "linear")
    assert fit["target_weights"] == {"arc_easy:rc::olmes": 1.0}


def test_olmix_ratios_alone_say_what_is_missing(tmp_path):
    with pytest.raises(SystemExit, match="pass the measurements with --metrics FILE"):
        run(tmp_path, "--stage", "fit", "--results", RATIOS)
    with pytest.raises(regression.DataError, match="not the paper's release"):
        regression.paper2csv(RATIOS, METRICS, str(tmp_path / "x.csv"))
    with pytest.raises(regression.DataError, match="not the paper's release"):
        regression.paper2csv(CLIMB, None, str(tmp_path / "x.csv"))


def test_climb_one_table_maximize_end_to_end(tmp_path, capsys):
    res = regression.Results(CLIMB)
    assert res.domains == [f"cluster{i}" for i in range(1, 12)]
    assert res.loss_domains == ["piqa_acc_norm", "arc_easy_acc", "hellaswag_acc_norm", "valid_avg"]
    fit = run(tmp_path, "--stage", "fit", "--results", CLIMB, "--target", "valid_avg", "--maximize")
    assert fit["maximize"] and set(fit["regressors"]) == set(regressors.NAMES) and fit["chosen"] in fit["regressors"]
    # Spearman between prediction and measurement of valid_avg as given: positive for a good fit
    assert fit["regressors"][fit["chosen"]]["spearman"] > 0.5
    assert fit["regressors"]["mixing_law"]["spearman"] > 0.3  # fitted as ceiling - accuracy, not a flat 0
    prior = tmp_path / "prior.json"
    prior.write_text(json.dumps({d: 1 / 11 for d in res.domains}))
    regmix.main(["--stage", "simulate", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no_data"),
                 "--prior", str(prior), "--samples", "20000", "--top-k", "20", "--bootstrap", "2"])
    mix = json.load(open(tmp_path / "out" / "mixture.json"))
    y = [float(r["loss.valid_avg"]) for r in res.rows]
    best = mix["baselines"]["best proxy run"]
    assert mix["maximize"] and best["measured_loss"] == max(y) and best["run"] == res.runs[int(np.argmax(y))]
    # the chosen mixture is the one predicted highest, not lowest
    assert mix["predicted_loss"] > mix["baselines"]["uniform"]["predicted_loss"]
    assert mix["predicted_loss"] > np.median(y)


@pytest.mark.parametrize("edit,message", [
    (lambda w: w * 100, "sum to 100.0000 .percentages\\? divide the weights by 100."),
    (lambda w: np.where(np.arange(len(w)) == 3, np.nan, w), "run 0 has no weight for 'cluster4'"),
    (lambda w: w * 1.1, "sum to 1.1000, not 1 .within 0.02."),
])
def test_weights_that_do_not_sum_to_one(tmp_path, edit, message):
    res = regression.Results(CLIMB)
    lines = open(CLIMB).read().splitlines()
    cols = lines[0].split(",")
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        v = line.split(",")
        w = edit(res.X[i]) if i == 0 else res.X[i]
        for j, d in enumerate(res.domains):
            v[cols.index(f"train_the_{d}")] = "" if np.isnan(w[j]) else repr(float(w[j]))
        out.append(",".join(v))
    path = tmp_path / "t.csv"
    path.write_text("\n".join(out) + "\n")
    with pytest.raises(regression.DataError, match=message):
        regression.Results(str(path))


def test_rounded_weights_are_renormalised():
    res = regression.Results(os.path.join(DATA, "paper_train_1m.csv"))  # released rows sum to 0.996 .. 1.004
    assert np.allclose(res.X.sum(1), 1)


def test_leaf_size_counts_the_domains():
    assert regressors.leaf_size(512, None, 17) == 20  # the paper's sweep: the paper's setting
    assert regressors.leaf_size(127, None, 24) == 5   # Olmix's: 5 runs per domain
    assert regressors.leaf_size(100, None, 5) == 5 and regressors.leaf_size(127, 9, 24) == 9


def test_token_budget_without_data_and_long_domain_names(tmp_path, capsys):
    run(tmp_path, "--stage", "fit", "--results", RATIOS, "--metrics", METRICS, "--target", "all", "--regressor", "linear")
    res = regression.Results(RATIOS, METRICS)
    prior, tokens = tmp_path / "prior.json", tmp_path / "tokens.json"
    prior.write_text(json.dumps({d: 1.0 for d in res.domains}))
    tokens.write_text(json.dumps({d: 1e9 * (i + 1) for i, d in enumerate(res.domains)}))
    capsys.readouterr()
    regmix.main(["--stage", "simulate", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no_data"),
                 "--prior", str(prior), "--tokens", str(tokens), "--target-tokens", str(int(2e11)), "--no-bound",
                 "--extrapolate", "--samples", "20000", "--top-k", "10", "--bootstrap", "0"])
    mix = json.load(open(tmp_path / "out" / "mixture.json"))
    cap = mix["constraints"]["token budget (4 epochs of 200,000,000,000 tokens)"]
    assert cap["adult_content"] == pytest.approx(4 * 1e9 / 2e11)
    assert all(w <= cap[d] + 1e-9 for d, w in mix["weights"].items())
    rows = [line for line in capsys.readouterr().out.splitlines() if line.split(" ")[0] in res.domains]
    assert len(rows) == 24 and len({len(r) for r in rows}) == 1  # whole names, aligned columns
    assert any(r.startswith("science_math_and_technology ") for r in rows)
    with pytest.raises(SystemExit, match="--tokens .*: no token count for 'adult_content'"):
        tokens.write_text(json.dumps({"x": 1}))
        regmix.main(["--stage", "simulate", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no_data"),
                     "--prior", str(prior), "--tokens", str(tokens), "--target-tokens", "1000"])


def test_candidates_concentrate_only_where_the_caps_reject_most():
    rng = np.random.default_rng(0)
    res = regression.Results(os.path.join(DATA, "paper_train_1m.csv"))
    p = json.load(open(os.path.join(DATA, "paper_prior.json")))
    p = np.array([p[d] for d in res.domains])
    p /= p.sum()
    cap = np.minimum(mixtures.availability(p), res.X.max(0))
    c, share = constraints.concentration(p, cap, rng)
    assert c == 1 and share > 0.5  # the paper's 17 domains: the notebook's Dirichlet(prior), unchanged
    flat, tight = np.full(64, 1 / 64), np.full(64, 0.1)  # 64 domains, none above 0.1
    c, share = constraints.concentration(flat, tight, rng)
    assert share < 0.05 and c > 1
    draws = mixtures.dirichlet(c * flat, rng, 20_000)
    assert (draws <= tight).all(1).mean() >= 0.5 and (mixtures.dirichlet(c / 2 * flat, rng, 20_000) <= tight).all(1).mean() < 0.5
    # a prior outside the caps: concentrating on it helps only so far
    c, _ = constraints.concentration(np.array([0.5, 0.25, 0.25]), np.array([0.4, 1.0, 1.0]), rng)
    assert c < 1024


def test_prior_and_token_counts_from_an_olmix_fit_config(tmp_path):
    from data import DataError, read_mixture
    sizes, counts = read_mixture(OLMIX_CONFIG), read_mixture(OLMIX_CONFIG, olmix_key="token_counts")
    res = regression.Results(RATIOS, METRICS)
    assert sorted(sizes) == sorted(counts) == sorted(res.domains)
    assert counts["adult_content"] == 67_760_078_203  # YAML's digit groups read as one integer
    run(tmp_path, "--stage", "fit", "--results", RATIOS, "--metrics", METRICS, "--target", "all", "--regressor", "linear")
    argv = ["--stage", "simulate", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no_data"),
            "--target-tokens", str(int(5e12)), "--samples", "20000", "--top-k", "10", "--bootstrap", "0"]
    regmix.main(argv + ["--prior", OLMIX_CONFIG, "--tokens", OLMIX_CONFIG])
    mix = json.load(open(tmp_path / "out" / "mixture.json"))
    assert mix["baselines"]["natural (prior)"]["weights"]["health"] == pytest.approx(sizes["health"] / sum(sizes.values()))
    cap = mix["constraints"]["token budget (4 epochs of 5,000,000,000,000 tokens)"]
    assert cap["fashion_and_beauty"] == pytest.approx(4 * counts["fashion_and_beauty"] / 5e12)
    bad = tmp_path / "bad.yaml"
    for text, message in (("swarm: {}\n", "priors: relative_sizes"), ("priors: [\n", "not valid YAML")):
        bad.write_text(text)
        with pytest.raises(DataError, match=message):
            read_mixture(str(bad))
        with pytest.raises(SystemExit, match=f"{bad}"):
            regmix.main(argv + ["--prior", str(bad)])


def synthetic_metrics(tmp_path, n=60, maximize=False):
    """Runs over 5 domains whose 4 metrics each follow their own mixing law, each driven by another
    domain: their mean is no single law, and one law per metric fits it exactly."""
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(5), n)
    T = -3 * np.eye(5)[:4]  # metric j falls with domain j
    L = 0.5 + np.exp(0.2 + X @ T.T)
    if maximize:
        L = 2 - L  # an accuracy-like metric: higher is better
    path = tmp_path / "runs.csv"
    with open(path, "w") as f:
        f.write(",".join(["run"] + [f"weight.d{i}" for i in range(5)] + [f"loss.m{j}" for j in range(4)]) + "\n")
        for r in range(n):
            f.write(",".join([str(r)] + [f"{x:.6f}" for x in X[r]] + [f"{v:.6f}" for v in L[r]]) + "\n")
    return str(path), X, L


@pytest.mark.parametrize("maximize", [False, True])
def test_per_metric_mixing_law_is_judged_beside_the_pooled_fit(tmp_path, maximize):
    path, X, L = synthetic_metrics(tmp_path, maximize=maximize)
    fit = run(tmp_path, "--stage", "fit", "--results", path, "--target", "all", *(["--maximize"] if maximize else []))
    assert set(fit["regressors"]) == set(regressors.NAMES) | set(regressors.PER_METRIC)
    # the ensemble averages the per-metric regressors too (less any with a CV R^2 below 0)
    good = [n for n in regressors.ensemble_names(several=True) if fit["regressors"][n]["r2"] >= 0]
    assert fit["ensemble_members"] == good and set(regressors.ENSEMBLE_PER_METRIC) <= set(good)
    per, pooled = fit["regressors"]["per_metric_mixing_law"], fit["regressors"]["mixing_law"]
    # Spearman of the target as given: positive for a good fit, with --maximize too
    assert per["spearman"] > 0.99 and per["r2"] > 0.99 and per["spearman"] > pooled["spearman"]
    assert fit["chosen"] in fit["regressors"]
    # saved and loaded, it predicts what it was fitted to (the fitted orientation: ceiling - target)
    model = regression.load_regressor(str(tmp_path / "out"), "per_metric_mixing_law")
    target = L.mean(1)
    fitted = regression.orient(target, fit["ceiling"]) if maximize else target
    assert np.abs(model.predict(X) - fitted).max() < 0.02
    regmix.main(["--stage", "simulate", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no_data"),
                 "--prior", str(prior_file(tmp_path)), "--regressor", "per_metric_mixing_law",
                 "--samples", "20000", "--top-k", "20", "--bootstrap", "2"])
    mix = json.load(open(tmp_path / "out" / "mixture.json"))
    assert mix["regressor"] == "per_metric_mixing_law" and mix["confidence"]["bootstrap"] == 2
    # the best mixture leans on the domains that lower the metrics (d0-d3), not on d4
    assert mix["weights"]["d4"] < 0.2


def prior_file(tmp_path):
    p = tmp_path / "prior.json"
    p.write_text(json.dumps({f"d{i}": 0.2 for i in range(5)}))
    return p


def test_per_metric_needs_several_metrics_and_a_runaway_law_stays_bounded(tmp_path):
    path, X, L = synthetic_metrics(tmp_path)
    for name in regressors.PER_METRIC:
        with pytest.raises(SystemExit, match=f"--regressor {name} fits the target's metrics apart"):
            run(tmp_path, "--stage", "fit", "--results", path, "--target", "m0", "--regressor", name)
    model = regressors.PerMetricMixingLaw().fit(X, L.sum(1), L)
    far = np.eye(5)  # all of one domain: beyond every run
    steep = regressors.PerMetricMixingLaw(model.params.copy(), model.offset, model.top)
    steep.params[:, 2:] *= -40  # laws gone steep: exp(k + t.w) would reach e^100 on one domain alone
    bound = np.exp(steep.params[:, 0]).sum() + np.exp(model.top).sum() + model.offset
    assert np.isfinite(steep.predict(far)).all() and (steep.predict(far) <= bound * (1 + 1e-12)).all()
    assert (steep.predict(far) > 1e3 * L.sum(1).max()).sum() == 0  # no runaway beyond e x the runs' worst


def test_component_forests_sum_to_the_target_and_score_like_lightgbm():
    # three metrics that mostly move together (domain 0 lowers them all), each with its own small part
    X = np.random.default_rng(0).dirichlet(np.ones(5), 200)
    Y = np.column_stack([c * np.exp(-3 * X[:, 0]) + 0.2 * X[:, j + 1] for j, c in enumerate((1, 2, 3))])
    y = Y.sum(1) + 3.0  # the target can differ from the columns' sum by a constant (--maximize's orientation)
    model = regressors.fit("component_lightgbm", X, y, 5, to_score=True, Y=Y)
    assert len(model.parts) == 2 and all(p.forest is not None for p in model.parts)  # tables built for scoring
    # the two forests together fit the target as given (a wrong sign or scale of a part would not)
    assert 1 - np.mean((model.predict(X) - y) ** 2) / np.var(y) > 0.95
    # a million-row search scores with the forest kernel; it equals LightGBM's own predict
    many = np.random.default_rng(1).dirichlet(np.ones(5), 6000)
    own = model.offset + sum(a * p.booster.predict(many) for a, p in zip(model.scale, model.parts))
    assert np.allclose(model.predict(many), own, rtol=0, atol=1e-9)
    again = regressors.from_state(json.loads(json.dumps(regressors.state(model))))
    assert np.array_equal(again.predict(many), model.predict(many))


def test_simulate_refits_the_ensemble_that_fit_chose(tmp_path, monkeypatch):
    path, X, L = synthetic_metrics(tmp_path)
    out = tmp_path / "out"
    run(tmp_path, "--stage", "fit", "--results", path, "--target", "all", "--regressor", "ensemble")
    fit = json.load(open(out / "fit.json"))
    fit["ensemble_members"] = ["gp", "component_lightgbm"]  # as if the others had a CV R^2 below 0
    (out / "fit.json").write_text(json.dumps(fit))
    refits, real = [], regressors.fit
    monkeypatch.setattr(regressors, "fit", lambda *a, **k: refits.append(real(*a, **k)) or refits[-1])
    regmix.main(["--stage", "simulate", "--out", str(out), "--data", str(tmp_path / "no_data"), "--prior",
                 str(prior_file(tmp_path)), "--samples", "20000", "--top-k", "20", "--bootstrap", "2"])
    assert [[m.name for m in r.members] for r in refits] == [["gp", "component_lightgbm"]] * 2
