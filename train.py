"""
The training loop of RegMix: one loop for every proxy and for the target model, with each
preset's recipe (presets.py), the learning-rate schedule, gradient accumulation, DDP, checkpoints
and evaluation on fixed validation windows. regmix.py runs it per stage.
"""
import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.distributed as dist

from data import Batches, DataError, atomic_write_text, print0, to_device, val_windows
from model import GPT, ModelConfig, config_for
from presets import recipe


HPARAMS = ("steps", "batch_size", "block_size", "micro_batch_size", "warmup", "lr", "min_lr", "eval_seqs")


@dataclass
class Hparams:
    """Everything that decides a training run's result (saved in checkpoints and run files)."""
    model: str
    steps: int
    batch_size: int
    block_size: int
    micro_batch_size: int
    warmup: int
    lr: float
    min_lr: float
    eval_seqs: int
    weight_decay: float
    grad_clip: float
    seed: int
    dtype: str = "float32"  # autocast dtype of matmuls: bfloat16 (CUDA's default) or float32


def hparams(args, stage):
    table = recipe(args.model)[stage]  # the preset's recipe (presets.py); each flag given overrides it
    dtype = args.dtype if args.dtype != "auto" else "bfloat16" if pick_device(args.device).type == "cuda" else "float32"
    h = Hparams(model=args.model, weight_decay=args.weight_decay, grad_clip=args.grad_clip, seed=args.seed, dtype=dtype,
                **{k: getattr(args, k) if getattr(args, k) is not None else table[k] for k in HPARAMS})
    if h.batch_size % h.micro_batch_size:  # fail before any work; train_run checks again with the ranks
        raise DataError(f"--batch-size {h.batch_size} must be a multiple of --micro-batch-size {h.micro_batch_size}")
    return h


# The settings of a proxy's run that its run file records (run_settings), and the flag that sets
# each: a sweep continued with other flags must not mix runs of two settings in one results.csv.
# (micro_batch_size only splits a step to fit a device's memory: machines may differ in it.)
SETTING_FLAGS = dict(model="--model", steps="--steps", batch_size="--batch-size", block_size="--block-size",
                     warmup="--warmup", lr="--lr", min_lr="--min-lr", eval_seqs="--eval-seqs",
                     weight_decay="--weight-decay", grad_clip="--grad-clip", seed="--seed", dtype="--dtype", data="--data")


def run_settings(h, meta):
    """What decides a proxy's result, as its run file records it: the training settings of h and the
    data (a fingerprint of its meta.json's tokenizer and domains: another corpus, or one prepared
    again with other documents, differs)."""
    tokenizer = {k: v for k, v in meta["tokenizer"].items() if k != "source"}  # (where it was read from: no matter)
    text = json.dumps(dict(tokenizer=tokenizer, domains=meta["domains"]), sort_keys=True)
    return dict({k: v for k, v in asdict(h).items() if k in SETTING_FLAGS},
                data=hashlib.sha256(text.encode()).hexdigest()[:16])


def settings_differ(row, settings, h):
    """(setting, recorded, asked) for the first setting in which a finished run (its run file or its
    row of results.csv) differs from `settings` (run_settings), else None. What a run recorded before
    the settings were (older run files, rows of results.csv) is compared as far as it goes: its seed,
    and its tokens unless it failed (a failed run stopped early)."""
    recorded = row.get("settings")
    if isinstance(recorded, dict):
        return next(((k, recorded[k], v) for k, v in settings.items() if k in recorded and recorded[k] != v), None)
    if str(row.get("seed", "")).lstrip("-").isdigit() and int(row["seed"]) != h.seed:
        return "seed", int(row["seed"]), h.seed
    tokens = h.steps * h.batch_size * h.block_size
    if not row.get("failed") and str(row.get("tokens", "")).isdigit() and int(row["tokens"]) != tokens:
        return "tokens", int(row["tokens"]), tokens
    return None


# -----------------------------------------------------------------------------
# training: one loop for proxies and the target

def get_lr(step, h):
    """Linear warmup, then cosine from lr to min_lr (constant when they are equal: the proxies)."""
    if step < h.warmup:
        return h.lr * (step + 1) / h.warmup
    progress = (step - h.warmup) / max(1, h.steps - h.warmup)
    return h.min_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (h.lr - h.min_lr)


@torch.no_grad()
def evaluate(model, windows, h, device, autocast):
    """Mean validation loss of every domain on its fixed windows."""
    model.eval()
    losses = {}
    for name, w in windows.items():
        total = 0.0
        for i in range(0, len(w), h.micro_batch_size):
            x, y = to_device(w[i:i + h.micro_batch_size], device)
            with autocast:
                total += model(x, y).item() * len(x)
        losses[name] = total / len(w)
    model.train()
    return losses


def pick_device(arg):
    if arg != "auto":
        return torch.device(arg)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


# The device-specific pieces, one small function each. CUDA-only paths (pinned-memory copies in
# data.to_device, NCCL, fused AdamW) cannot run on a CPU: bench/gpu_check.sh exercises them on a GPU.
# Everything else, bf16 autocast and torch.compile included, runs the same code on CPU (tests).

def autocast(device, h):
    """bf16 autocast where h.dtype asks for it: the paper's mixed precision on CUDA, and the same
    code path on CPU (torch.autocast("cpu")); fp32 otherwise."""
    if h.dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def make_optimizer(model, h, device):
    """AdamW (0.9, 0.95); PyTorch's fused CUDA kernel on GPUs (one launch for every parameter)."""
    return torch.optim.AdamW(model.parameters(), lr=h.lr, betas=(0.9, 0.95), weight_decay=h.weight_decay,
                             fused=device.type == "cuda")


def init_distributed(device):
    """NCCL between GPUs, gloo between CPU processes (and in the tests)."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def build_model(h, domains, device, compile_model, head="chunked"):
    """The model and the module the training step calls (compiled once, reused by every proxy:
    a fresh torch.compile per proxy would recompile each time, and stop compiling after 8).
    head: the loss head (head.py), chunked or fused."""
    model = GPT(config_for(h.model, domains.vocab_size, h.block_size)).to(device)
    model.head = check_head(head, model.cfg.n_embd, device)
    if device.type == "cuda":
        # TF32 for whatever product stays fp32 (bf16 autocast covers the rest)
        torch.set_float32_matmul_precision("high")
    return model, (torch.compile(model) if compile_model else model)


def check_head(choice, width, device):
    """--head CHOICE, or a clear error where the fused kernel cannot run."""
    import head
    if choice != "fused":
        return choice
    if device.type != "cuda":
        why = "it needs a CUDA device"
    elif head.triton is None:
        why = "it needs Triton (pip install triton)"
    elif not head.fused_width(width):
        why = f"it handles hidden widths 16..256 that are powers of two, not {width}"
    else:
        return choice
    raise DataError(f"--head fused: {why}; use --head chunked")


@dataclass
class RunOptions:
    """What a run does besides training: its checkpoint and log (a target run; proxies keep
    neither), how often it writes and evaluates, and the device's peak FLOP/s for MFU."""
    ckpt_path: str = None
    log_path: str = None
    resume: bool = False
    ckpt_every: int = 0
    eval_every: int = 0
    log_every: int = 1
    peak_flops: float = None


def train_run(h, domains, weights, device, models, opts=None, ddp=False, progress=None):
    """Train one model on one mixture; return its final per-domain validation losses.

    Used for every proxy and for the target. `models` comes from build_model and is
    re-initialised here. With ddp, each rank draws its own batches (seed + rank) and gradients
    are averaged. The loss leaves the device only at log, checkpoint and evaluation steps (a sync, as in
    nanoGPT), averaged over the ranks, so that a non-finite loss stops every rank at the same
    step. Returns a dict: 'losses' (domain -> final validation loss), 'tokens', 'seconds', 'failed'
    (a reason, or empty), 'startup_seconds' (to the end of the first step: compilation) and
    'train_tokens_per_s' (the steps after it)."""
    o = opts or RunOptions()
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    accum = micro_steps(h, world)
    raw, model = models
    torch.manual_seed(h.seed)  # every proxy starts from the same weights: only the mixture differs
    raw.reset_parameters()
    raw.zero_grad(set_to_none=True)  # a reused model may hold gradients from whatever ran before
    opt = make_optimizer(raw, h, device)
    batches = Batches(domains, weights, h.micro_batch_size, h.block_size, seed=h.seed + rank, device=device)
    windows = {d: val_windows(domains.val[d], h.eval_seqs, h.block_size, d) for d in domains.names}
    step = resume_from(o, h, raw, opt, batches, device, rank, world) if o.resume else 0
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = autocast(device, h)
    log = Log(o, h, raw, opt, batches, device, ddp, world, step, progress, windows, amp)
    x, y = batches.next()
    while step < h.steps and not log.failed:
        lr = get_lr(step, h)
        for g in opt.param_groups:
            g["lr"] = lr
        total = torch.zeros((), device=device)
        for micro in range(accum):
            sync = contextlib.nullcontext() if not ddp or micro == accum - 1 else model.no_sync()
            with sync, amp:
                loss = model(x, y) / accum
            if micro == accum - 1:
                data_state = batches.state()  # a checkpoint resumes from the batch drawn next
            x, y = batches.next()  # fetch the next batch while the GPU works on this one
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        log.after_step(step, total, lr, data_state)  # logging, checkpoints, evaluation: where asked
    log.stop()
    return log.result(step, None if log.failed else evaluate(raw, windows, h, device, amp))


def micro_steps(h, world):
    """Gradient accumulation: forward passes per optimizer step on each rank."""
    accum = h.batch_size // (h.micro_batch_size * world)
    if accum < 1 or h.batch_size % (h.micro_batch_size * world):
        raise DataError(f"--batch-size {h.batch_size} must be a multiple of --micro-batch-size x ranks "
                        f"({h.micro_batch_size} x {world})")
    return accum


class Log:
    """What train_run does between steps besides training: the log line (tokens/s, MFU), checkpoints
    and evaluations where RunOptions ask for them, the stop at a non-finite loss, and the timing of
    the steady state apart from start-up (compilation, autotuning: the first step)."""

    def __init__(self, o, h, raw, opt, batches, device, ddp, world, step, progress, windows, amp):
        self.o, self.h, self.raw, self.opt, self.batches, self.device = o, h, raw, opt, batches, device
        self.ddp, self.world, self.progress, self.windows, self.amp = ddp, world, progress, windows, amp
        self.file = open(o.log_path, "a") if o.log_path and (not ddp or dist.get_rank() == 0) else None
        self.t0 = self.t_log = time.time()
        self.t_first, self.first_step = None, step
        self.logged, self.failed = step, ""
        self.tokens_per_step = h.batch_size * h.block_size  # all ranks together

    def after_step(self, step, total, lr, data_state):
        o, h = self.o, self.h
        if self.t_first is None:  # start-up (compilation, autotuning) ends with the first step
            self.t_first, self.first_step = synchronized_time(self.device), step
        checkpoint = o.ckpt_path and o.ckpt_every and (step % o.ckpt_every == 0 or step == h.steps)
        evaluation = o.eval_every and step % o.eval_every == 0 and step < h.steps
        if not (step % o.log_every == 0 or step == h.steps or checkpoint or evaluation):
            return
        loss_now = mean_over_ranks(total, self.ddp, self.world)
        if not math.isfinite(loss_now):
            self.failed = f"loss {loss_now} at step {step}"  # the loop ends here, on every rank at once
            return
        tps = (step - self.logged) * self.tokens_per_step / (time.time() - self.t_log)
        mfu = self.raw.estimate_mfu(tps / self.world, self.device, o.peak_flops)  # one device's share against its peak
        if self.file:
            self.file.write(f"{step},{loss_now:.6f},{lr:.3e},{tps:.0f},{'' if mfu is None else f'{mfu:.4f}'}\n")
            self.file.flush()
        if self.progress:
            self.progress(step, loss_now, lr, tps, mfu)
        if checkpoint:
            save_checkpoint(o.ckpt_path, h, self.raw, self.opt, self.batches.p, step, data_state, self.ddp)
        if evaluation:
            losses = evaluate(self.raw, self.windows, h, self.device, self.amp)
            print0(f"step {step}: val " + " ".join(f"{d} {v:.4f}" for d, v in losses.items()))
        self.t_log, self.logged = time.time(), step  # the next interval's speed excludes checkpoints and evaluation

    def stop(self):
        """Training is over: the log file closed, the clock read before the final evaluation."""
        if self.file:
            self.file.close()
        self.t_end = synchronized_time(self.device)

    def result(self, step, losses):
        """train_run's result: the final losses (NaN where the run failed) and its timings."""
        failed, t_end = self.failed, self.t_end
        if losses is None:
            losses = {d: float("nan") for d in self.windows}
        elif not all(math.isfinite(v) for v in losses.values()):
            failed = "non-finite validation loss"
        # steady state: the steps after the first, so that layouts and machines compare without start-up
        t_first, first = self.t_first, self.first_step
        steady = (step - first) * self.tokens_per_step / (t_end - t_first) if t_first and step > first else None
        return dict(losses=losses, tokens=step * self.tokens_per_step, seconds=time.time() - self.t0, failed=failed,
                    startup_seconds=None if t_first is None else t_first - self.t0, train_tokens_per_s=steady)


def synchronized_time(device):
    """The wall clock once the device has finished what was queued (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.time()


def mean_over_ranks(total, ddp, world):
    """The step's loss as a number: one device sync, the mean over the ranks (a NaN on any rank
    is a NaN on every rank, so all of them stop at the same step)."""
    if ddp:
        dist.all_reduce(total)
        total = total / world
    return float(total)


def save_checkpoint(path, h, raw, opt, weights, step, data_state, ddp):
    """Model, optimizer and every rank's batch stream (rank 0 writes them, atomically)."""
    states = [data_state]
    if ddp:
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, data_state)
    if not ddp or dist.get_rank() == 0:
        ck = dict(hparams=asdict(h), weights=list(map(float, weights)), step=step, optimizer=opt.state_dict(),
                  data_rng=states, **raw.checkpoint())
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(ck, tmp)
        os.replace(tmp, path)


def load_checkpoint(path, device):
    """A checkpoint written by save_checkpoint, or a clear error for anything else. Loaded with
    weights_only=True: tensors, numbers, strings, lists and dicts only, so that a crafted file (a
    colleague's proxy, a download) cannot run code when it is read, as a full pickle can."""
    import pickle
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:  # what weights_only refuses: code or objects other than data
        raise DataError(f"{path}: refused: it holds more than tensors and plain data ({str(e).splitlines()[0][:200]}); "
                        "this project's checkpoints never do, so it was not written by it: do not load it") from None
    except Exception as e:  # truncated, or not a torch file at all: torch raises many kinds
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__}); it may be truncated: "
                        "restore it or delete it to start over") from None
    if not isinstance(ck, dict) or not {"config", "model"} <= set(ck) or not isinstance(ck["config"], dict):
        raise DataError(f"{path}: a torch file, but not a checkpoint of this project (no model config or weights)")
    keys = {f.name for f in fields(ModelConfig)}
    need = keys - {"norm_eps", "rope_base"}  # (vocab_size has a default too, but export reads it from the file)
    missing, unknown = sorted(need - set(ck["config"])), sorted(set(ck["config"]) - keys)
    if missing or unknown:
        raise DataError(f"{path}: its model config " + (f"lacks {', '.join(missing)}" if missing else
                        f"has unknown keys {', '.join(unknown)}") + ": not a checkpoint of this project's model")
    check_weights(path, ck)
    return ck


def check_weights(path, ck):
    """The checkpoint's tensors must be those its config describes, name and shape: an embedding of
    the wrong shape would be exported without a word (and transformers then refuse the folder) or
    crash --resume inside load_state_dict. The model is built on the meta device: shapes, no memory."""
    try:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in GPT(ModelConfig(**ck["config"])).state_dict().items()}
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: its model config cannot build a model ({e}): not a checkpoint of this project's "
                        "model, or edited") from None
    model = ck["model"] if isinstance(ck["model"], dict) else {}
    for name, shape in want.items():
        have = model.get(name)
        if not isinstance(have, torch.Tensor) or tuple(have.shape) != shape:
            got = f"shape {tuple(have.shape)}" if isinstance(have, torch.Tensor) else "no tensor"
            raise DataError(f"{path}: {name} has {got}, its config says {shape}: the checkpoint is corrupt or was "
                            "edited; restore it, or train again")
    extra = sorted(set(model) - set(want))
    if extra:
        raise DataError(f"{path}: holds {extra[0]}, which its model config has no place for: not a checkpoint of this "
                        "project's model, or edited")


def resume_from(o, h, raw, opt, batches, device, rank, world):
    """Continue from o.ckpt_path where it exists: weights, optimizer and this rank's batch stream;
    log lines written after the checkpoint are dropped. Returns the step to continue from."""
    if not o.ckpt_path or not os.path.exists(o.ckpt_path):
        return 0
    ck = load_checkpoint(o.ckpt_path, device)
    if ck.get("hparams") != asdict(h) or ck.get("weights") != list(map(float, batches.p)):
        raise DataError(f"{o.ckpt_path} was trained with other settings or another mixture; "
                        "use the same flags, or another --name / --out")
    if ck["config"] != asdict(raw.cfg):  # the same flags on other data (another vocabulary): another model
        raise DataError(f"{o.ckpt_path} holds a model of another shape than these flags build on this data (another "
                        "--data or vocabulary?); use the data it was trained on, or another --name / --out")
    if len(ck["data_rng"]) != world:
        raise DataError(f"{o.ckpt_path} was written by {len(ck['data_rng'])} rank(s); resume it with as many, not {world}")
    raw.load_state_dict(ck["model"])
    try:  # (the model's tensors were checked on load; these are the rest a hand or a bad copy may break)
        opt.load_state_dict(ck["optimizer"])
        batches.load_state(ck["data_rng"][rank])
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise DataError(f"{o.ckpt_path}: its optimizer or batch state does not fit this run ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:100]}); restore it, or delete it to start over") from None
    if o.log_path and rank == 0:
        with open(o.log_path) as f:
            lines = f.readlines()
        atomic_write_text(o.log_path, "".join(lines[:1] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= ck["step"]]))
    print0(f"resumed from {o.ckpt_path} at step {ck['step']}")
    return ck["step"]


class NoTracker:
    """What tracker() gives without --wandb: takes every call, records nothing."""

    def __init__(self):
        self.summary = {}

    def log(self, *args, **kwargs):
        pass

    def finish(self):
        pass


def tracker(project, out, name, config, rank_zero_only=True):
    """--wandb PROJECT: a Weights & Biases run, imported only then (WANDB_MODE=offline needs no
    network). Training logs from rank 0 only; every sweep process logs its own proxies. The CSV and
    JSON files stay the source of truth."""
    if not project or (rank_zero_only and int(os.environ.get("RANK", 0)) != 0):
        return NoTracker()
    try:
        import wandb
    except ImportError:
        raise DataError("--wandb needs the wandb package: pip install wandb") from None
    return wandb.init(project=project, name=name, group=os.path.abspath(out), config=config, reinit="create_new")


def use_compile(args, device):
    return device.type == "cuda" if args.compile is None else args.compile
