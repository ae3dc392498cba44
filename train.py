"""
The training loop of RegMix: one loop for every proxy and for the target model, with the paper's
recipes, the learning-rate schedule, gradient accumulation, DDP, checkpoints and evaluation on
fixed validation windows. regmix.py runs it per stage.
"""
import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from data import Batches, DataError, atomic_write_text, to_device, val_windows
from model import GPT, config_for


# -----------------------------------------------------------------------------
# recipes: the paper's numbers, per stage; `--model tiny` swaps in the CPU column

RECIPES = {
    # the 1M proxies (sail-sg/regmix, mixture_config/synthesize_mixture.py): constant 4e-4 after warmup
    "proxy": dict(steps=1000, batch_size=512, block_size=2048, micro_batch_size=16, warmup=100,
                  lr=4e-4, min_lr=4e-4, eval_seqs=64, n_mixtures=512),
    # the 1B target: cosine from 4e-4 to 1e-5, 25,000 steps x 512 x 2048 = 25B tokens
    "train": dict(steps=25000, batch_size=512, block_size=2048, micro_batch_size=16, warmup=1000,
                  lr=4e-4, min_lr=1e-5, eval_seqs=64),
}
TINY_RECIPES = {
    # sized so that `--stage all` on the embedded corpus takes minutes on 2 CPU cores (README)
    "proxy": dict(steps=20, batch_size=16, block_size=128, micro_batch_size=16, warmup=5,
                  lr=2e-3, min_lr=2e-3, eval_seqs=16, n_mixtures=64),
    "train": dict(steps=300, batch_size=32, block_size=128, micro_batch_size=32, warmup=30,
                  lr=2e-3, min_lr=1e-4, eval_seqs=32),
}
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
    table = (TINY_RECIPES if args.model == "tiny" else RECIPES)[stage]
    dtype = args.dtype if args.dtype != "auto" else "bfloat16" if pick_device(args.device).type == "cuda" else "float32"
    h = Hparams(model=args.model, weight_decay=args.weight_decay, grad_clip=args.grad_clip, seed=args.seed, dtype=dtype,
                **{k: getattr(args, k) if getattr(args, k) is not None else table[k] for k in HPARAMS})
    if h.batch_size % h.micro_batch_size:  # fail before any work; train_run checks again with the ranks
        raise DataError(f"--batch-size {h.batch_size} must be a multiple of --micro-batch-size {h.micro_batch_size}")
    return h


def print0(*a, **k):
    if int(os.environ.get("RANK", 0)) == 0:
        print(*a, **k, flush=True)


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


def build_model(h, domains, device, compile_model):
    """The model and the module the training step calls (compiled once, reused by every proxy:
    a fresh torch.compile per proxy would recompile each time, and stop compiling after 8)."""
    model = GPT(config_for(h.model, domains.vocab_size, h.block_size)).to(device)
    return model, (torch.compile(model) if compile_model else model)


def train_run(h, domains, weights, device, models, ckpt_path=None, resume=False,
              ckpt_every=0, eval_every=0, log_path=None, ddp=False, progress=None):
    """Train one model on one mixture; return its final per-domain validation losses.

    Used for every proxy and for the target. `models` comes from build_model and is
    re-initialised here. With ddp, each rank draws its own batches (seed + rank) and gradients
    are averaged. Returns a dict with 'losses', 'tokens', 'seconds', 'failed'."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    accum = h.batch_size // (h.micro_batch_size * world)
    if accum < 1 or h.batch_size % (h.micro_batch_size * world):
        raise DataError(f"--batch-size {h.batch_size} must be a multiple of --micro-batch-size x ranks "
                        f"({h.micro_batch_size} x {world})")
    raw, model = models
    torch.manual_seed(h.seed)  # every proxy starts from the same weights: only the mixture differs
    raw.reset_parameters()
    raw.zero_grad(set_to_none=True)  # a reused model may hold gradients from whatever ran before
    opt = make_optimizer(raw, h, device)
    batches = Batches(domains, weights, h.micro_batch_size, h.block_size, seed=h.seed + rank, device=device)
    windows = {d: val_windows(domains.val[d], h.eval_seqs, h.block_size, d) for d in domains.names}
    step = 0
    if resume and ckpt_path and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck["hparams"] != asdict(h) or ck["weights"] != list(map(float, batches.p)):
            raise DataError(f"{ckpt_path} was trained with other settings or another mixture; "
                            "use the same flags, or another --name / --out")
        raw.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        batches.load_state(ck["data_rng"][rank])
        step = ck["step"]
        if log_path and rank == 0:  # drop log lines written after the checkpoint
            with open(log_path) as f:
                lines = f.readlines()
            atomic_write_text(log_path, "".join(lines[:1] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= step]))
        print0(f"resumed from {ckpt_path} at step {step}")
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = autocast(device, h)
    tokens_per_step = h.batch_size * h.block_size

    def save_checkpoint():
        states = [data_state]
        if ddp:
            states = [None] * world
            dist.all_gather_object(states, data_state)
        if rank == 0:
            ck = dict(hparams=asdict(h), weights=list(map(float, batches.p)), step=step,
                      optimizer=opt.state_dict(), data_rng=states, **raw.checkpoint())
            tmp = f"{ckpt_path}.tmp{os.getpid()}"
            torch.save(ck, tmp)
            os.replace(tmp, ckpt_path)

    log = open(log_path, "a") if log_path and rank == 0 else None
    t0 = time.time()
    data_state = batches.state()
    x, y = batches.next()
    while step < h.steps:
        t_step = time.time()
        lr = get_lr(step, h)
        for g in opt.param_groups:
            g["lr"] = lr
        total = 0.0
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
        total = float(total)
        if not math.isfinite(total):
            if log:
                log.close()
            return dict(losses={d: float("nan") for d in domains.names}, tokens=step * tokens_per_step,
                        seconds=time.time() - t0, failed=f"loss {total} at step {step}")
        dt = time.time() - t_step
        tps = tokens_per_step / dt
        mfu = raw.estimate_mfu(tps, device)
        if log:
            log.write(f"{step},{total:.6f},{lr:.3e},{tps:.0f},{'' if mfu is None else f'{mfu:.4f}'}\n")
        if progress:
            progress(step, total, lr, tps, mfu)
        if ckpt_path and ckpt_every and (step % ckpt_every == 0 or step == h.steps):
            if log:
                log.flush()
            save_checkpoint()
        if eval_every and step % eval_every == 0 and step < h.steps:
            print0(f"step {step}: val " + " ".join(f"{d} {v:.4f}" for d, v in evaluate(raw, windows, h, device, amp).items()))
    if log:
        log.close()
    losses = evaluate(raw, windows, h, device, amp)
    failed = "" if all(math.isfinite(v) for v in losses.values()) else "non-finite validation loss"
    return dict(losses=losses, tokens=step * tokens_per_step, seconds=time.time() - t0, failed=failed)


def use_compile(args, device):
    return device.type == "cuda" if args.compile is None else args.compile
