"""The newcomer's path at a micro scale: --stage all, then --stage compare, every artefact checked."""
import csv
import json
import os
import shlex

import numpy as np
import pytest

import regmix

SMALL = ["--model", "tiny", "--steps", "4", "--batch-size", "4", "--micro-batch-size", "4", "--block-size", "16",
         "--eval-seqs", "4", "--warmup", "1"]


def test_whole_loop_and_compare(corpus_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    regmix.main(["--stage", "all", "--data", corpus_dir, "--out", out, "--n-mixtures", "12", "--samples", "20000",
                 "--top-k", "10", *SMALL])
    printed = capsys.readouterr().out
    assert "=== RegMix on" in printed and "held-out Spearman rho" in printed and "all stages took" in printed

    mixtures = list(csv.DictReader(open(os.path.join(out, "mixtures.csv"))))
    assert len(mixtures) == 12 and list(mixtures[0]) == ["run", "round", "weight.alpha", "weight.beta", "weight.gamma"]
    results = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    assert len(results) == 12 and len(os.listdir(os.path.join(out, "runs"))) == 12
    assert list(results[0]) == ["run", "weight.alpha", "weight.beta", "weight.gamma", "loss.alpha", "loss.beta",
                                "loss.gamma", "loss.target", "seed", "tokens", "seconds", "failed"]
    for r in results:
        assert np.isfinite([float(r[k]) for k in r if k.startswith("loss.")]).all()

    fit = json.load(open(os.path.join(out, "fit.json")))
    assert fit["target"] == "target"  # the single eval-only domain
    assert fit["n_train"] == fit["n_test"] == 12
    # the ensemble exists where a member predicts better than the mean (CV R^2 >= 0)
    assert set(fit["regressors"]) - {"ensemble"} == {"lightgbm", "linear", "mixing_law", "quadratic", "gp"}
    assert ("ensemble" in fit["regressors"]) == bool(fit.get("ensemble_members"))
    for model in fit["regressors"]:
        assert set(fit["regressors"][model]) == {"spearman", "pearson", "mse", "r2"}
        assert all(np.isfinite(v) for v in fit["regressors"][model].values())
        assert os.path.exists(os.path.join(out, "regressors", f"{model}.json"))
    assert fit["chosen"] == max(fit["cv_spearman"], key=fit["cv_spearman"].get)  # the highest CV rho
    assert json.load(open(os.path.join(out, "regressors", "lightgbm.json")))["model"].startswith("tree")
    assert set(json.load(open(os.path.join(out, "regressors", "linear.json")))) == {"name", "coef", "intercept", "fitted_for"}

    mix = json.load(open(os.path.join(out, "mixture.json")))
    assert set(mix) >= {"weights", "predicted_loss", "n_samples", "top_k", "target", "baselines"}
    assert list(mix["weights"]) == ["alpha", "beta", "gamma"] and sum(mix["weights"].values()) == pytest.approx(1)
    assert mix["n_samples"] <= 20000 and mix["top_k"] == 10 and mix["target"] == "target"
    assert mix["regressor"] == fit["chosen"] and mix["confidence"]["bootstrap"] == 10
    assert {"natural (prior)", "uniform"} <= set(mix["baselines"])
    best = mix["baselines"]["best proxy run"]
    r = next(r for r in results if r["run"] == best["run"])
    assert best["measured_loss"] == pytest.approx(min(float(r["loss.target"]) for r in results))
    assert best["measured_loss"] == pytest.approx(float(r["loss.target"]))
    for png in ("fit.png", "mixture.png"):
        assert open(os.path.join(out, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    # the printed next step runs as printed (issue 34: it left out --data), at this test's small sizes
    nxt = next(line for line in printed.splitlines() if line.startswith("next: python regmix.py"))
    argv = shlex.split(nxt.split("  (")[0])[3:]
    assert argv[:2] == ["--stage", "compare"] and argv[argv.index("--data") + 1] == corpus_dir
    capsys.readouterr()
    regmix.main(argv + SMALL[2:])
    cmp = json.load(open(os.path.join(out, "compare.json")))
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    for name in cmp["runs"]:  # a mixture trained once, under its first name: the others say so
        twice = not os.path.exists(os.path.join(out, f"compare_{name}"))
        assert ("(the same mixture as" in lines[name]) == twice
    # the chosen mixture and its rivals; the target is eval-only here, so there is no "target alone"
    assert cmp["target"] == "target" and set(cmp["runs"]) == {"regmix", "natural", "uniform", "unimax", "best_run"}
    best = next(r for r in results if r["run"] == mix["baselines"]["best proxy run"]["run"])
    if os.path.exists(os.path.join(out, "compare_best_run")):
        trained = json.load(open(os.path.join(out, "compare_best_run", "eval.json")))["weights"]
    else:  # the answer was the best run itself: trained once, as regmix
        trained = mix["weights"]
        assert cmp["runs"]["best_run"] == cmp["runs"]["regmix"]
    assert all(trained[d] == pytest.approx(float(best[f"weight.{d}"])) for d in trained)
    assert all(np.isfinite(r["target_loss"]) for r in cmp["runs"].values())
    ev = json.load(open(os.path.join(out, "compare_regmix", "eval.json")))
    assert ev["weights"] == mix["weights"] and ev["tokens"] == 4 * 4 * 16
