"""regmix.py, the training half: mixtures, the proxy sweep (resumable, deterministic, torchrun),
target training with checkpoints, and clear errors."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mixtures
import regmix
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--model", "tiny", "--steps", "6", "--batch-size", "4", "--micro-batch-size", "2", "--block-size", "16",
         "--eval-seqs", "4", "--warmup", "2"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # same thread count -> same floats


def cli(*args, check=True, **kw):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "regmix.py"), *args], capture_output=True, text=True,
                       env=ENV, cwd=ROOT, **kw)
    if check and r.returncode != 0:
        raise AssertionError(r.stderr[-3000:])
    return r


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mixture_sampler_respects_bound_and_minimum():
    prior = np.array([0.6, 0.3, 0.09, 0.01])
    w = mixtures.sample_mixtures(prior, 64, seed=1)
    assert w.shape == (64, 4)
    assert np.allclose(w.sum(1), 1)
    bound = np.minimum(15 * prior, 1)
    # the bound rejects candidates before weights are rounded to the 2e-4 grid
    assert (w <= bound + 2e-4).all()
    assert w[:, 3].max() > 0  # the small domain is sometimes used ...
    assert ((w == 0) | (w >= 2e-4 * 0.99)).all()  # ... and no weight is below the minimum
    assert len(np.unique(w, axis=0)) == 64
    assert np.array_equal(w, mixtures.sample_mixtures(prior, 64, seed=1))
    assert not np.array_equal(w, mixtures.sample_mixtures(prior, 64, seed=2))


def test_learning_rate_schedules():
    h = train.Hparams(model="tiny", steps=100, batch_size=1, block_size=1, micro_batch_size=1, warmup=10,
                       lr=1.0, min_lr=0.1, eval_seqs=1, weight_decay=0, grad_clip=1, seed=0)
    assert train.get_lr(0, h) == pytest.approx(0.1) and train.get_lr(9, h) == pytest.approx(1.0)
    assert train.get_lr(10, h) == pytest.approx(1.0) and train.get_lr(100, h) == pytest.approx(0.1)
    h.min_lr = 1.0  # the proxies' constant schedule
    assert all(train.get_lr(s, h) == 1.0 for s in range(10, 100))


def test_sweep_writes_rows_and_skips_done_runs(corpus_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    regmix.main(["--stage", "proxy", "--data", corpus_dir, "--out", out, "--n-mixtures", "2", *SMALL])
    r = rows(os.path.join(out, "results.csv"))
    assert [x["run"] for x in r] == ["0", "1"]
    assert set(x for x in r[0] if x.startswith("loss.")) == {"loss.alpha", "loss.beta", "loss.gamma", "loss.target"}
    assert all(np.isfinite(float(x["loss.target"])) and not x["failed"] for x in r)
    assert int(r[0]["tokens"]) == 6 * 4 * 16
    m = rows(os.path.join(out, "mixtures.csv"))
    assert [x["weight.alpha"] for x in m] == [x["weight.alpha"] for x in r]
    before = open(os.path.join(out, "results.csv")).read()
    capsys.readouterr()
    regmix.main(["--stage", "proxy", "--data", corpus_dir, "--out", out, "--n-mixtures", "2", *SMALL])
    assert open(os.path.join(out, "results.csv")).read() == before  # nothing retrained
    printed = capsys.readouterr().out
    assert "2 done, 0 to run here" in printed and "nothing to train" in printed and "0 process" not in printed


def test_killed_sweep_resumes_with_identical_results(corpus_dir, tmp_path):
    args = ["--stage", "proxy", "--data", corpus_dir, "--n-mixtures", "4", *SMALL, "--steps", "20"]
    ref = str(tmp_path / "ref")
    cli(*args, "--out", ref)
    out = str(tmp_path / "killed")
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "regmix.py"), *args, "--out", out], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(out, "runs", "run_00001.json")) and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)  # mid-sweep: run 2 is training
    p.wait()
    assert len(rows(os.path.join(out, "results.csv"))) < 4
    cli(*args, "--out", out)
    got, want = rows(os.path.join(out, "results.csv")), rows(os.path.join(ref, "results.csv"))
    assert [r["run"] for r in got] == ["0", "1", "2", "3"]
    for a, b in zip(got, want):
        for k in a:
            if k.startswith(("loss.", "weight.")):
                assert abs(float(a[k]) - float(b[k])) <= 1e-6, (k, a[k], b[k])


def test_torchrun_two_ranks_share_one_table(corpus_dir, tmp_path):
    args = ["--stage", "proxy", "--data", corpus_dir, "--n-mixtures", "4", *SMALL, "--device", "cpu"]
    ref = str(tmp_path / "ref")
    cli(*args, "--out", ref)
    out = str(tmp_path / "ddp")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        os.path.join(ROOT, "regmix.py"), *args, "--out", out],
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[rank 1]" in r.stdout and "[rank 0]" in r.stdout
    got, want = rows(os.path.join(out, "results.csv")), rows(os.path.join(ref, "results.csv"))
    assert [x["run"] for x in got] == ["0", "1", "2", "3"]
    for a, b in zip(got, want):
        assert all(abs(float(a[k]) - float(b[k])) <= 1e-6 for k in a if k.startswith("loss."))


def test_train_resumes_after_kill_to_the_same_loss(corpus_dir, tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"weights": {"alpha": 0.5, "beta": 0.3, "gamma": 0.2}}))
    args = ["--stage", "train", "--data", corpus_dir, "--mixture", str(mix), *SMALL, "--steps", "40",
            "--ckpt-every", "5", "--log-every", "1"]
    ref = str(tmp_path / "ref")
    cli(*args, "--out", ref)
    out = str(tmp_path / "killed")
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "regmix.py"), *args, "--out", out], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = os.path.join(out, "target", "ckpt.pt")
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    import torch
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 5 <= step < 40
    assert cli(*args, "--out", out, check=False).returncode != 0  # refuses to overwrite without --resume
    r = cli(*args, "--out", out, "--resume")
    assert f"resumed from {ckpt} at step {step}" in r.stdout
    a = json.load(open(os.path.join(out, "target", "eval.json")))["losses"]
    b = json.load(open(os.path.join(ref, "target", "eval.json")))["losses"]
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-6 for k in a)
    log = rows(os.path.join(ref, "target", "log.csv"))
    assert len(log) == 40 and float(log[-1]["loss"]) < float(log[0]["loss"])


@pytest.mark.parametrize("args,message", [
    (["--stage", "proxy", "--data", "{tmp}/nothing"], "no meta.json"),
    (["--stage", "proxy", "--target", "nope"], "--target nope: no such domain"),
    (["--stage", "proxy", "--block-size", "100000"], "lower --block-size"),
    (["--stage", "train", "--mixture", "{tmp}/bad.json"], "bad.json: domain 'delta' is not among the domains"),
    (["--stage", "train", "--mixture", "{tmp}/missing.json"], "missing.json: cannot read it"),
    (["--stage", "proxy", "--out", "{tmp}/foreign"], "columns do not match the domains"),
    (["--stage", "proxy", "--batch-size", "5"], "must be a multiple of"),
])
def test_user_errors_are_one_line(corpus_dir, tmp_path, args, message):
    (tmp_path / "bad.json").write_text(json.dumps({"delta": 1.0}))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "results.csv").write_text("run,weight.x,loss.x\n0,1,2\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["--data", corpus_dir, "--out", str(tmp_path / "out"), *SMALL]
    r = cli(*base, *args, check=False)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


def test_missing_data_names_the_folder_in_the_command_to_run(tmp_path):
    r = cli("--stage", "proxy", "--data", str(tmp_path / "mine"), "--out", str(tmp_path / "out"), check=False)
    assert f"python prepare.py --input DIR --out {tmp_path / 'mine'})" in r.stderr and "{data_dir}" not in r.stderr


def test_unknown_model_is_rejected_by_argparse(corpus_dir):
    r = cli("--stage", "proxy", "--data", corpus_dir, "--model", "7b", check=False)
    assert r.returncode == 2 and "invalid choice: '7b'" in r.stderr and "Traceback" not in r.stderr


def test_diverging_proxy_is_recorded_as_failed_and_the_sweep_goes_on(corpus_dir, tmp_path):
    out = str(tmp_path / "out")
    regmix.main(["--stage", "proxy", "--data", corpus_dir, "--out", out, "--n-mixtures", "2", *SMALL, "--lr", "1e30"])
    r = rows(os.path.join(out, "results.csv"))
    assert [x["run"] for x in r] == ["0", "1"]
    assert all(x["failed"] and np.isnan(float(x["loss.target"])) for x in r)


def test_existing_mixtures_are_reused_and_other_settings_refused(corpus_dir, tmp_path):
    out = str(tmp_path / "out")
    regmix.main(["--stage", "mixtures", "--data", corpus_dir, "--out", out, "--n-mixtures", "5"])
    first = open(os.path.join(out, "mixtures.csv")).read()
    regmix.main(["--stage", "mixtures", "--data", corpus_dir, "--out", out, "--n-mixtures", "5"])
    assert open(os.path.join(out, "mixtures.csv")).read() == first
    with pytest.raises(SystemExit, match="made from other data or settings"):
        regmix.main(["--stage", "mixtures", "--data", corpus_dir, "--out", out, "--n-mixtures", "6"])
    assert open(os.path.join(out, "mixtures.csv")).read() == first


def test_shards_in_any_order_or_at_once_equal_one_process(corpus_dir, tmp_path):
    args = ["--stage", "proxy", "--data", corpus_dir, "--n-mixtures", "4", *SMALL]
    ref = str(tmp_path / "ref")
    regmix.main([*args, "--out", ref, "--workers", "1"])  # in this process, torch's default threads
    want = rows(os.path.join(ref, "results.csv"))
    seq = str(tmp_path / "seq")  # one after the other, the second shard first
    cli(*args, "--out", seq, "--shard", "1/2")
    assert [r["run"] for r in rows(os.path.join(seq, "results.csv"))] == ["1", "3"]
    cli(*args, "--out", seq, "--shard", "0/2")
    par = str(tmp_path / "par")  # both at once, as a job array's tasks, sharing --out
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "regmix.py"), *args, "--out", par, "--shard", s],
                              env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for s in ("0/2", "1/2")]
    assert all(p.wait() == 0 for p in procs)
    r = cli("--stage", "collect", "--data", corpus_dir, "--out", par)
    assert "4 proxy results" in r.stdout
    for out in (seq, par):
        got = rows(os.path.join(out, "results.csv"))
        assert [x["run"] for x in got] == ["0", "1", "2", "3"]
        for a, b in zip(got, want):
            # one unit of the table's 6th decimal at most ("+ 1e-9": 8.393964 - 8.393963 is 1.00000000003e-06
            # in binary floating point; one thread or two sum in another order, and round to neighbouring digits)
            assert all(abs(float(a[k]) - float(b[k])) <= 1e-6 + 1e-9 for k in a if k.startswith(("loss.", "weight."))), (a, b)


def test_killed_shard_loses_only_the_run_in_flight(corpus_dir, tmp_path):
    out = str(tmp_path / "out")
    args = ["--stage", "proxy", "--data", corpus_dir, "--n-mixtures", "6", *SMALL, "--steps", "30", "--out", out,
            "--shard", "0/2", "--workers", "1"]
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "regmix.py"), *args], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(out, "runs", "run_00000.json")
    deadline = time.time() + 120
    while not os.path.exists(first) and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)  # run 2 is in flight
    p.wait()
    kept = os.stat(first).st_mtime_ns
    cli(*args)
    assert os.stat(first).st_mtime_ns == kept  # the finished run was not trained again
    assert sorted(os.listdir(os.path.join(out, "runs"))) == ["run_00000.json", "run_00002.json", "run_00004.json"]
    assert [r["run"] for r in rows(os.path.join(out, "results.csv"))] == ["0", "2", "4"]


def test_bad_shard_is_one_line(corpus_dir, tmp_path):
    r = cli("--stage", "proxy", "--data", corpus_dir, "--out", str(tmp_path), *SMALL, "--shard", "2/2", check=False)
    assert r.returncode != 0 and "--shard 2/2: expected I/N with 0 <= I < N" in r.stderr and "Traceback" not in r.stderr


def wandb_records(path):
    """The records of an offline run file, read as wandb's own datastore (wandb sync) reads them:
    a 7-byte header (':W&B', magic, version), then LevelDB-log blocks of 32 KiB, each record a
    7-byte header (crc32c, length, type: 1 whole, 2 first, 3 middle, 4 last) and a protobuf part."""
    from wandb.proto import wandb_internal_pb2
    data = open(path, "rb").read()
    records, pos, buf = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # too little room for a header: the writer padded to the next block
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            records.append(record)
            buf = b""
    return records


def test_wandb_logs_steps_and_final_losses_offline(corpus_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")  # requirements-dev.txt
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1, "beta": 1}))
    regmix.main(["--stage", "train", "--data", corpus_dir, "--out", str(tmp_path / "out"), "--mixture", str(mix),
                 *SMALL, "--log-every", "1", "--wandb", "regmix-test"])
    import glob
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    # wandb's service writes the file in the background, after finish() returns: wait (bounded) for
    # what finish promises, the run's exit record, rather than for how fast it flushes
    path, deadline, records = glob.glob(os.path.join(runs[0], "run-*.wandb"))[0], time.time() + 120, []
    while not any(r.HasField("exit") for r in records) and time.time() < deadline:
        time.sleep(0.2)
        records = wandb_records(path)
    assert any(r.HasField("exit") for r in records), [r.WhichOneof("record_type") for r in records]

    def items(kind):
        return [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in getattr(r, kind).item}
                for r in records if r.HasField(kind)]
    steps = [h for h in items("history") if "loss" in h]
    assert [h["_step"] for h in steps] == [1, 2, 3, 4, 5, 6]  # every log step (--log-every 1)
    assert all({"loss", "lr", "tokens_per_s"} <= set(h) and np.isfinite(h["loss"]) for h in steps)
    log = np.genfromtxt(tmp_path / "out" / "target" / "log.csv", delimiter=",", names=True)
    assert np.allclose([h["loss"] for h in steps], log["loss"], atol=1e-6)  # the same numbers as log.csv
    summary = {}
    for r in records:
        if r.HasField("summary"):
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
    ev = json.load(open(tmp_path / "out" / "target" / "eval.json"))
    for d, v in ev["losses"].items():  # the final losses, as eval.json has them
        assert summary[f"val/{d}"] == pytest.approx(v)


def test_evaluation_steps_need_not_be_log_steps(corpus_dir, tmp_path, capsys):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1, "beta": 1}))
    regmix.main(["--stage", "train", "--data", corpus_dir, "--out", str(tmp_path), "--mixture", str(mix), *SMALL,
                 "--log-every", "4", "--eval-every", "3"])
    out = capsys.readouterr().out
    assert "step 3: val alpha" in out and "step 4/6: loss" in out
    assert [r["step"] for r in rows(str(tmp_path / "target" / "log.csv"))] == ["3", "4", "6"]
