"""Steady-state speed of the paper's models on one GPU, as the training loop runs them, beside the
device's own bf16 matmul rate measured in the same run.

    python bench/gpu_proxy.py [--data DIR] [--presets 1m,60m,1b] [--layouts 1,2,4] [--profile]

1. the device: an 8192^3 bf16 product (TFLOP/s), the ceiling every MFU below is compared with;
2. the loss head alone (head.py) on a 1m proxy's micro-batch of 16 x 2048 tokens: the fused kernel
   against the chunked reference (ms per forward + backward), and both against an fp64 reference;
3. each preset at the paper's shapes (512 x 2048 tokens a step, compiled, bf16), each head and
   micro-batch in --configs: tokens/s after the first (compiling) step, MFU against the data
   sheet and against the measured product;
4. --profile: the CUDA kernels of one 1m training step, by time;
5. a proxy sweep laid out as 1, 2 and 4 processes sharing the GPU (regmix.py --stage proxy
   --shard i/N): the tokens/s of all of them together after their first step.
Run by bench/gpu_check.sh. Prepares the embedded corpus at GPT-2's vocabulary if --data is absent.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import head  # noqa: E402
import train  # noqa: E402
from data import open_domains  # noqa: E402
from model import device_peak_flops  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data", default="/tmp/regmix_bench/data", help="a prepared data folder (made if missing)")
p.add_argument("--presets", default="1m,60m,1b", help="presets to time at the paper's shapes")
p.add_argument("--configs", default="1m:16:chunked,1m:16:fused,1m:32:fused,1b:16:chunked,60m:16:chunked", help="preset:micro-batch:head triples to time (of --presets)")
p.add_argument("--steps", default="1m:6,60m:3,1b:2", help="steps per preset, the first (compiling) not counted")
p.add_argument("--layouts", default="1,2,4", help="processes per GPU for the sweep layouts ('' to skip)")
p.add_argument("--layout-steps", type=int, default=10, help="steps of each proxy in the layouts (512 x 2048 tokens each)")
p.add_argument("--profile", action="store_true", help="print the kernels of one 1m step")
args = p.parse_args()
dev = torch.device("cuda")
assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
torch.set_float32_matmul_precision("high")


def timed(fn, reps):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


# 1. the device's bf16 matmul rate
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
for _ in range(3):
    a @ b
rate = 2 * 8192 ** 3 / timed(lambda: a @ b, 10)
del a, b
name = torch.cuda.get_device_name(dev)
sheet = device_peak_flops(dev)
print(f"{name}: torch {torch.__version__}, bf16 8192^3 product {rate / 1e12:.0f} TFLOP/s"
      + (f" ({rate / sheet:.0%} of the data sheet's {sheet / 1e12:.0f})" if sheet else ""), flush=True)

# 2. the head alone: parity with an fp64 reference, then speed
torch.manual_seed(0)
n, d, V = 16 * 2048, 256, 50304
h = (torch.randn(n, d, device=dev) * 0.5).requires_grad_()
w = (torch.randn(V, d, device=dev) * (2 / 5 / d) ** 0.5 * 8).requires_grad_()
t = torch.randint(0, V, (n,), device=dev)
k = 4096  # the fp64 reference on a slice (its logits alone are 1.6 GB)
h64, w64 = h[:k].detach().double().requires_grad_(), w.detach().double().requires_grad_()
ref = torch.nn.functional.cross_entropy(h64 @ w64.T, t[:k])
rh, rw = torch.autograd.grad(ref, (h64, w64))
heads = ["chunked"] + (["fused"] if head.triton is not None else [])
for kind in list(heads):
    hk, wk = h[:k].detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = head.cross_entropy(hk, wk, t[:k], fused=kind == "fused")
        gh, gw = torch.autograd.grad(loss, (hk, wk))
    except Exception as e:  # a kernel that fails here is left out of everything below
        print(f"head {kind} failed: {type(e).__name__}: {str(e)[:2000]}", flush=True)
        heads.remove(kind)
        continue
    rel = lambda x, r: float((x.double() - r).norm() / r.norm())  # noqa: E731
    print(f"head {kind:<8} vs fp64: loss {float(loss):.6f} vs {float(ref):.6f} (diff {float(loss) - float(ref):+.1e}), "
          f"grad_h rel. error {rel(gh, rh):.1e}, grad_W {rel(gw, rw):.1e}", flush=True)
del h64, w64, rh, rw
ms = {}
for kind in heads:
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = head.cross_entropy(h, w, t, fused=kind == "fused")
        loss.backward()
    step()  # autotuning, allocation
    ms[kind] = timed(step, 5) * 1e3
    flops = 6 * n * V * d
    print(f"head {kind:<8} 16 x 2048 tokens: {ms[kind]:.2f} ms forward + backward ({flops / ms[kind] / 1e9:.0f} TFLOP/s "
          "counting the three products)", flush=True)
if len(ms) == 2:
    print(f"head: fused {ms['chunked'] / ms['fused']:.2f}x the chunked reference", flush=True)
del h, w, t

# 3. the presets in the training loop, on the embedded corpus
if not os.path.exists(os.path.join(args.data, "meta.json")):
    subprocess.run([sys.executable, os.path.join(ROOT, "prepare.py"), "--vocab-size", "50257", "--out", args.data],
                   check=True, stdout=subprocess.DEVNULL)
domains = open_domains(args.data)
weights = {n: 1.0 for n in domains.trainable}
steps = dict(s.split(":") for s in args.steps.split(","))
presets = args.presets.split(",")
results = {}
for cfg in args.configs.split(","):
    preset, micro, kind = cfg.split(":")
    if preset not in presets or kind not in heads:
        continue
    hp = train.Hparams(model=preset, steps=int(steps.get(preset, 3)), batch_size=512, block_size=2048,
                       micro_batch_size=int(micro), warmup=1, lr=4e-4, min_lr=4e-4, eval_seqs=1, weight_decay=0.1,
                       grad_clip=1.0, seed=0, dtype="bfloat16")
    torch._dynamo.reset()  # each configuration compiles afresh (no recompile limit across presets)
    torch.cuda.empty_cache()
    try:
        models = train.build_model(hp, domains, dev, True, kind)
        r = train.train_run(hp, domains, weights, dev, models, train.RunOptions(log_every=hp.steps))
    except Exception as e:  # out of memory, or a kernel that fails on this device: the next configuration
        print(f"{preset:<4} micro {micro:>3} head {kind:<8} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
        continue
    tps = r["train_tokens_per_s"]
    mfu = models[0].flops_per_token() * tps
    results[cfg] = tps
    print(f"{preset:<4} micro {micro:>3} head {kind:<8} {tps:>12,.0f} tokens/s  MFU {mfu / sheet:.1%} of the data sheet, "
          f"{mfu / rate:.1%} of the measured product  (start-up and first step {r['startup_seconds']:.0f} s, "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB)", flush=True)
    del models
    torch.cuda.reset_peak_memory_stats()
best = {}
for cfg, tps in results.items():
    preset = cfg.split(":")[0]
    if tps > best.get(preset, (None, 0))[1]:
        best[preset] = (cfg, tps)
for preset, (cfg, tps) in best.items():
    print(f"fastest {preset}: {cfg} ({tps:,.0f} tokens/s)")
if "1m:16:chunked" in results and "1m" in best:
    print(f"1m: fastest {best['1m'][1] / results['1m:16:chunked']:.2f}x the chunked head at micro 16", flush=True)

# 4. where the time goes
if args.profile:
    from torch.profiler import ProfilerActivity, profile
    cfg = best.get("1m", ("1m:16:fused",))[0].split(":")
    hp = train.Hparams(model="1m", steps=1, batch_size=int(cfg[1]), block_size=2048, micro_batch_size=int(cfg[1]),
                       warmup=1, lr=4e-4, min_lr=4e-4, eval_seqs=1, weight_decay=0.1, grad_clip=1.0, seed=0,
                       dtype="bfloat16")
    torch._dynamo.reset()
    try:
        models = train.build_model(hp, domains, dev, True, cfg[2])
        train.train_run(hp, domains, weights, dev, models)  # compile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            train.train_run(hp, domains, weights, dev, models)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60), flush=True)
        del models
    except Exception as e:
        print(f"profile failed: {type(e).__name__}: {str(e)[:300]}", flush=True)

# 5. sweep layouts: N processes share the GPU, each training its own proxies
for nproc in [int(x) for x in args.layouts.split(",") if x]:
    out = tempfile.mkdtemp()
    cfg = best.get("1m", ("1m:16:fused",))[0].split(":")
    cmd = [sys.executable, os.path.join(ROOT, "regmix.py"), "--stage", "proxy", "--data", args.data, "--out", out,
           "--model", "1m", "--n-mixtures", str(nproc), "--steps", str(args.layout_steps), "--warmup", "1",
           "--eval-seqs", "1", "--micro-batch-size", cfg[1], "--head", cfg[2]]
    procs = [subprocess.Popen(cmd + ["--shard", f"{i}/{nproc}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(nproc)]
    errs = [pr.communicate()[1] for pr in procs]
    if any(pr.returncode for pr in procs):
        print(f"layout {nproc} process(es): failed\n" + errs[0].decode()[-2000:], flush=True)
        continue
    runs = [json.load(open(f)) for f in glob.glob(os.path.join(out, "runs", "run_*.json"))]
    total = sum(r["train_tokens_per_s"] for r in runs)
    print(f"layout {nproc} process(es) per GPU: {total:>12,.0f} tokens/s together after the first step "
          f"(each {statistics.mean(r['train_tokens_per_s'] for r in runs):,.0f}; start-up "
          f"{statistics.mean(r['startup_seconds'] for r in runs):.0f} s each)", flush=True)
