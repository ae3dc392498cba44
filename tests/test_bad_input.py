"""Bad input as a new user gives it (issue 15): each gets one clear line naming the file, flag or
domain, or a correct result; nothing already written changes."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

import corpora
import prepare
import regmix
import regression
import mixtures
import constraints
from data import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
PAPER_TRAIN = os.path.join(DATA, "paper_train_1m.csv")
SMALL = ["--model", "tiny", "--steps", "4", "--batch-size", "4", "--micro-batch-size", "2", "--block-size", "16",
         "--eval-seqs", "2", "--warmup", "1", "--workers", "1"]


def error_of(main, argv):
    """The message a script exits with (its one line), or None if it did not fail."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return str(e.value.code)


def folder_corpus(root, domains, n=6):
    for name in domains:
        os.makedirs(os.path.join(root, name))
        for i in range(n):
            with open(os.path.join(root, name, f"{i}.txt"), "w", encoding="utf-8") as f:
                f.write(f"{name} document {i}: " + " ".join([name, "alpha", "beta", str(i)] * 40))
    return root


# -- prepare -------------------------------------------------------------------------------

def test_broken_tokenizer_config_beside_the_tokenizer(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    shutil.copy(os.path.join(DATA, "gptneox", "tokenizer.json"), tok / "tokenizer.json")
    (tok / "tokenizer_config.json").write_text('{"eos_token": ')
    src = folder_corpus(str(tmp_path / "in"), ["a", "b"])
    msg = error_of(prepare.main, ["--input", src, "--out", str(tmp_path / "out"), "--tokenizer", str(tok / "tokenizer.json")])
    assert "tokenizer_config.json: cannot read its eos_token" in msg and "--eot-token" in msg


def test_domains_named_in_other_scripts_keep_their_names(tmp_path, enc4096):
    src = folder_corpus(str(tmp_path / "in"), ["Ελληνικά", "日本語", "Latin"])
    meta = prepare.prepare(corpora.folder_docs(src, corpora.Skips()), str(tmp_path / "out"), enc4096, progress=False)
    assert sorted(meta["domains"]) == ["latin", "ελληνικά", "日本語"]
    assert all(os.path.exists(tmp_path / "out" / d / "train.bin") for d in meta["domains"])
    assert not os.path.exists(tmp_path / "out" / "train.bin")  # nothing in the folder's root


def test_a_name_without_letters_or_two_names_for_one_folder_are_refused(tmp_path, enc4096):
    for names, words in ((["Pile-CC", "pile_cc"], ["'Pile-CC' and 'pile_cc' would both become 'pile_cc'"]),
                         (["Pile-CC", "pile cc"], ["both become 'pile_cc'"]),
                         (["---", "a"], ["domain '---'", "no letter or digit"])):
        src = folder_corpus(str(tmp_path / f"in{len(os.listdir(tmp_path))}"), names)
        out = tmp_path / "out"
        with pytest.raises(DataError) as e:
            prepare.prepare(corpora.folder_docs(src, corpora.Skips()), str(out), enc4096, progress=False)
        assert all(w in str(e.value) for w in words), str(e.value)
        assert not out.exists() or not os.listdir(out)  # nothing written


def test_a_domain_key_that_matches_no_record_says_so(tmp_path):
    shard = tmp_path / "s.jsonl"
    shard.write_text("".join(json.dumps({"text": f"doc {i} " * 50, "source": "web"}) + "\n" for i in range(5)))
    msg = error_of(prepare.main, ["--shards", str(shard), "--domain-key", "meta.domain", "--out", str(tmp_path / "o")])
    assert "5 record(s) were skipped" in msg and "no meta.domain" in msg and f"{shard}:1" in msg


def test_preparing_another_corpus_into_a_folder_removes_the_old_domains(tmp_path, enc4096):
    out = str(tmp_path / "out")
    first = folder_corpus(str(tmp_path / "one"), ["old", "kept"])
    prepare.prepare(corpora.folder_docs(first, corpora.Skips()), out, enc4096, progress=False)
    os.makedirs(os.path.join(out, "notes"))  # not a domain of ours: left alone
    second = folder_corpus(str(tmp_path / "two"), ["kept", "new"])
    meta = prepare.prepare(corpora.folder_docs(second, corpora.Skips()), out, enc4096, progress=False)
    assert sorted(meta["domains"]) == ["kept", "new"]
    assert sorted(os.listdir(out)) == ["kept", "meta.json", "new", "notes"]


@pytest.mark.parametrize("where", ["file", "sys"])
def test_an_out_folder_that_cannot_be_made(tmp_path, corpus_dir, where):
    (tmp_path / "file").write_text("x")
    out = str(tmp_path / "file" / "sub") if where == "file" else "/sys/regmix_cannot_write_here"
    want = "a file is in the way" if where == "file" else "cannot create this folder"
    assert f"--out {out}: {want}" in error_of(prepare.main, ["--input", corpus_dir, "--out", out])
    for stage in (["--stage", "proxy", "--data", corpus_dir, *SMALL], ["--stage", "fit", "--results", PAPER_TRAIN]):
        assert f"--out {out}: {want}" in error_of(regmix.main, [*stage, "--out", out])


# -- data folders and checkpoints ------------------------------------------------------------

def test_a_corrupt_meta_json(tmp_path, corpus_dir):
    data = str(tmp_path / "data")
    shutil.copytree(corpus_dir, data)
    for text, want in (('{"tokenizer": ', "meta.json: cannot read it"), ('{"domains": {}}', "not a meta.json of prepare.py")):
        with open(os.path.join(data, "meta.json"), "w") as f:
            f.write(text)
        msg = error_of(regmix.main, ["--stage", "proxy", "--data", data, "--out", str(tmp_path / "o"), *SMALL])
        assert want in msg and "re-run prepare.py" in msg


class RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint can do with a full pickle load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_runs_code_is_refused_unrun(tmp_path, corpus_dir):
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "it_ran"
    torch.save({"config": {"n_layer": 1}, "model": {}, "payload": RunsCode(marker)}, evil)
    msg = error_of(regmix.main, ["--stage", "export", "--ckpt", str(evil), "--data", corpus_dir,
                                 "--out", str(tmp_path / "out"), *SMALL])
    assert "refused" in msg and str(evil) in msg
    assert not marker.exists()  # nothing ran
    # a plain checkpoint whose config lacks a key: one line, naming the key
    partial = tmp_path / "partial.pt"
    torch.save({"config": {"n_layer": 1, "n_head": 1, "n_embd": 8, "mlp_hidden": 8, "block_size": 8}, "model": {}},
               partial)
    msg = error_of(regmix.main, ["--stage", "export", "--ckpt", str(partial), "--data", corpus_dir,
                                 "--out", str(tmp_path / "out"), *SMALL])
    assert "lacks vocab_size" in msg


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated", "not a checkpoint"])
def test_a_broken_checkpoint_for_export_and_resume(tmp_path, corpus_dir, content):
    bad = tmp_path / "out" / "target" / "ckpt.pt"
    bad.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        bad.write_bytes(content)
        want = "not a readable checkpoint"
    else:
        torch.save({"step": 3}, bad)  # a torch file, but not ours
        want = "not a checkpoint of this project"
    before = bad.read_bytes()
    base = ["--data", corpus_dir, "--out", str(tmp_path / "out"), *SMALL]
    assert want in error_of(regmix.main, ["--stage", "export", "--ckpt", str(bad), *base])
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1}))
    assert want in error_of(regmix.main, ["--stage", "train", "--resume", "--mixture", str(mix), *base])
    assert bad.read_bytes() == before  # left as it was


# -- proxy sweeps -----------------------------------------------------------------------------

def test_slurm_task_id_without_a_task_count(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT", raising=False)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    base = ["--stage", "proxy", "--data", corpus_dir, "--out", str(tmp_path), *SMALL]
    assert "SLURM_ARRAY_TASK_COUNT is not" in error_of(regmix.main, base)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "8")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")  # an array numbered 1-8
    msg = error_of(regmix.main, base)
    assert "Slurm's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT 8/8" in msg and "from 0" in msg and "--shard" not in msg
    assert not os.path.exists(tmp_path / "runs" / "run_00000.json")


def test_a_mixtures_csv_with_a_byte_order_mark_is_read(corpus_dir, tmp_path):
    from data import open_domains
    path = tmp_path / "mixtures.csv"
    path.write_text("\ufeffrun,weight.alpha,weight.beta,weight.gamma\n0,0.5,0.5,0\n1,0,0,1\n", encoding="utf-8")
    rows = mixtures.check_mixtures(str(path), open_domains(corpus_dir))
    assert [r["run"] for r in rows] == ["0", "1"]


# -- fit and simulate -------------------------------------------------------------------------

def results_table(path, n=12, duplicate=False, bom=False, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.dirichlet(np.ones(3), n)
    lines = ["run,weight.a,weight.b,weight.c,loss.a"] + [f"{i},{x[0]},{x[1]},{x[2]},{3 - x[0] + 0.1 * x[1]}"
                                                          for i, x in enumerate(X)]
    if duplicate:
        lines.append(f"3,{X[3][0]},{X[3][1]},{X[3][2]},9.0")  # run 3 again, another loss
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_run_twice_in_the_results_is_refused(tmp_path):
    res = results_table(tmp_path / "r.csv", duplicate=True)
    msg = error_of(regmix.main, ["--stage", "fit", "--results", res, "--out", str(tmp_path / "o"), "--target", "a"])
    assert "run 3 appears twice (rows 4 and 13)" in msg
    assert not os.path.exists(tmp_path / "o" / "fit.json")


@pytest.fixture(scope="module")
def small_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    res = results_table(out / "r.csv", n=30, bom=True)  # a spreadsheet's byte-order mark, read as any other
    regmix.main(["--stage", "fit", "--results", res, "--out", str(out), "--data", str(out), "--target", "a",
                 "--regressor", "quadratic"])
    (out / "prior.json").write_text(json.dumps({"a": 0.3, "b": 0.3, "c": 0.4}))
    return out


@pytest.mark.parametrize("flags,message", [
    (["--target-tokens", "0"], "--target-tokens 0: the target run's tokens must be positive"),
    (["--target-tokens", "-100"], "--target-tokens -100: the target run's tokens must be positive"),
    (["--target-tokens", "1000", "--max-epochs", "0"], "--max-epochs 0: must be positive"),
    (["--target-tokens", "1000"], "--target-tokens needs each domain's training tokens: a --data folder, or --tokens FILE"),
    (["--prior", "{out}/bad_prior.json"], "--prior {out}/bad_prior.json: no share for 'c'"),
    (["--compare", "x={out}/bad_mix.json"], "--compare x={out}/bad_mix.json: domain 'z' is not among the domains"),
])
def test_simulate_flags_name_themselves(small_fit, flags, message):
    (small_fit / "bad_prior.json").write_text(json.dumps({"a": 0.5, "b": 0.5}))
    (small_fit / "bad_mix.json").write_text(json.dumps({"z": 1.0}))
    flags = [f.replace("{out}", str(small_fit)) for f in flags]
    base = ["--stage", "simulate", "--out", str(small_fit), "--data", str(small_fit / "none"), "--samples", "2000",
            "--bootstrap", "0"]
    prior = [] if "--prior" in flags else ["--prior", str(small_fit / "prior.json")]
    msg = error_of(regmix.main, [*base, *prior, *flags])
    assert message.replace("{out}", str(small_fit)) in msg and "raise --samples" not in msg


def test_a_token_budget_the_data_cannot_supply(small_fit):
    prior = np.array([0.3, 0.3, 0.4])
    X = np.array([[0.5, 0.3, 0.2]])
    with pytest.raises(DataError, match="lower --target-tokens or raise --max-epochs"):
        constraints.caps(prior, X, target_tokens=10_000, max_epochs=2, train_tokens=np.array([1000.0, 1000, 1000]))
    limits = constraints.caps(prior, X, target_tokens=3000, max_epochs=2, train_tokens=np.array([1000.0, 1000, 1000]))
    assert np.allclose(limits["token budget (2 epochs of 3,000 tokens)"], 2 / 3)


def test_a_member_worse_than_the_mean_leaves_the_ensemble():
    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    cv = {"lightgbm": y + 0.1 * rng.normal(size=40), "mixing_law": 1e4 * rng.normal(size=40),
          "quadratic": y + 0.2 * rng.normal(size=40), "gp": y + 0.3 * rng.normal(size=40)}
    assert regression.metrics(y, cv["mixing_law"])["r2"] < -1e6
    assert regression.ensemble_members(cv, y) == ["lightgbm", "quadratic", "gp"]
    cv["mixing_law"] = y
    assert regression.ensemble_members(cv, y) == ["lightgbm", "mixing_law", "quadratic", "gp"]


# -- issue 28: fit and simulate ---------------------------------------------------------------

def small_table(path, n=24, extra="", negative=False):
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), n)
    if negative:
        X[3] = [1.2, -0.2, 0.0]
    lines = ["run,weight.a,weight.b,weight.c,loss.x,loss.y" + (",step" if extra else "")]
    for i, x in enumerate(X):
        lines.append(f"{i},{x[0]:.6f},{x[1]:.6f},{x[2]:.6f},{3 + x[0]:.6f},{4 - x[1]:.6f}" + (",1000" if extra else ""))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_fit_inputs_that_are_not_what_they_should_be(tmp_path):
    out = ["--out", str(tmp_path / "o"), "--target", "x", "--regressor", "linear"]
    (tmp_path / "folder.csv").mkdir()
    assert "a folder, not a CSV table" in error_of(regmix.main, ["--stage", "fit", "--results", str(tmp_path / "folder.csv"), *out])
    table = small_table(tmp_path / "t.csv")
    with open(table, "ab") as f:
        f.write(b"99,0.3,0.3,0.4,3.1,4.0\xe9\n")  # one Windows-1252 byte
    assert "not UTF-8 text" in error_of(regmix.main, ["--stage", "fit", "--results", table, *out])
    neg = small_table(tmp_path / "neg.csv", negative=True)
    msg = error_of(regmix.main, ["--stage", "fit", "--results", neg, *out])
    assert "run 3 has a negative weight for 'b' (-0.2)" in msg
    good = small_table(tmp_path / "good.csv")
    (tmp_path / "o").mkdir(exist_ok=True)
    (tmp_path / "o" / "regressors").write_text("in the way")
    assert "a file where fit keeps its regressors" in error_of(regmix.main, ["--stage", "fit", "--results", good, *out])
    assert not (tmp_path / "o" / "fit.json").exists()


def test_truncated_and_stale_fit_files(tmp_path, capsys):
    table = small_table(tmp_path / "t.csv", extra="step")
    o = str(tmp_path / "o")
    regmix.main(["--stage", "fit", "--results", table, "--out", o, "--target", "all", "--regressor", "linear"])
    out = capsys.readouterr().out
    assert "target all: the mean of 2 metric(s): x, y" in out  # the step column is no metric
    sim = ["--stage", "simulate", "--out", o, "--prior", "uniform", "--samples", "5000", "--bootstrap", "0"]
    regmix.main(sim)  # the fit is current: simulate runs
    # a fit of another target and regressor leaves linear's file of the old target behind
    regmix.main(["--stage", "fit", "--results", table, "--out", o, "--target", "x", "--regressor", "quadratic"])
    assert "fitted for another target" in error_of(regmix.main, sim + ["--regressor", "linear"])
    for name in ("fit.json", os.path.join("regressors", "quadratic.json")):
        path = os.path.join(o, name)
        text = open(path).read()
        with open(path, "w") as f:
            f.write(text[:len(text) // 2])
        assert "truncated or not JSON" in error_of(regmix.main, sim)
        with open(path, "w") as f:
            f.write(text)


def test_targets_and_flags_that_were_ignored_without_a_word(tmp_path):
    table = small_table(tmp_path / "t.csv")
    o = ["--out", str(tmp_path / "o"), "--regressor", "linear", "--results", table]
    assert "named twice" in error_of(regmix.main, ["--stage", "fit", "--target", "x,x=0.5", *o])
    assert "--target '': empty" in error_of(regmix.main, ["--stage", "fit", "--target", "", *o])
    regmix.main(["--stage", "fit", "--target", "x", *o])
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"a": 10, "b": 10, "c": 10}))
    msg = error_of(regmix.main, ["--stage", "simulate", "--out", str(tmp_path / "o"), "--prior", "uniform",
                                 "--tokens", str(tokens), "--samples", "5000", "--bootstrap", "0"])
    assert "read only with --target-tokens" in msg


def test_a_metric_named_with_a_comma_can_be_targeted(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), 24)
    lines = ["run,weight.a,weight.b,weight.c,\"acc,none\""] + [
        f"{i},{x[0]:.6f},{x[1]:.6f},{x[2]:.6f},{0.5 + 0.3 * x[0]:.6f}" for i, x in enumerate(X)]
    (tmp_path / "t.csv").write_text("\n".join(lines).replace(",\"acc,none\"", ",\"loss.acc,none\"") + "\n")
    regmix.main(["--stage", "fit", "--results", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"),
                 "--target", "acc,none", "--regressor", "linear", "--maximize"])
    assert json.load(open(tmp_path / "o" / "fit.json"))["target_weights"] == {"acc,none": 1.0}


def test_next_without_data_beside_the_default_corpus(tmp_path, corpus_dir, monkeypatch, capsys):
    """data/default holds the demo's domains; the fit is of another sweep: --next works without it."""
    shutil.copytree(corpus_dir, tmp_path / "data" / "default")
    monkeypatch.chdir(tmp_path)
    with open(PAPER_TRAIN) as f:
        (tmp_path / "r.csv").write_text("".join(f.readlines()[:25]))
    regmix.main(["--stage", "fit", "--results", "r.csv", "--out", "o", "--regressor", "linear", "--target", "pile_cc"])
    regmix.main(["--stage", "mixtures", "--next", "2", "--out", "o", "--prior", os.path.join(DATA, "paper_prior.json")])
    assert "proposing without it" in capsys.readouterr().out
    assert len(open(tmp_path / "o" / "mixtures.csv").read().splitlines()) == 3


def test_a_run_twice_in_metrics_is_refused(tmp_path):
    ratios = os.path.join(DATA, "olmix_dclm_ratios_40.csv")
    lines = open(os.path.join(DATA, "olmix_dclm_metrics_40.csv")).read().splitlines()
    (tmp_path / "m.csv").write_text("\n".join(lines + [lines[1]]) + "\n")  # the first run's row again
    msg = error_of(regmix.main, ["--stage", "fit", "--results", ratios, "--metrics", str(tmp_path / "m.csv"),
                                 "--out", str(tmp_path / "o"), "--target", "all"])
    assert "appears twice" in msg and "m.csv" in msg
