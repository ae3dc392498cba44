"""The GPU code paths, exercised on CPU (no GPU in CI): torch.compile with the chunked
cross-entropy, one compilation reused by every proxy, bf16 autocast, the paper's 1M shapes with
gradient accumulation, and DDP + compile + checkpoint/resume under torchrun (gloo). What truly
needs CUDA (pinned copies, NCCL, fused AdamW) is in bench/gpu_check.sh."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import corpora
import data
import prepare
import regmix
import train
import sweep
from data import open_domains, val_windows
from model import GPT, config_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def hparams(**kw):
    base = dict(model="tiny", steps=6, batch_size=4, block_size=16, micro_batch_size=2, warmup=2, lr=2e-3,
                min_lr=2e-3, eval_seqs=4, weight_decay=0.1, grad_clip=1.0, seed=42)
    return train.Hparams(**{**base, **kw})


def test_compiled_training_equals_eager_and_compiles_once_for_every_proxy(corpus_dir):
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    d = open_domains(corpus_dir)
    h = hparams()
    cpu = torch.device("cpu")
    raw, compiled = train.build_model(h, d, cpu, compile_model=True)
    # one micro-batch: compiled and eager loss and gradients (the chunked cross-entropy's autograd
    # function inside the compiled graph) agree
    x, y = data.to_device(val_windows(d.val["alpha"], h.micro_batch_size, h.block_size), cpu)  # as the loop feeds it
    losses, grads = [], []
    for m in (raw, compiled):
        raw.zero_grad()
        loss = m(x, y)
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.clone() for p in raw.parameters()])
    assert abs(losses[0] - losses[1]) < 1e-5
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 1
    # every proxy reuses that compilation (same shapes, re-initialised weights): no new graph
    mixtures = [{"alpha": 1.0}, {"beta": 0.5, "gamma": 0.5}]
    got = [train.train_run(h, d, w, cpu, (raw, compiled))["losses"] for w in mixtures]
    assert counters["stats"]["unique_graphs"] == graphs
    want = [train.train_run(h, d, w, cpu, (raw, raw))["losses"] for w in mixtures]  # eager
    for a, b in zip(got, want):
        assert all(abs(a[k] - b[k]) < 1e-4 for k in a), (a, b)


def test_bf16_autocast_tracks_fp32(corpus_dir):
    """bf16 keeps 8 significant bits (relative error ~0.4% per rounding): over 10 steps from the
    same weights the training loss stays within 2% of fp32's, and the final validation losses too."""
    d = open_domains(corpus_dir)
    cpu = torch.device("cpu")
    curves = {}
    for dtype in ("float32", "bfloat16"):
        h = hparams(steps=10, dtype=dtype)
        curve = []
        r = train.train_run(h, d, {"alpha": 1, "beta": 1}, cpu, train.build_model(h, d, cpu, False),
                             progress=lambda step, loss, lr, tps, mfu: curve.append(loss))
        curves[dtype] = (np.array(curve), r["losses"])
    (f32, v32), (b16, v16) = curves["float32"], curves["bfloat16"]
    assert np.all(np.abs(b16 - f32) / f32 < 0.02), (f32, b16)
    assert not np.array_equal(b16, f32)  # the bf16 path really ran
    assert all(abs(v16[k] - v32[k]) / v32[k] < 0.02 for k in v32)
    assert train.autocast(cpu, hparams(dtype="bfloat16")).fast_dtype == torch.bfloat16


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    """Enough tokens for the paper's 2048-token sequences in every domain."""
    from conftest import make_corpus
    src = make_corpus(str(tmp_path_factory.mktemp("long_src")), n_docs=300)
    out = str(tmp_path_factory.mktemp("long"))
    prepare.prepare(corpora.folder_docs(src, corpora.Skips()), out, prepare.get_tokenizer("gpt2", 4096),
                    eval_only={"target"}, val_fraction=0.2, progress=False)
    return out


def test_paper_1m_shapes_one_step_with_accumulation(long_corpus, tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1, "beta": 1, "gamma": 1}))
    regmix.main(["--stage", "train", "--model", "1m", "--data", long_corpus, "--out", str(tmp_path), "--mixture",
                 str(mix), "--steps", "1", "--batch-size", "4", "--micro-batch-size", "2", "--block-size", "2048",
                 "--warmup", "1", "--eval-seqs", "1", "--device", "cpu"])
    ev = json.load(open(tmp_path / "target" / "eval.json"))
    assert ev["tokens"] == 4 * 2048 and ev["hparams"]["block_size"] == 2048 and ev["hparams"]["micro_batch_size"] == 2
    assert all(np.isfinite(v) for v in ev["losses"].values())
    # the FLOPs/token formula behind MFU against the FLOPs PyTorch counts in a forward + backward.
    # The counter knows neither CPU flash attention nor the in-place addmm_ of the chunked loss:
    # attention runs on the math kernel (full T x T scores, the formula's convention) and addmm_
    # counts as addmm. What remains is the formula counting 6 FLOPs per RMSNorm weight (0.03%).
    model = GPT(config_for("1m", 4096))
    x = torch.randint(0, 4096, (2, 2048))
    addmm_ = {torch.ops.aten.addmm_: lambda inp, a, b, *args, out_shape=None, **kw: 2 * a[0] * a[1] * b[1]}
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, custom_mapping=addmm_) as fc:
        model(x, x).backward()
    counted = fc.get_total_flops() / x.numel()
    assert abs(counted / model.flops_per_token() - 1) < 1e-3, (counted, model.flops_per_token())


def test_ddp_compile_checkpoint_resume_under_torchrun(corpus_dir, tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1, "beta": 2, "gamma": 1}))
    args = ["--stage", "train", "--data", corpus_dir, "--mixture", str(mix), "--model", "tiny", "--steps", "100",
            "--batch-size", "4", "--micro-batch-size", "2", "--block-size", "16", "--eval-seqs", "4", "--warmup", "2",
            "--ckpt-every", "20", "--log-every", "50", "--compile", "--device", "cpu", "--peak-flops", "1e9"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                os.path.join(ROOT, "regmix.py")]
    ref = subprocess.run(torchrun + args + ["--out", str(tmp_path / "ref")], capture_output=True, text=True, env=ENV,
                         cwd=ROOT, timeout=400)
    assert ref.returncode == 0, ref.stderr[-3000:]
    # each rank draws its own batches: two data streams in the checkpoint, every rank's tokens counted
    done = torch.load(tmp_path / "ref" / "target" / "ckpt.pt", weights_only=True)
    assert done["step"] == 100 and len(done["data_rng"]) == 2 and done["data_rng"][0] != done["data_rng"][1]
    ev = json.load(open(tmp_path / "ref" / "target" / "eval.json"))
    assert ev["tokens"] == 100 * 4 * 16 and all(np.isfinite(v) for v in ev["losses"].values())
    out = str(tmp_path / "killed")
    ckpt = os.path.join(out, "target", "ckpt.pt")
    p = subprocess.Popen(torchrun + args + ["--out", out], env=ENV, cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.exists(ckpt) and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # torchrun starts each rank in a session of its own: kill the ranks, then the launcher, or the
    # old ranks would train on beside the resumed run
    ranks = subprocess.run(["ps", "-o", "pid=", "--ppid", str(p.pid)], capture_output=True, text=True).stdout.split()
    for pid in ranks:
        os.kill(int(pid), signal.SIGKILL)
    p.kill()
    p.wait()
    assert len(ranks) == 2
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 20 <= step < 100
    r = subprocess.run(torchrun + args + ["--out", out, "--resume"], capture_output=True, text=True, env=ENV, cwd=ROOT,
                       timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {ckpt} at step" in r.stdout
    a = json.load(open(os.path.join(out, "target", "eval.json")))["losses"]
    b = json.load(open(tmp_path / "ref" / "target" / "eval.json"))["losses"]
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 for k in a), (a, b)
    # MFU is one device's: the global tokens/s (both ranks' batches) shared by the 2 ranks
    log = np.genfromtxt(tmp_path / "ref" / "target" / "log.csv", delimiter=",", names=True)
    # the loss leaves the device only at log steps (every 50) and checkpoints (every 20)
    assert list(log["step"]) == [20, 40, 50, 60, 80, 100]
    check_mfu(log, world=2, peak=1e9, vocab=open_domains(corpus_dir).vocab_size)


def check_mfu(log, world, peak, vocab):
    per_token = GPT(config_for("tiny", vocab, 16)).flops_per_token()
    want = per_token * log["tokens_per_s"] / world / peak
    # log.csv rounds tokens/s to an integer and MFU to 4 decimals (a slow first interval, the
    # compile's, has few tokens/s: the rounding is then a percent)
    rounding = per_token * 0.5 / world / peak + 0.5e-4
    assert np.all(np.abs(log["mfu"] - want) <= rounding * 1.01) and np.all(want > 10 * rounding), (log["mfu"], want)


def test_mfu_of_one_process_counts_its_whole_batch(corpus_dir, tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps({"alpha": 1, "beta": 1}))
    regmix.main(["--stage", "train", "--data", corpus_dir, "--mixture", str(mix), "--out", str(tmp_path), "--model",
                 "tiny", "--steps", "6", "--batch-size", "4", "--micro-batch-size", "2", "--block-size", "16",
                 "--eval-seqs", "2", "--warmup", "2", "--log-every", "2", "--peak-flops", "1e9", "--device", "cpu"])
    log = np.genfromtxt(tmp_path / "target" / "log.csv", delimiter=",", names=True)
    assert list(log["step"]) == [2, 4, 6]
    check_mfu(log, world=1, peak=1e9, vocab=open_domains(corpus_dir).vocab_size)


def _loss_of_rank(rank, port, out):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    total = torch.tensor(float("nan") if rank == 1 else 2.0)  # only rank 1 diverged
    with open(os.path.join(out, f"rank{rank}"), "w") as f:
        f.write(repr(train.mean_over_ranks(total, True, 2)))
    dist.destroy_process_group()


def test_a_nan_on_one_rank_stops_every_rank():
    import socket
    import tempfile
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        torch.multiprocessing.spawn(_loss_of_rank, args=(port, out), nprocs=2)
        seen = [float(open(os.path.join(out, f"rank{r}")).read()) for r in (0, 1)]
    assert all(np.isnan(v) for v in seen)  # both see it, so both leave the loop at the same step


def test_cpu_layout_defaults_and_user_threads(monkeypatch):
    args = argparse.Namespace(workers=None)
    cpu = torch.device("cpu")
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert sweep.cpu_layout(args, cpu, ddp=False) == (cores, 1 if cores > 1 else torch.get_num_threads())
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores))  # the user's threads per process win
    assert sweep.cpu_layout(args, cpu, ddp=False) == (1, cores)
    assert sweep.cpu_layout(argparse.Namespace(workers=3), cpu, ddp=False) == (3, cores)
    assert sweep.cpu_layout(args, cpu, ddp=True)[0] == 1  # torchrun ranks are the processes
