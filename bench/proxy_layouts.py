"""A CPU proxy sweep beside other work, and the ways to lay it out on the cores, measured in one run.

    python prepare.py && python bench/proxy_layouts.py [--proxies 4] [--steps 30]

The same sweep (tiny proxies, --steps x 8 x 128 tokens each, start-up and evaluation included) is
timed in three layouts:
  before    one process, a thread per core, OpenMP's default wait policy (torch is imported
            before regmix.py can choose): the project's default until issue 11
  threads   one process, a thread per core, passive waiting (`--workers 1`)
  workers   one single-threaded process per core (the default now)
each on an idle machine, beside a busy process (a Python loop) and beside another training job
(a torch matmul loop on its default threads). Prints tokens/s (whole sweep), proxies per minute,
and the ratios the README quotes. Goals: under load >= 0.55 (busy) and >= 0.4 (training) of
idle; idle no more than 5% below `before`.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data", default=os.path.join(ROOT, "data", "default"), help="a prepared data folder")
p.add_argument("--proxies", type=int, default=4, help="proxies per sweep")
p.add_argument("--steps", type=int, default=30, help="steps per proxy (8 x 128 tokens each)")
args = p.parse_args()

SWEEP = ["--stage", "proxy", "--data", args.data, "--model", "tiny", "--n-mixtures", str(args.proxies),
         "--steps", str(args.steps), "--batch-size", "8", "--micro-batch-size", "8", "--block-size", "128",
         "--warmup", "5", "--eval-seqs", "8", "--device", "cpu"]
REGMIX = os.path.join(ROOT, "regmix.py")
LAYOUTS = {
    # torch first: OpenMP reads its wait policy when torch loads it, before regmix.py's default applies
    "before": [sys.executable, "-c", "import runpy, sys, torch; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')", REGMIX, "--workers", "1"],
    "threads": [sys.executable, REGMIX, "--workers", "1"],
    "workers": [sys.executable, REGMIX],
}
LOADS = {
    "idle": None,
    "busy": [sys.executable, "-c", "while True: pass"],
    "training": [sys.executable, "-c", "import torch\na = torch.randn(512, 512)\nwhile True: a = (a @ a).tanh()"],
}
env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
tokens = args.proxies * args.steps * 8 * 128
tps = {}
print(f"sweep: {args.proxies} proxies x {args.steps} steps x 8 x 128 tokens = {tokens:,} tokens, {os.cpu_count()} cores")
print(f"{'layout':<10}{'load':<10}{'seconds':>9}{'tokens/s':>10}{'proxies/min':>13}")
for load, load_cmd in LOADS.items():
    for layout, cmd in LAYOUTS.items():
        other = subprocess.Popen(load_cmd, env=env) if load_cmd else None
        out = tempfile.mkdtemp()
        try:
            time.sleep(1 if other else 0)  # let the load start
            t0 = time.perf_counter()
            subprocess.run(cmd + SWEEP + ["--out", out], env=env, check=True, capture_output=True)
            dt = time.perf_counter() - t0
        finally:
            if other:
                other.kill()
                other.wait()
            shutil.rmtree(out)
        tps[layout, load] = tokens / dt
        print(f"{layout:<10}{load:<10}{dt:>9.1f}{tokens / dt:>10,.0f}{args.proxies / dt * 60:>13.1f}", flush=True)

print("\nratios")
for layout in LAYOUTS:
    print(f"{layout:<10} busy/idle {tps[layout, 'busy'] / tps[layout, 'idle']:.2f}   "
          f"training/idle {tps[layout, 'training'] / tps[layout, 'idle']:.2f}   "
          f"idle vs before {tps[layout, 'idle'] / tps['before', 'idle']:.2f}")
best = max(LAYOUTS, key=lambda k: tps[k, "idle"])
print(f"fastest idle layout: {best}, {tps[best, 'idle'] / tps['before', 'idle']:.2f}x before")
