"""
RegMix: data mixture as regression (Liu et al., ICLR 2025), one stage at a time.

    python regmix.py --stage mixtures     # N random mixtures around the prior -> out/mixtures.csv
    python regmix.py --stage proxy        # one small model per mixture       -> out/runs/, results.csv
    python regmix.py --stage collect      # results.csv from the run files (after a job array's shards)
    python regmix.py --stage fit          # loss ~ weights, several regressors -> out/fit.json
    python regmix.py --stage simulate     # best of 1M predicted mixtures      -> out/mixture.json
    python regmix.py --stage train --model 1b --mixture out/mixture.json      # the target model
    python regmix.py --stage all          # mixtures -> proxy -> fit -> simulate
    python regmix.py --stage all --rounds 4           # the same budget in rounds (docs/rounds.md)
    python regmix.py --stage mixtures --next M        # after a fit: M mixtures it proposes, a new round
    python regmix.py --stage compare      # train on the chosen and the natural mixture, measure both

Defaults are the paper's (1M proxies: 1000 steps x 512 x 2048 tokens; 1B target: 25,000 steps).
`--model tiny` swaps in CPU-sized numbers for every stage. Several proxies at once: on CPU one
worker process per core (the default), `torchrun --nproc_per_node N regmix.py --stage proxy`
(rank r takes runs r, r+N, ...), or a job array's tasks with `--shard I/N` (Slurm's are read).
"""
import argparse
import gc
import json
import os
import sys
import time
from dataclasses import asdict

# PyTorch's OpenMP threads spin-wait for each other; beside other work every parallel region then
# stalls (bench/proxy_layouts.py measures it). Passive waiting must be chosen before torch loads OpenMP;
# a user's own OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402

import presets  # noqa: E402
import regression  # noqa: E402
import search  # noqa: E402
import sweep  # noqa: E402
import regressors  # noqa: E402
import reuse  # noqa: E402
from data import (DataError, atomic_write_json, atomic_write_text, check_block_size, make_dir, mixture_vector,  # noqa: E402
                  open_domains, read_mixture)
from mixtures import DEFAULT_DATA, n_mixtures, read_rounds, round_sizes, stage_mixtures  # noqa: E402
from proposals import stage_next  # noqa: E402

# torch is imported inside the stages that train (proxy, train, compare, export, eval): mixtures,
# fit and simulate never need it, and importing it takes ~2.5 s, longer than a whole fit.

# -----------------------------------------------------------------------------
# proxy: one run per mixture, each persisted the moment it finishes

def stage_proxy(args, domains):
    """The paper's step 3: train one small model per mixture of OUT/mixtures.csv and record every
    domain's validation loss. Each finished run is a file (written atomically) before the next
    starts, so a killed sweep resumes where it stopped. Which runs this process trains, and the
    worker processes, ranks and shards that share a sweep, are sweep.py's."""
    from tqdm import tqdm

    from train import RunOptions, build_model, hparams, pick_device, tracker, train_run, use_compile
    h = hparams(args, "proxy")
    check_block_size(domains, h.block_size)
    device = pick_device(args.device)
    spec, tw = regression.target_weights(args.target, domains.names, domains.trainable, args.data)
    mine, label = sweep.plan(args, domains, h, device, spec)
    if mine is None:  # worker processes trained them
        return
    track = tracker(args.wandb, args.out, f"proxies-{label.replace(' ', '-').replace('/', '-of-')}", asdict(h),
                    rank_zero_only=False)
    models = build_model(h, domains, device, use_compile(args, device), args.head) if mine else None
    bar = tqdm(mine, desc=f"proxies ({label})", unit="run", disable=label != "proxy")
    for m in bar:
        weights = {d: float(m[f"weight.{d}"]) for d in domains.trainable}
        r = train_run(h, domains, weights, device, models, RunOptions(log_every=h.steps))  # the loss is read once, at the end
        sweep.save_run(args.out, m, h, r, domains.trainable, domains.meta, models[0] if args.proxy_ckpt else None)
        sweep.collect(args.out, domains)
        msg = f"run {m['run']}: " + (f"FAILED ({r['failed']})" if r["failed"] else sweep.loss_line(r["losses"], tw))
        tps = r["train_tokens_per_s"] or r["tokens"] / r["seconds"]
        bar.set_postfix_str(f"last {msg}, {tps:,.0f} tok/s")
        startup = "" if r["startup_seconds"] is None else f" (start-up and first step {r['startup_seconds']:.1f}s)"
        tqdm.write(f"[{label}] {msg} in {r['seconds']:.1f}s{startup}, {tps:,.0f} tok/s after the first step")
        track.log({"run": int(m["run"]), "tokens_per_s": tps, **{f"val/{d}": v for d, v in r["losses"].items()}})
    track.finish()
    sweep.finish(args, domains, ddp=label.startswith("rank"))


# -----------------------------------------------------------------------------
# train: the target model on one mixture, data-parallel under torchrun, checkpointed

def stage_train(args, domains, weights=None, name=None):
    """The paper's step 6: the target model (--model 1b: 25B tokens by its recipe) trained on the chosen
    mixture (OUT/mixture.json, --mixture, or `weights`) by the same train_run as every proxy, with
    DDP under torchrun, checkpoints (--resume) and a log; OUT/NAME/eval.json at the end."""
    import torch.distributed as dist

    from train import RunOptions, build_model, hparams, print0, run_settings, tracker, train_run, use_compile
    h = hparams(args, "train")
    check_block_size(domains, h.block_size)
    device, ddp = device_and_ranks(args)
    source = "the mixture" if weights else args.mixture or os.path.join(args.out, "mixture.json")
    weights = weights or read_mixture(source)
    p = mixture_vector(weights, domains.trainable, domains.names, source)  # a clear error now, not after the model is built
    run_dir, ckpt, log_path = run_folder(args, name or args.name)
    print0(f"training {h.model} on {run_dir}: {h.steps} steps x {h.batch_size} x {h.block_size} tokens, "
           f"mixture " + ", ".join(f"{d} {w:.3f}" for d, w in zip(domains.trainable, p)))
    track = tracker(args.wandb, args.out, os.path.basename(run_dir), dict(asdict(h), mixture=weights, data=args.data))

    def progress(step, loss, lr, tps, mfu):
        print0(f"step {step}/{h.steps}: loss {loss:.4f}, {tps:,.0f} tok/s" + (f", MFU {mfu:.1%}" if mfu else ""))
        track.log(dict(loss=loss, lr=lr, tokens_per_s=tps, **({"mfu": mfu} if mfu else {})), step=step)

    opts = RunOptions(ckpt_path=ckpt, log_path=log_path, resume=args.resume, ckpt_every=args.ckpt_every,
                      eval_every=args.eval_every, log_every=args.log_every, peak_flops=args.peak_flops)
    r = train_run(h, domains, weights, device, build_model(h, domains, device, use_compile(args, device), args.head), opts,
                  ddp=ddp, progress=progress)
    if int(os.environ.get("RANK", 0)) == 0:
        atomic_write_json(os.path.join(run_dir, "eval.json"), dict(weights=weights, hparams=asdict(h),
                                                                   settings=run_settings(h, domains.meta), **r))
        print0("final validation loss: " + ", ".join(f"{d} {v:.4f}" for d, v in r["losses"].items()))
    track.summary.update({f"val/{d}": v for d, v in r["losses"].items()})
    track.finish()
    if ddp:
        dist.destroy_process_group()
    return r


# -----------------------------------------------------------------------------
# the newcomer's summary, and the proof: train on the chosen, natural and uniform mixtures

def summary(args):
    with open(os.path.join(args.out, "fit.json")) as f:
        fit = json.load(f)
    with open(os.path.join(args.out, "mixture.json")) as f:
        mix = json.load(f)
    nat, uni = mix["baselines"]["natural (prior)"], mix["baselines"]["uniform"]
    conf = mix.get("confidence")
    goal = f"maximise {mix['target']}" if mix.get("maximize") else f"minimise {mix['target']} validation loss"
    print(f"\n=== RegMix on {args.data}: {goal}, with {mix['regressor']} ===")
    print(f"{'domain':<14}{'regmix':>9}{'+/-':>7}{'natural':>9}{'uniform':>9}")
    for d, w in mix["weights"].items():
        spread = f"{conf['weights_std'][d]:>7.3f}" if conf and d in conf["weights_std"] else f"{'':>7}"
        print(f"{d:<14}{w:>9.3f}{spread}{nat['weights'][d]:>9.3f}{uni['weights'][d]:>9.3f}")
    print(f"{'predicted' if mix.get('maximize') else 'predicted loss':<14}{mix['predicted_loss']:>9.4f}{'':>7}{nat['predicted_loss']:>9.4f}{uni['predicted_loss']:>9.4f}")
    print(f"held-out Spearman rho ({fit['evaluation']}, {fit['n_test']} runs): "
          + ", ".join(f"{n} {m['spearman']:.3f}" for n, m in fit["regressors"].items()) + f"; chosen: {fit['chosen']}")
    if fit.get("learning_curve"):
        print("more proxies? CV rho by runs: " + ", ".join(f"{c['runs']} {c['spearman']:.3f}" for c in fit["learning_curve"])
              + f"; out-of-fold top-1 regret {fit['top1_regret']:.4g}")
    if conf:
        print(f"stability: {conf['bootstrap']} bootstrap refits move the mixture by {conf['mean_abs_change']:.3f} "
              "on average (total variation; 0 = the same, 1 = disjoint)")
    print(f"files: {args.out}/results.csv, fit.json, fit.png, mixture.json, mixture.png")
    data = "" if args.data == DEFAULT_DATA else f" --data {args.data}"
    print(f"next: python regmix.py --stage compare --model {args.model}{data} --out {args.out}  "
          "(trains the chosen mixture and its rivals alike and measures them)")


def stage_compare(args, domains):
    """Train the same model for the same tokens on the chosen mixture and on its rivals (baselines.py):
    natural, uniform, UniMax for this run's tokens, the best proxy run and, where the target is a
    trained domain, the target alone. A mixture equal to an earlier one is not trained again."""
    from baselines import unimax
    from train import hparams, run_settings
    path = os.path.join(args.out, "mixture.json")
    if not os.path.exists(path):
        raise DataError(f"{path}: not found; run --stage all (or fit and simulate) first")
    with open(path) as f:
        mix = json.load(f)
    target, tw = mix["target"], mix["target_weights"]
    if mix.get("maximize") or any(d not in domains.names for d in tw):
        raise DataError(f"{path}: its target ({target}) is not a validation loss of {args.data}; compare measures "
                        "those. Train the chosen mixture (--stage train) and score it with your evaluation (--stage eval)")
    h = hparams(args, "train")
    tokens = [domains.meta["domains"][d]["train_tokens"] for d in domains.trainable]
    runs = {"regmix": mix["weights"], "natural": domains.meta["prior"], "uniform": {d: 1.0 for d in domains.trainable},
            "unimax": dict(zip(domains.trainable, unimax(tokens, h.steps * h.batch_size * h.block_size,
                                                         args.max_epochs).tolist()))}
    best = (mix.get("baselines") or {}).get("best proxy run")
    if best and set(best["weights"]) <= set(domains.trainable):
        runs["best_run"] = best["weights"]
    if len(tw) == 1 and target in domains.trainable:
        runs["target_alone"] = {target: 1.0}
    measured, seen, same_as = {}, {}, {}
    settings = run_settings(h, domains.meta)
    for name, w in runs.items():
        same = tuple(np.round(mixture_vector(w, domains.trainable, domains.names, name), 9))
        if same in seen:  # (UniMax is uniform where every domain has tokens enough)
            measured[name], same_as[name] = measured[seen[same]], seen[same]
            continue
        seen[same] = name
        eval_path = os.path.join(args.out, f"compare_{name}", "eval.json")
        if not os.path.exists(eval_path):  # each finished run is kept; a rerun skips it
            args.resume = os.path.exists(os.path.join(args.out, f"compare_{name}", "ckpt.pt"))
            stage_train(args, domains, weights=w, name=f"compare_{name}")
        with open(eval_path) as f:
            ev = json.load(f)
        if ev["weights"] != w:
            raise DataError(f"{eval_path} was trained on another mixture (an older simulate?); "
                            f"delete {os.path.dirname(eval_path)} to retrain it")
        check_compare_settings(eval_path, ev, settings, args.data)
        measured[name] = ev["losses"]
    res = {n: dict(target_loss=sweep.target_loss(m, tw), mean_loss=float(np.mean(list(m.values())))) for n, m in measured.items()}
    atomic_write_json(os.path.join(args.out, "compare.json"), dict(target=target, target_weights=tw, runs=res))
    print(f"\nmeasured {target} validation loss after the same training ({args.out}/compare.json):")
    for n, r in res.items():
        print(f"  {n:<12} {r['target_loss']:.4f}" + (f"  (the same mixture as {same_as[n]})" if n in same_as else ""))
    return res


def device_and_ranks(args):
    """The device of this process, and whether it is one of several torchrun ranks (DDP)."""
    import torch

    from train import init_distributed, pick_device
    ddp = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    device = pick_device(args.device)
    if ddp:
        init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device, ddp


def run_folder(args, name):
    """OUT/NAME of a target run: (folder, checkpoint, log). A checkpoint there is refused unless
    --resume continues it; the log starts with its header (rank 0)."""
    run_dir = os.path.join(args.out, name)
    make_dir(run_dir, "--out")
    ckpt = os.path.join(run_dir, "ckpt.pt")
    if not args.resume and os.path.exists(ckpt):
        raise DataError(f"{ckpt} exists: pass --resume to continue it, or choose another --name")
    log_path = os.path.join(run_dir, "log.csv")
    if (not args.resume or not os.path.exists(log_path)) and int(os.environ.get("RANK", 0)) == 0:
        atomic_write_text(log_path, "step,loss,lr,tokens_per_s,mfu\n")
    return run_dir, ckpt, log_path


def sweep_size(args, domains):
    """The proxies of --stage all, every round together: --n-mixtures, or the recipe's; with --reuse,
    the reuse sweep's default for its columns (reuse.py)."""
    grouping = reuse.load(args.out) if args.reuse else None
    if grouping is not None:
        return reuse.sweep_size(args, len(grouping.columns(domains.trainable)))
    return n_mixtures(args.n_mixtures, args.model)


def check_compare_settings(eval_path, ev, settings, data):
    """A finished compare run is reused only where this command would train it alike (its eval.json
    records the settings and the data's fingerprint: train.run_settings): compare rerun with --steps
    600 must not measure runs of 300, nor runs on a corpus prepared again."""
    from train import SETTING_FLAGS
    recorded = ev.get("settings") or {k: v for k, v in (ev.get("hparams") or {}).items() if k in SETTING_FLAGS}
    key = next((k for k in settings if k in recorded and recorded[k] != settings[k]), None)
    if key:
        what = (f"on other data than --data {data}" if key == "data"
                else f"with {SETTING_FLAGS[key]} {recorded[key]}, this command asks for {settings[key]}")
        raise DataError(f"{eval_path} was trained {what}; " + ("use that data" if key == "data" else "pass the same flags")
                        + f", or delete {os.path.dirname(eval_path)} to retrain it")


def stage_export(args, domains):
    """export: a checkpoint -> a Hugging Face folder; eval: that folder (exported first if needed)
    -> lm-evaluation-harness scores in eval_downstream.json beside the run."""
    import export
    from train import pick_device
    tasks = args.tasks or export.PAPER_TASKS
    ckpt = args.ckpt or os.path.join(args.out, args.name, "ckpt.pt")
    hf = args.hf_out or os.path.join(os.path.dirname(ckpt), "hf" if not args.ckpt else
                                     os.path.basename(ckpt).rsplit(".", 1)[0] + "_hf")
    if args.stage == "export" or not os.path.exists(os.path.join(hf, "config.json")):
        export.export(ckpt, domains.meta, args.data, hf)
        print(f"exported {ckpt} -> {hf} (transformers: AutoModelForCausalLM.from_pretrained('{hf}'))")
    if args.stage == "eval":
        scores = export.evaluate_downstream(hf, tasks, args.num_fewshot, args.eval_batch_size,
                                            pick_device(args.device), args.eval_limit, args.include_path)
        path = os.path.join(os.path.dirname(os.path.abspath(hf)), "eval_downstream.json")
        atomic_write_json(path, dict(model=hf, tasks=tasks, num_fewshot=args.num_fewshot, limit=args.eval_limit,
                                     scores=scores))
        for task, by_shots in scores.items():
            print(f"{task:<20} " + ", ".join(f"{k} {v:.4f}" for k, v in by_shots["mean"].items()))
        print(f"-> {path}")


# -----------------------------------------------------------------------------

def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("every stage")
    g.add_argument("--stage", required=True,
                   choices=["mixtures", "proxy", "collect", "fit", "simulate", "train", "all", "compare", "ladder", "export",
                            "eval"],
                   help="what to run (see above)")
    g.add_argument("--data", default=DEFAULT_DATA, help="a folder made by prepare.py")
    g.add_argument("--out", default="out", help="where every artefact goes (plain CSV / JSON / PNG files)")
    g.add_argument("--model", default="1m", choices=list(presets.PRESETS),
                   help="model size of proxy and train, and the recipe it trains by (presets.py: steps, batch, "
                        "--n-mixtures; tiny: the CPU recipe)")
    g.add_argument("--seed", type=int, default=42, help="seed of the mixtures, of each run's init and batches, of simulate")
    g.add_argument("--target", default=None, help="proxy (its printed loss), fit: the validation loss to minimise: a "
                   "domain, several (a,b: their mean), weighted (a=0.7,b=0.3), or all (the mean over every domain; "
                   "all,-x: all but x) "
                   "(default: pile_cc if present, else the single eval-only domain)")
    g.add_argument("--device", default="auto", help="proxy/train/eval: cpu, cuda, cuda:N; auto = cuda:(LOCAL_RANK %% GPUs) if present")

    g = p.add_argument_group("mixtures")
    g.add_argument("--n-mixtures", type=int, default=None,
                   help="number of proxy mixtures, every round together (paper: 512; tiny: 64)")
    g.add_argument("--rounds", type=int, default=1,
                   help="all: spend --n-mixtures in R rounds: half drawn at random, the rest split over the later "
                        "rounds, each proposed by a fit of every run so far (default 1: the paper's one shot)")
    g.add_argument("--next", type=int, default=None, metavar="M",
                   help="mixtures: append M mixtures proposed by OUT/fit.json to OUT/mixtures.csv as a new round "
                        "(new run ids); train them with --stage proxy, then fit again. Uses simulate's --prior and "
                        "constraints; works without --data")

    g = p.add_argument_group("reuse (reuse.py: a new mixture after the domain set changes, from a fraction of the proxies)")
    g.add_argument("--reuse", default=None, metavar="FILE",
                   help="an earlier mixture.json, or Olmix's {virtual: {domain: ratio}}: its domains still in --data "
                        "sweep as one virtual domain at their old ratios, new domains free (mixtures, fit, simulate, "
                        "all; default sweep size: 3 runs per column, at least 16)")
    g.add_argument("--unfreeze", default=None, metavar="A,B",
                   help="with --reuse: old domains to take out of the virtual domain and sweep freely (those a change "
                        "touches)")

    g = p.add_argument_group("training (proxy and train; each default: proxy's, train's)")
    g.add_argument("--steps", type=int, default=None, help="optimizer steps per run (1000, 25000; tiny: 20, 300)")
    g.add_argument("--batch-size", type=int, default=None, help="sequences per optimizer step, all ranks together (512)")
    g.add_argument("--micro-batch-size", type=int, default=None, help="sequences per forward pass and rank (16)")
    g.add_argument("--block-size", type=int, default=None, help="tokens per sequence (2048)")
    g.add_argument("--warmup", type=int, default=None, help="linear warmup steps (100, 1000)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (4e-4)")
    g.add_argument("--min-lr", type=float, default=None, help="final learning rate of the cosine (= lr, constant; 1e-5)")
    g.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay")
    g.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clipping")
    g.add_argument("--eval-seqs", type=int, default=None, help="fixed validation sequences per domain (64)")
    g.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                   help="autocast dtype (auto: bfloat16 on CUDA, as the paper; float32 on CPU, where bf16 is no faster)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for CUDA, off for CPU)")
    g.add_argument("--head", default="chunked", choices=["chunked", "fused"],
                   help="the loss head (head.py): chunked, every device; fused, one Triton kernel that never writes "
                        "the logits (CUDA, hidden width <= 256: the 1m and tiny presets; not yet timed on a GPU: "
                        "bench/gpu_proxy.py compares both)")
    g.add_argument("--wandb", default=None, metavar="PROJECT",
                   help="also log to Weights & Biases (train: loss, lr, tokens/s, MFU at each log step; proxies: "
                        "final losses); WANDB_MODE=offline works without network")

    g = p.add_argument_group("proxy")
    g.add_argument("--workers", type=int, default=None,
                   help="on CPU: processes that split the sweep (default: one per core, each single-threaded; "
                        "with OMP_NUM_THREADS=T, cores / T)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="train only the runs r with r mod N == I, e.g. one task of a job array (default: "
                        "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when both are set, else all runs)")
    g.add_argument("--proxy-ckpt", action="store_true", help="also save each proxy's weights (OUT/runs/run_NNNNN.pt)")

    g = p.add_argument_group("ladder (ladder.py: do the proxies rank mixtures as a larger scale does?)")
    g.add_argument("--ladder-runs", type=int, default=16,
                   help="sweep mixtures to train again at the second scale, spread over the target (besides the "
                        "chosen, natural and uniform mixtures)")
    g.add_argument("--ladder-model", default=None, choices=list(presets.PRESETS),
                   help="the second scale's model (default: --model)")
    g.add_argument("--ladder-steps", type=int, default=None, help="the second scale's steps (default: its recipe's)")
    g.add_argument("--ladder-results", default=None, metavar="CSV",
                   help="the report alone, for two tables that share mixtures (joined on run): --results is the small "
                        "scale, this the large one")
    g.add_argument("--ladder-metrics", default=None, metavar="CSV",
                   help="the large scale's metrics, where --ladder-results holds only the mixtures (as --metrics)")

    g = p.add_argument_group("train (and compare)")
    g.add_argument("--mixture", default=None, help="a JSON of domain -> weight, or simulate's mixture.json (default: OUT/mixture.json)")
    g.add_argument("--name", default="target", help="run folder under --out (checkpoint, log, eval)")
    g.add_argument("--ckpt-every", type=int, default=1000, help="checkpoint every N steps (and at the end)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/NAME/ckpt.pt")
    g.add_argument("--eval-every", type=int, default=0, help="per-domain validation loss every N steps (0: only at the end)")
    g.add_argument("--log-every", type=int, default=10,
                   help="print and log every N steps (the loss leaves the device only then)")
    g.add_argument("--peak-flops", type=float, default=None,
                   help="the device's peak FLOP/s for MFU (default: the bf16 data-sheet peak of A100, H100, H200; "
                        "other devices log no MFU without it)")

    g = p.add_argument_group("fit")
    g.add_argument("--results", default=None, help="results table (default: OUT/results.csv)")
    g.add_argument("--metrics", default=None, metavar="FILE",
                   help="the measurements of each run, when --results holds only the mixtures (Olmix's metrics.csv "
                        "beside its ratios.csv), joined on the run column")
    g.add_argument("--maximize", action="store_true",
                   help="the target is a metric to maximise (accuracy): higher is better in fit, simulate, --next "
                        "and mixture.json")
    g.add_argument("--test", default=None, help="a held-out results table; without it, 5-fold cross-validation")
    g.add_argument("--regressor", default="auto", choices=["auto", *regressors.NAMES, *regressors.PER_METRIC],
                   help="the regressor to fit and choose (auto: fit all, choose by cross-validated Spearman, "
                        "docs/fit.md); simulate: the one to search (auto: the one fit chose)")
    g.add_argument("--min-data-in-leaf", type=int, default=None,
                   help="LightGBM's min_data_in_leaf (default: the paper's 20 from 120 runs and 10 per domain on, "
                        "5 below, where 20-row leaves leave trees almost no split)")

    g = p.add_argument_group("simulate")
    g.add_argument("--samples", type=int, default=1_000_000, help="random candidate mixtures to score")
    g.add_argument("--top-k", type=int, default=100, help="average of the k best candidates")
    g.add_argument("--prior", default=None, help="JSON domain -> share, or an Olmix fit config .yaml (its priors: relative_sizes) "
                   "(default: the data's meta.json prior)")
    g.add_argument("--bound", action=argparse.BooleanOptionalAction, default=True,
                   help="keep candidates within 15x the prior, as --stage mixtures draws them (default: on)")
    g.add_argument("--pick", default="vouched", choices=["vouched", "paper"],
                   help="vouched (default): an answer the runs vouch for: searched within the trust region (near a "
                        "run), it and its rivals (the best run, natural, ...) judged by the prediction corrected by "
                        "the fit's errors on the runs near each, the best run where the fit is not trusted "
                        "(docs/simulate.md); paper: the paper's pick (each weight within the runs' range, every "
                        "rival judged by prediction alone)")
    g.add_argument("--extrapolate", action="store_true",
                   help="search anywhere, beyond the runs: no trust region (nor, with --pick paper, the runs' range)")
    g.add_argument("--kl", type=float, default=0.0, metavar="LAMBDA",
                   help="move the answer toward the prior while the predicted loss + LAMBDA x KL(w || prior) falls "
                        "(Olmix ships 0.05, Marin 0.025; default 0: the search's own answer)")
    g.add_argument("--target-tokens", type=int, default=None,
                   help="tokens of the target run; with --max-epochs, caps each domain at "
                        "max-epochs x its training tokens / target-tokens")
    g.add_argument("--max-epochs", type=float, default=4.0, help="how often the target run may repeat a domain")
    g.add_argument("--tokens", default=None, metavar="FILE",
                   help="JSON domain -> training tokens for --target-tokens without a --data folder, or an Olmix "
                   "fit config .yaml (its priors: token_counts)")
    g.add_argument("--optimize", action="store_true",
                   help="with a smooth regressor, optimise it on the simplex within the caps, starting "
                        "from the simulated mixture (which mixture.json also keeps)")
    g.add_argument("--bootstrap", type=int, default=None,
                   help="refits on resampled runs to measure how stable the mixture is (0: none; default 10; "
                        "per_metric_lightgbm: 5, each one forest of the whole target, its screen)")
    g.add_argument("--blend-best-run", action=argparse.BooleanOptionalAction, default=None,
                   help="return the mean of the search's mixture and the best proxy run (default: on when the runs "
                        "came in rounds, --rounds or --next; off after the paper's one shot; docs/rounds.md says why)")
    g.add_argument("--compare", action="append", default=[], metavar="NAME=FILE",
                   help="also predict this mixture (JSON domain -> weight); repeatable")

    g = p.add_argument_group("export and eval")
    g.add_argument("--ckpt", default=None, help="the checkpoint (default: OUT/NAME/ckpt.pt; a proxy's: OUT/runs/run_NNNNN.pt)")
    g.add_argument("--hf-out", default=None, help="the Hugging Face folder (default: hf/ beside the checkpoint)")
    g.add_argument("--tasks", nargs="+", default=None, help="eval: lm-evaluation-harness tasks (default: the paper's 13)")
    g.add_argument("--num-fewshot", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5],
                   help="eval: shots; each task runs at each and is also averaged over them (default: 0-5, as the paper)")
    g.add_argument("--eval-limit", type=int, default=None, help="eval: at most N examples per task (a quick check)")
    g.add_argument("--eval-batch-size", type=int, default=16, help="eval: lm-eval's batch size")
    g.add_argument("--include-path", default=None, help="eval: a folder of your own lm-eval task YAML files")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what proxy workers are started with
    return args


def check_name(name):
    """--name is a run folder under --out: a name that leaves it (../../x, /abs/path) would put the
    checkpoint, log and eval (and export's folder) outside --out."""
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or ".." in parts or os.path.normpath(name or ".") == ".":
        raise DataError(f"--name {name!r}: a run folder under --out (a name such as target), not a path out of it; "
                        "to write elsewhere, pass another --out")


def check_ladder_flags(args):
    """--stage ladder reads --results (and --metrics, --ladder-metrics) only for the report of two
    tables, with --ladder-results: without it the ladder would start training from OUT/fit.json, and
    complain about a --data the user never meant."""
    given = [f for f, v in (("--results", args.results), ("--metrics", args.metrics),
                            ("--ladder-metrics", args.ladder_metrics)) if v]
    if args.stage == "ladder" and not args.ladder_results and given:
        raise DataError(f"--stage ladder {given[0]} ...: the report of two tables needs --ladder-results CSV (the "
                        "large scale's) too; without any of them the ladder trains its second scale from OUT/fit.json")


def data_of_the_fit(args, domains):
    """simulate: the default --data (the demo's corpus) beside a fit of another sweep's domains
    (--results from elsewhere) is not that fit's data. Simulate then works without it, as --next
    does, and the runs' mean weights serve as the prior (docs/simulate.md); an explicit --data of
    other domains stays an error that names the domain."""
    if domains is None or args.data != DEFAULT_DATA or not os.path.exists(os.path.join(args.out, "fit.json")):
        return domains
    names = regression.read_fit(args.out).get("domains") or []
    return domains if sorted(names) == sorted(domains.trainable) else None


def main(argv=None):
    args = get_args(argv)
    try:
        make_dir(args.out, "--out")
        check_ladder_flags(args)
        check_name(args.name)
        if args.stage == "ladder" and args.ladder_results:  # two tables, no data
            import ladder
            ladder.stage_ladder_offline(args)
            return
        if args.stage in ("fit", "simulate", "mixtures"):  # these also work without data (results from elsewhere)
            domains = open_domains(args.data) if os.path.exists(os.path.join(args.data, "meta.json")) else None
            if args.stage == "fit" and not args.results and domains and os.path.isdir(os.path.join(args.out, "runs")):
                sweep.collect(args.out, domains)  # shards of a job array may have finished since the last collect
            if args.stage == "simulate":
                domains = data_of_the_fit(args, domains)
            if args.stage == "mixtures":
                (stage_mixtures if args.next is None else stage_next)(args, domains)
            else:
                (regression.stage_fit if args.stage == "fit" else search.stage_simulate)(args, domains)
            return
        domains = open_domains(args.data)
        regression.target_weights(args.target, domains.names, domains.trainable, args.data)  # a clear error now
        if args.stage == "proxy":
            stage_proxy(args, domains)
        elif args.stage == "collect":
            sweep.check_results_schema(os.path.join(args.out, "results.csv"), domains)
            print(f"{len(sweep.collect(args.out, domains))} proxy results -> {os.path.join(args.out, 'results.csv')}")
        elif args.stage == "train":
            stage_train(args, domains)
        elif args.stage == "all":
            t0 = time.time()
            if args.reuse and reuse.removal_only(args, domains):  # nothing new to sweep: the old mixture, renormalised
                return
            stage_proxy(args, domains)
            sizes = round_sizes(sweep_size(args, domains), args.rounds)
            for r, m in enumerate(sizes[1:], start=2):
                # a round's proposals are written before it trains: a killed run resumes the same round
                if not any(x["round"] == str(r) for x in read_rounds(os.path.join(args.out, "mixtures.csv"))):
                    print(f"\n--- round {r} of {len(sizes)}: fit every run so far, propose {m} mixtures ---")
                    regression.stage_fit(args, domains)
                    stage_next(args, domains, m)
                stage_proxy(args, domains)
            regression.stage_fit(args, domains)
            search.stage_simulate(args, domains)
            summary(args)
            print(f"all stages took {(time.time() - t0) / 60:.1f} min")
        elif args.stage == "compare":
            stage_compare(args, domains)
        elif args.stage == "ladder":
            import ladder
            ladder.stage_ladder(args, domains, stage_proxy)
        elif args.stage in ("export", "eval"):
            stage_export(args, domains)
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
    # Only the interpreter's shutdown is left. Its last garbage collection walks every object of the
    # libraries loaded (scipy, numba, matplotlib): time for nothing, as nothing of ours needs
    # collecting; it skips frozen objects. Not after training: objects of torch's Triton bindings
    # left to that collection are then reported as leaks, dozens of lines at every exit.
    if "torch" not in sys.modules:
        gc.freeze()
