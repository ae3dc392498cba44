"""
A proxy sweep beyond one process (the paper's loop, regmix.py: stage_proxy, trains one mixture
after another): which runs this process trains, and the files that let many processes share a
sweep without talking to each other.

    run files    OUT/runs/run_NNNNN.json, one per finished run, written atomically: the source of
                 truth; results.csv is collected from them
    shards       a job array's tasks (--shard I/N, or Slurm's) take runs r with r mod N == I
    ranks        under torchrun, rank k of K takes every K-th run of its shard
    workers      on a CPU, one single-threaded process per core (faster than threads, and steady
                 beside other work: docs/speed.md), each a shard of this process's share
"""
import csv
import glob
import json
import os
import signal
import subprocess
import sys

from data import DataError, atomic_write_json, make_dir, print0, read_csv, usable_cores, write_csv
from mixtures import check_mixtures, stage_mixtures
from results import check_one_setting


def plan(args, domains, h, device, target=None):
    """The mixtures this process trains itself (and a label for its lines), after making OUT ready:
    mixtures.csv written if absent, the runs already done left out, this shard's and rank's share
    taken. None where worker processes were started for them (and have finished)."""
    import torch.distributed as dist
    ddp = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if ddp and not dist.is_initialized():
        dist.init_process_group("gloo")  # proxies are independent; the group only waits at the end
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    make_dir(os.path.join(args.out, "runs"), "--out")
    results = os.path.join(args.out, "results.csv")
    check_results_schema(results, domains)
    path = os.path.join(args.out, "mixtures.csv")
    if rank == 0 and not os.path.exists(path):  # an existing file is trained as written, whoever wrote it
        stage_mixtures(args, domains)
    if ddp:
        dist.barrier()
    mixtures = check_mixtures(path, domains)
    done = {int(r["run"]) for r in read_csv(results)} if os.path.exists(results) else set()
    done |= {int(m["run"]) for m in mixtures if os.path.exists(run_file(args.out, m["run"]))}
    check_finished(args, h, domains, done)
    # this process's runs: run r belongs to shard r mod N (job arrays), split again among the ranks
    index, count = shard(args)
    index, count = index + count * rank, count * world
    mine = [m for m in mixtures if int(m["run"]) % count == index and int(m["run"]) not in done]
    workers, threads = cpu_layout(args, device, ddp)
    print0(f"proxy sweep: {len(mixtures)} mixtures, {len(done)} done, {len(mine)} to run here, model {h.model}, "
           f"{h.steps} steps x {h.batch_size} x {h.block_size} tokens, device {device}, "
           + (f"{world} rank(s)" if ddp else f"{min(workers, len(mine))} process(es) x {threads} thread(s)" if mine
              else "nothing to train") + (f", target {target}" if target else
                                          "; no --target: every domain's loss is recorded, fit will ask which to minimise"))
    if workers > 1 and len(mine) > 1:
        run_workers(args, min(workers, len(mine)), threads, index, count)
        finish(args, domains, ddp=False)
        return None, None
    return mine, f"rank {rank}" if ddp else f"shard {index}/{count}" if count > 1 else "proxy"


def save_run(out, m, h, r, trainable, meta, model=None):
    """A finished run's file, with the settings it was trained at (and with --proxy-ckpt its weights,
    first: a run counts as done only with them saved)."""
    from train import run_settings
    row = {"run": int(m["run"]), **{f"weight.{d}": m[f"weight.{d}"] for d in trainable},
           **{f"loss.{d}": f"{v:.6f}" for d, v in r["losses"].items()},
           "seed": h.seed, "tokens": r["tokens"], "seconds": f"{r['seconds']:.1f}", "failed": r["failed"],
           "startup_seconds": r["startup_seconds"], "train_tokens_per_s": r["train_tokens_per_s"],
           "settings": run_settings(h, meta)}  # (what check_finished compares a rerun's flags with)
    if model is not None:
        import torch
        tmp = f"{run_file(out, m['run'], '.pt')}.tmp{os.getpid()}"
        torch.save(model.checkpoint(), tmp)
        os.replace(tmp, run_file(out, m["run"], ".pt"))
    atomic_write_json(run_file(out, m["run"]), row)


def finish(args, domains, ddp):
    """The end of a sweep process: every process's runs collected into results.csv."""
    import torch.distributed as dist
    if ddp:
        dist.barrier()
    rows = collect(args.out, domains)
    print0(f"{len(rows)} proxy results -> {os.path.join(args.out, 'results.csv')}")
    if ddp:
        dist.destroy_process_group()


def result_columns(domains):
    return (["run"] + [f"weight.{d}" for d in domains.trainable] + [f"loss.{d}" for d in domains.names]
            + ["seed", "tokens", "seconds", "failed"])


def collect(out, domains):
    """Rebuild results.csv from the per-run files (the source of truth) and the rows it already
    had. No lock (they fail on parallel file systems such as Lustre): processes that finish at the
    same time may each write it, the last rename wins, and every collect after the last run (at the
    end of each sweep process, --stage collect, fit) sees every file."""
    path = os.path.join(out, "results.csv")
    rows = {int(r["run"]): r for r in read_csv(path)} if os.path.exists(path) else {}
    for run_path in glob.glob(os.path.join(out, "runs", "run_*.json")):
        try:
            with open(run_path) as f:
                row = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{run_path}: cannot read it ({e}); delete it to retrain that run") from None
        rows[int(row["run"])] = row
    rows = [rows[k] for k in sorted(rows)]
    check_one_setting(path, rows)
    write_csv(path, rows, result_columns(domains))
    return rows


def check_results_schema(path, domains):
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if header and header != result_columns(domains):
        raise DataError(f"{path}: its columns do not match the domains of the data ({', '.join(domains.names)}); "
                        "it belongs to other data: use another --out")


def finished(out, runs=None):
    """(where, row) of each finished run of a sweep folder (of `runs`, ids; None: every one): its run
    file where there is one (which records its settings), else its row of results.csv."""
    results = os.path.join(out, "results.csv")
    found = {r["run"]: (results, r) for r in read_csv(results)} if os.path.exists(results) else {}
    for path in glob.glob(os.path.join(out, "runs", "run_*.json")):
        try:
            with open(path) as f:
                row = json.load(f)
            found[str(row["run"])] = (path, row)
        except (OSError, ValueError, TypeError, KeyError):
            continue  # collect names a broken run file
    wanted = None if runs is None else {str(r) for r in runs}
    return [v for k, v in sorted(found.items()) if wanted is None or k in wanted]


def check_finished(args, h, domains, done):
    """Finished runs are kept only where this command would train them alike: a sweep continued with
    other flags (--steps 9 where its runs had 4) must not put runs of two settings in one
    results.csv, nor the ladder's rungs mix scales. One line says which setting differs (run files
    record them: train.run_settings; older ones are compared by their seed and tokens). The ladder's
    rung at the sweep's scale must match the sweep's own runs too (args.same_as: the sweep's --out)."""
    from train import SETTING_FLAGS, run_settings, settings_differ
    settings = run_settings(h, domains.meta)
    flags = dict(SETTING_FLAGS, **getattr(args, "setting_flags", {}))
    checks = [(args.out, done, getattr(args, "rerun_remedy", None)
               or "pass {flag} {old} to continue that sweep, or use another --out for runs at these settings")]
    if getattr(args, "same_as", None):  # (first: the sweep's flags are the ones to pass)
        checks.insert(0, (args.same_as, None, "the ladder trains the chosen, natural and uniform mixtures at the "
                                              "sweep's own scale: pass {flag} {old} as the sweep did"))
    for out, runs, remedy in checks:
        for where, row in finished(out, runs):
            differ = settings_differ(row, settings, h)
            if differ is None:
                continue
            key, old, new = differ
            flag, value = (("the flags", "of that sweep") if key == "tokens" else ("--data", "of that sweep")
                           if key == "data" else (flags[key], old))
            todo = remedy.replace("{flag}", flag).replace("{old}", str(value))  # (a path may hold braces)
            if key == "tokens":
                raise DataError(f"{where}: run {row['run']} trained {old:,} tokens, this command {new:,} (--steps x "
                                f"--batch-size x --block-size); {todo}")
            if key == "data":
                raise DataError(f"{where}: run {row['run']} was trained on other data than --data {args.data} (another "
                                f"corpus, or one prepared again); {todo}")
            raise DataError(f"{where}: run {row['run']} was trained with {flags[key]} {old}, this command asks for "
                            f"{new}; {todo}")


def shard(args):
    """--shard I/N, or a Slurm job array's task (SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT), or 0/1."""
    spec, source = args.shard, "--shard"
    if spec is None and "SLURM_ARRAY_TASK_ID" in os.environ:
        if "SLURM_ARRAY_TASK_COUNT" not in os.environ:  # else every task would train the whole sweep
            raise DataError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not (an older Slurm?): "
                            "pass --shard $SLURM_ARRAY_TASK_ID/N, N the number of tasks")
        spec = f"{os.environ['SLURM_ARRAY_TASK_ID']}/{os.environ['SLURM_ARRAY_TASK_COUNT']}"
        source = "Slurm's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
    if spec is None:
        return 0, 1
    i, _, n = spec.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise DataError(f"{source} {spec}: expected I/N with 0 <= I < N (e.g. 3/8)"
                        + ("; number the array's tasks from 0 (--array=0-N-1)" if source != "--shard" else ""))
    return int(i), int(n)


def cpu_layout(args, device, ddp):
    """(processes, threads each) for a sweep on this machine. On CPU, one single-threaded process
    per core: faster than one process with a thread per core, and it does not collapse beside
    other work, where OpenMP threads wait for each other (bench/proxy_layouts.py, docs/stages.md). A
    user's OMP_NUM_THREADS sets the threads per process; --workers the processes."""
    import torch
    if device.type != "cpu" or ddp:
        return 1, torch.get_num_threads()
    cores = usable_cores()
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0)
    workers = args.workers or max(1, cores // (threads or 1))
    return workers, threads or (1 if workers > 1 else torch.get_num_threads())


def run_workers(args, n, threads, index, count):
    """Run this process's share of the sweep as n worker processes, shard (index + count j) of
    (count n) each; every finished run is a file, so they need no other coordination."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    procs = [subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "regmix.py"), *args.argv, "--stage", "proxy",
                               "--workers", "1", "--shard", f"{index + count * j}/{count * n}"],
                              env=env, preexec_fn=die_with_parent) for j in range(n)]
    failed = [j for j, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise DataError(f"proxy worker(s) {failed} failed (their error is printed above); "
                        "finished runs are kept, rerun the same command to continue")


def die_with_parent():
    """A killed sweep must not leave its workers training on: Linux's PR_SET_PDEATHSIG."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def target_loss(losses, tw):
    """The target's loss: the weighted mean of its domains' losses (see regression.target_weights)."""
    return sum(w * losses[d] for d, w in tw.items())


def loss_line(losses, tw):
    """A finished run in one phrase: the target's loss, or (no --target) the mean of every domain's."""
    if tw is None:
        return f"mean loss {sum(losses.values()) / len(losses):.4f} over {len(losses)} domains"
    return f"target {target_loss(losses, tw):.4f}"


def run_file(out, run, ext=".json"):
    return os.path.join(out, "runs", f"run_{int(run):05d}{ext}")
