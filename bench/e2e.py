"""The whole loop, judged the only way that counts: train the target on each mixture and measure it.

    python bench/e2e.py [--corpus default system] [--proxies 32 64] [--seeds 42 43 44] [--steps 100]
                        [--label NAME] [--code DIR] [--simulate-args "..."]

For each corpus and seed: one sweep of tiny proxies (`--stage mixtures` + `--stage proxy`, the largest
of --proxies; a smaller setting fits the first N runs of it, a random sweep of N all the same), then
per target and N `--stage fit` and `--stage simulate` as a user runs them, then the target (`--stage
train --model tiny --steps S`, the same seed) trained on

    returned   simulate's mixture.json
    natural    the prior (each domain's share of the tokens)
    uniform    every trainable domain alike
    unimax     UniMax (Chung et al. 2023) for the target run's tokens, at most --max-epochs each
    best run   the proxy run with the lowest measured target loss among the N
    target     the target domain alone, where it is a trained domain

and prints each one's target validation loss per seed, mean and sd. The seed noise is natural's sd
over the seeds. Goal (issue 33): in every setting the returned mixture's mean within one seed-sd of
the best of natural, uniform, UniMax and the best run, and no seed worse than natural by more than
two seed-sd. Trainings are cached by (data, mixture, seed, steps) in WORK/train: CPU training is
deterministic, so two versions of the search that return the same mixture share its training.

Corpora: `default` is the embedded one (data/default, target numpy_docs, eval-only); `system` is
built here from text this machine holds (man pages, Debian changelogs, Perl modules, npm's
JavaScript, C headers; markdown eval-only), targets markdown (held out) and man (a trained domain).
--code runs the stages from another checkout (the search before a change: `git worktree add`), with
the same sweeps and trainings.
"""
import argparse
import concurrent.futures
import csv
import glob
import gzip
import hashlib
import json
import os
import shlex
import subprocess
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from baselines import unimax  # noqa: E402

CORPORA = {"default": dict(data="data/default", targets=["numpy_docs"]),
           "system": dict(data="data/e2e_system", targets=["markdown", "man"])}

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--corpus", nargs="+", default=list(CORPORA), choices=list(CORPORA), help="corpora to run")
p.add_argument("--targets", nargs="+", default=None, help="targets (default: each corpus's own)")
p.add_argument("--proxies", nargs="+", type=int, default=[32, 64], help="proxy runs per sweep (the first N of one sweep)")
p.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44], help="seeds of the mixtures, proxies and trainings")
p.add_argument("--steps", type=int, default=100, help="steps of each target training (tiny recipe otherwise)")
p.add_argument("--max-epochs", type=float, default=4.0, help="UniMax's cap: epochs of a domain in the target run")
p.add_argument("--label", default="current", help="name of this version of the search (its folders and results)")
p.add_argument("--code", default=ROOT, help="the checkout whose regmix.py runs fit and simulate")
p.add_argument("--train-code", default=ROOT, help="the checkout whose regmix.py trains the proxies and the targets")
p.add_argument("--simulate-args", default="", help="extra flags for --stage simulate (quoted)")
p.add_argument("--jobs", type=int, default=2, help="trainings at once (one thread each)")
p.add_argument("--work", default=os.path.join(ROOT, "out_e2e"), help="where sweeps, searches and trainings go")
p.add_argument("--no-train", action="store_true", help="searches only: print the mixtures, train nothing")
args = p.parse_args()


def run(cmd, cwd=ROOT, threads=None, quiet=True):
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=quiet, text=True)
    if r.returncode:
        sys.exit(f"failed: {shlex.join(cmd)}\n{(r.stdout or '')[-3000:]}{(r.stderr or '')[-3000:]}")
    return r.stdout


# -----------------------------------------------------------------------------
# the second corpus, from this machine's own text

def system_sources():
    def gz_or_text(path):
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                return f.read()
        except (OSError, EOFError):
            return ""
    return {
        "man": sorted(glob.glob("/usr/share/man/man[1-8]/*.gz")),
        "changelog": sorted(glob.glob("/usr/share/doc/*/changelog*.gz")),
        "perl": sorted(glob.glob("/usr/share/perl/*/**/*.pm", recursive=True)),
        "js": sorted(glob.glob("/usr/lib/node_modules/**/*.js", recursive=True)),
        "c_system": sorted(glob.glob("/usr/include/**/*.h", recursive=True)),
        "markdown": sorted(glob.glob("/usr/lib/node_modules/**/*.md", recursive=True)
                           + glob.glob("/usr/share/doc/**/*.md*", recursive=True)),
    }, gz_or_text


def build_system(data, max_bytes=2_000_000):
    src = os.path.join(args.work, "system_src")
    sources, read = system_sources()
    for domain, files in sources.items():
        os.makedirs(os.path.join(src, domain), exist_ok=True)
        total = 0
        for i, path in enumerate(sorted(files, key=lambda s: zlib.crc32(s.encode()))):  # a fixed sample of the tree
            text = read(path)
            if text.strip() and total < max_bytes:
                total += len(text.encode())
                with open(os.path.join(src, domain, f"{i:05d}.txt"), "w", encoding="utf-8") as f:
                    f.write(text)
        if total == 0:
            sys.exit(f"the system corpus needs {domain} files on this machine; none found")
    run([sys.executable, "prepare.py", "--input", src, "--out", data, "--eval-only", "markdown", "--vocab-size", "4096"])


def data_dir(corpus):
    data = os.path.join(ROOT, CORPORA[corpus]["data"])
    if not os.path.exists(os.path.join(data, "meta.json")):
        print(f"preparing {data}", flush=True)
        if corpus == "default":
            run([sys.executable, "prepare.py"])
        else:
            build_system(data)
    return data


# -----------------------------------------------------------------------------
# sweeps, searches, trainings

def sweep(corpus, data, seed, n):
    out = os.path.join(args.work, corpus, f"seed{seed}", "sweep")
    common = ["--model", "tiny", "--data", data, "--out", out, "--seed", str(seed), "--n-mixtures", str(n)]
    if not os.path.exists(os.path.join(out, "results.csv")) or len(read_rows(os.path.join(out, "results.csv"))) < n:
        print(f"sweep {corpus} seed {seed}: {n} proxies", flush=True)
        run([sys.executable, os.path.join(args.train_code, "regmix.py"), "--stage", "proxy", *common,
             "--target", CORPORA[corpus]["targets"][0]], cwd=args.train_code)
    return out


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def search(corpus, data, seed, sweep_out, n, target):
    """fit and simulate on the first n runs of the sweep, as a user runs them; mixture.json."""
    out = os.path.join(args.work, corpus, f"seed{seed}", args.label, f"n{n}_{target}")
    path = os.path.join(out, "mixture.json")
    if not os.path.exists(path):
        os.makedirs(out, exist_ok=True)
        rows = [r for r in read_rows(os.path.join(sweep_out, "results.csv")) if int(r["run"]) < n]
        with open(os.path.join(out, "runs.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        common = ["--data", data, "--out", out, "--seed", str(seed), "--model", "tiny"]
        log = run([sys.executable, os.path.join(args.code, "regmix.py"), "--stage", "fit", "--results",
                   os.path.join(out, "runs.csv"), "--target", target, *common], cwd=args.code)
        log += run([sys.executable, os.path.join(args.code, "regmix.py"), "--stage", "simulate", *common,
                    *shlex.split(args.simulate_args)], cwd=args.code)
        with open(os.path.join(out, "log.txt"), "w") as f:
            f.write(log)
    with open(path) as f:
        mix = json.load(f)
    rows = read_rows(os.path.join(out, "runs.csv"))
    losses = [float(r[f"loss.{target}"]) for r in rows]
    best = rows[int(np.argmin(losses))]
    best_run = {k[len("weight."):]: float(v) for k, v in best.items() if k.startswith("weight.")}
    source = (mix.get("source") or mix.get("baseline_chosen") or ("blend" if mix.get("blended_with_best_run") else "search"))
    return mix["weights"], best_run, source


def key(data, weights, seed):
    w = {d: round(float(x), 6) for d, x in sorted(weights.items()) if float(x) > 0}
    text = json.dumps([os.path.basename(data), w, seed, args.steps])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def train(data, weights, seed):
    """The target run on `weights`: its per-domain validation losses (cached)."""
    name = key(data, weights, seed)
    out = os.path.join(args.work, "train")
    ev = os.path.join(out, name, "eval.json")
    if not os.path.exists(ev):
        os.makedirs(out, exist_ok=True)
        mix = os.path.join(out, f"{name}.mixture.json")
        with open(mix, "w") as f:
            json.dump(weights, f)
        run([sys.executable, os.path.join(args.train_code, "regmix.py"), "--stage", "train", "--model", "tiny",
             "--steps", str(args.steps), "--data", data, "--out", out, "--name", name, "--mixture", mix, "--seed", str(seed),
             "--log-every", "1000", "--ckpt-every", "0"], cwd=args.train_code, threads=1)
    with open(ev) as f:
        return json.load(f)["losses"]


def main():
    os.makedirs(args.work, exist_ok=True)
    table = {}  # (corpus, target, n) -> kind -> [loss per seed]
    sources = {}
    jobs = []
    for corpus in args.corpus:
        data = data_dir(corpus)
        with open(os.path.join(data, "meta.json")) as f:
            meta = json.load(f)
        trainable = [d for d, m in meta["domains"].items() if not m["eval_only"]]
        tokens = np.array([meta["domains"][d]["train_tokens"] for d in trainable], float)
        budget = args.steps * 32 * 128  # the tiny train recipe's batch x block
        fixed = {"natural": meta["prior"], "uniform": {d: 1.0 / len(trainable) for d in trainable},
                 "unimax": dict(zip(trainable, unimax(tokens, budget, args.max_epochs).tolist()))}
        for seed in args.seeds:
            sw = sweep(corpus, data, seed, max(args.proxies))
            for target in args.targets or CORPORA[corpus]["targets"]:
                for n in args.proxies:
                    returned, best_run, source = search(corpus, data, seed, sw, n, target)
                    mixtures = dict(returned=returned, **fixed, best_run=best_run)
                    if target in trainable:
                        mixtures["target"] = {target: 1.0}
                    sources.setdefault((corpus, target, n), []).append(source)
                    print(f"{corpus} {target} n{n} seed {seed}: returned ({source}) "
                          + ", ".join(f"{d} {w:.2f}" for d, w in returned.items() if w >= 0.01), flush=True)
                    for kind, w in mixtures.items():
                        jobs.append(((corpus, target, n), kind, seed, data, w))
    if args.no_train:
        return
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:  # each training its own process
        done = list(pool.map(lambda j: train(j[3], j[4], j[2]), jobs))
    for (setting, kind, seed, _, _), losses in zip(jobs, done):
        table.setdefault(setting, {}).setdefault(kind, {})[seed] = losses[setting[1]]
    results = []
    print(f"\n=== {args.label}: target loss after {args.steps} steps (tiny), per seed; mean (sd) ===")
    for (corpus, target, n), kinds in table.items():
        noise = float(np.std(list(kinds["natural"].values()), ddof=1)) if len(args.seeds) > 1 else float("nan")
        means = {k: float(np.mean(list(v.values()))) for k, v in kinds.items()}
        rivals = min(means[k] for k in ("natural", "uniform", "unimax", "best_run"))
        worst = max(kinds["returned"][s] - kinds["natural"][s] for s in args.seeds)
        ok_mean, ok_worst = means["returned"] <= rivals + noise, worst <= 2 * noise
        src = sources[(corpus, target, n)]
        print(f"\n{corpus} / {target} / {n} proxies   seed noise (natural's sd) {noise:.4f}; returned from: "
              + ", ".join(f"{s} x{src.count(s)}" for s in dict.fromkeys(src)))
        print(f"  {'mixture':<10}" + "".join(f"{s:>9}" for s in args.seeds) + f"{'mean':>9}{'sd':>8}")
        for k, v in kinds.items():
            sd = np.std(list(v.values()), ddof=1) if len(v) > 1 else float("nan")
            print(f"  {k:<10}" + "".join(f"{v[s]:>9.4f}" for s in args.seeds) + f"{means[k]:>9.4f}{sd:>8.4f}")
        print(f"  goal: mean within one sd of the best rival ({rivals:.4f} + {noise:.4f}): {'yes' if ok_mean else 'NO'}; "
              f"no seed worse than natural by 2 sd (worst {worst:+.4f}): {'yes' if ok_worst else 'NO'}")
        results.append(dict(corpus=corpus, target=target, proxies=n, noise=noise, losses=kinds, means=means,
                            sources=src, goal_mean=bool(ok_mean), goal_worst=bool(ok_worst)))
    with open(os.path.join(args.work, f"results_{args.label}.json"), "w") as f:
        json.dump(dict(label=args.label, steps=args.steps, simulate_args=args.simulate_args, settings=results), f, indent=1)


if __name__ == "__main__":
    main()
