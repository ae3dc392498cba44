"""
The language-model head's loss: mean cross-entropy of (h @ W.T) against the next tokens, with its
gradients. The head is most of a proxy's cost (79% of a 1M proxy's FLOPs: 6 x 256 x 50,304 per
token), so it gets a file of its own.

    cross_entropy(h, W, targets, fused=False)    what the model calls: one of the two ways below

1. Chunked (every device, and the reference): the logits of `chunk` rows at a time are computed,
   turned into softmax - onehot, and multiplied back, so no more than one chunk of logits exists.
   Under autocast every product that touches the vocabulary runs in the autocast dtype (bf16 on
   tensor cores, fp32 accumulation); softmax and the sums stay in fp32.
2. Fused (--head fused; CUDA with Triton, hidden widths 16..256, powers of two: the 1m and tiny
   presets): one Triton kernel computes each block of logits on chip twice, once for the log-sum-exp and once
   for softmax - onehot, and writes only that gradient, in bf16. The logits never reach memory;
   the two products back (grad_h = g @ W, grad_W = g.T @ h) are cuBLAS's.

Both compute the gradients in the forward pass (the loss's only consumer is backward, and the
logits are gone by then); backward scales them by the incoming gradient.
"""
import os

import torch


def compute_dtype(t):
    """The dtype the products run in: autocast's (bf16) where it is on, else the tensor's own."""
    dev = t.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else t.dtype


def softmax_grad(h, w, targets):
    """Reference of what the fused kernel computes for rows h (n, d) of one chunk: each row's loss
    (logsumexp - target logit) and g = softmax - onehot, the gradient of the row's loss by its
    logits. The product runs in h's dtype; softmax in fp32 (fp64 when h is fp64)."""
    acc = torch.promote_types(h.dtype, torch.float32)
    logp = torch.log_softmax((h @ w.T).to(acc), dim=-1)
    loss = -logp.gather(1, targets[:, None]).squeeze(1)
    g = logp.exp_()  # in place: the logits are the largest tensor of a proxy's step
    g[torch.arange(len(targets), device=g.device), targets] -= 1
    return loss, g.to(h.dtype)


class HeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (h @ weight.T) against targets, `chunk` rows at a time; `fused` picks
    the Triton kernel for the softmax step."""

    @staticmethod
    def forward(ctx, h, weight, targets, chunk, fused):
        n = targets.numel()
        cd = compute_dtype(h)
        acc = torch.promote_types(cd, torch.float32)  # fp32 sums, or fp64 in tests
        hd, wd = h.to(cd), weight.to(cd)  # one cast for the whole batch, not one per chunk
        need_grad = h.requires_grad or weight.requires_grad
        loss = torch.zeros((), dtype=acc, device=h.device)
        grad_h = torch.empty_like(h) if need_grad else None
        grad_w = torch.zeros_like(weight, dtype=acc) if need_grad else None
        step = softmax_grad_fused if fused else softmax_grad
        for i in range(0, n, chunk):
            hc = hd[i:i + chunk]
            rows, g = step(hc, wd, targets[i:i + chunk])  # g: d (summed loss) / d logits, dtype cd
            loss += rows.sum(dtype=acc)
            if need_grad:  # both products in cd: tensor cores under autocast, never an fp32 GEMM
                grad_h[i:i + chunk] = g @ wd
                if g.dtype == grad_w.dtype:  # fp32 (or the tests' fp64) throughout: accumulate in place
                    grad_w.addmm_(g.T, hc)
                else:  # bf16 product (fp32 accumulation inside it), added to the fp32 sum
                    grad_w += g.T @ hc
        if need_grad:  # the mean's 1/n, once on the small gradients rather than on every logit
            grad_h /= n
            grad_w /= n
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return loss / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out.to(grad_h.dtype), (grad_w * grad_out).to(ctx.weight_dtype), None, None, None


def balanced_chunk(n, max_rows):
    """Rows per chunk: as few chunks as max_rows allows, all of one size (no small ragged last one)."""
    k = -(-n // max(1, max_rows))
    return -(-n // k)


def cross_entropy(h, weight, targets, chunk=None, fused=False):
    """F.cross_entropy(h @ weight.T, targets): the mean next-token loss of the hidden states h
    (rows, d) under the output head `weight` (vocab, d), with its gradients. The same numbers as
    that line (tests/test_head.py), computed so that the logits of the whole batch never exist at
    once: `chunk` rows at a time (the default), or inside one Triton kernel (fused, --head fused).
    chunk=None: ~1 GiB of fp32 logits per chunk (chunked), ~4 GiB of bf16 gradient (fused: the 1m
    proxy's whole 16 x 2048 micro-batch in one launch, 256 row blocks of 128)."""
    if fused and not fused_ok(h, weight):
        raise ValueError("the fused head needs Triton, a CUDA tensor (or TRITON_INTERPRET=1) and a hidden width "
                         "of 16..256, a power of two")
    if chunk is None:
        chunk = balanced_chunk(targets.numel(), (1 << (31 if fused else 28)) // weight.size(0))
    return HeadCrossEntropy.apply(h, weight, targets, chunk, fused)


# -----------------------------------------------------------------------------
# the fused kernel (Triton): imported only where it can run

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter: the tests' way to run it
triton = None
if torch.cuda.is_available() or INTERPRET:  # (a CPU run does not pay for importing it)
    try:
        import triton
        import triton.language as tl
    except ImportError:  # the chunked path serves
        triton = None


def fused_width(d):
    """The kernel holds a row block's whole hidden state on chip: widths 16..256, powers of two."""
    return 16 <= d <= 256 and d & (d - 1) == 0


def fused_ok(h, weight):
    on_device = h.is_cuda or INTERPRET
    return triton is not None and on_device and fused_width(h.size(-1)) and compute_dtype(h) != torch.float64


if triton is not None:
    @triton.jit
    def _softmax_grad_kernel(h_ptr, w_ptr, t_ptr, g_ptr, loss_ptr, N, N_BUCKET, V: tl.constexpr,
                             D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
        """One program per BM rows: pass 1 streams W in blocks of BN rows and keeps a running max
        and sum of exp (online softmax); pass 2 recomputes each block of logits and writes
        softmax - onehot. Logits exist only in registers."""
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        rmask = rows < N
        dims = tl.arange(0, D)
        h = tl.load(h_ptr + rows[:, None] * D + dims[None, :], mask=rmask[:, None], other=0.0)
        tgt = tl.load(t_ptr + rows, mask=rmask, other=0)
        # the target's logit: one gathered row of W per row, in fp32
        wt = tl.load(w_ptr + tgt[:, None] * D + dims[None, :], mask=rmask[:, None], other=0.0)
        t_logit = tl.sum(h.to(tl.float32) * wt.to(tl.float32), axis=1)
        m = tl.full([BM], float("-inf"), tl.float32)
        s = tl.zeros([BM], tl.float32)
        for v0 in range(0, V, BN):
            cols = v0 + tl.arange(0, BN)
            w = tl.load(w_ptr + cols[:, None] * D + dims[None, :], mask=(cols < V)[:, None], other=0.0)
            x = tl.dot(h, tl.trans(w))  # (BM, BN), fp32 accumulation on tensor cores
            x = tl.where((cols < V)[None, :], x, float("-inf"))
            m_new = tl.maximum(m, tl.max(x, axis=1))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), axis=1)
            m = m_new
        lse = m + tl.log(s)
        tl.store(loss_ptr + rows, lse - t_logit, mask=rmask)
        for v0 in range(0, V, BN):
            cols = v0 + tl.arange(0, BN)
            w = tl.load(w_ptr + cols[:, None] * D + dims[None, :], mask=(cols < V)[:, None], other=0.0)
            x = tl.dot(h, tl.trans(w))
            g = tl.exp(x - lse[:, None]) - tl.where(cols[None, :] == tgt[:, None], 1.0, 0.0)
            tl.store(g_ptr + rows[:, None] * V + cols[None, :], g.to(g_ptr.dtype.element_ty),
                     mask=rmask[:, None] & (cols < V)[None, :])

    # on a GPU the block sizes are measured at the first call of each (V, D, rows rounded up to a power
    # of two): few rows want small blocks, to fill the GPU's multiprocessors. The interpreter takes one
    _CONFIGS = [triton.Config({"BM": bm, "BN": bn}, num_warps=w, num_stages=s)
                for bm, bn, w, s in ((128, 128, 8, 3), (128, 64, 8, 3), (64, 128, 4, 3), (128, 128, 8, 2))]
    _tuned_kernel = _softmax_grad_kernel if INTERPRET else triton.autotune(_CONFIGS, key=["V", "D", "N_BUCKET"])(_softmax_grad_kernel)

    @torch.library.custom_op("regmix::softmax_grad", mutates_args=())
    def _softmax_grad_op(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = h.contiguous(), w.contiguous()
        n, d = h.shape
        loss = torch.empty(n, dtype=torch.float32, device=h.device)
        g = torch.empty(n, w.size(0), dtype=h.dtype, device=h.device)
        if INTERPRET:
            _tuned_kernel[(triton.cdiv(n, 16),)](h, w, targets, g, loss, n, 0, V=w.size(0), D=d, BM=16, BN=32)
        else:
            _tuned_kernel[lambda meta: (triton.cdiv(n, meta["BM"]),)](h, w, targets, g, loss, n, triton.next_power_of_2(n),
                                                                      V=w.size(0), D=d)
        return loss, g

    @_softmax_grad_op.register_fake
    def _(h, w, targets):  # shapes for torch.compile, which treats the op as opaque
        return h.new_empty(h.size(0), dtype=torch.float32), h.new_empty(h.size(0), w.size(0))


def softmax_grad_fused(h, w, targets):
    """softmax_grad through the Triton kernel: same results, the logits never written."""
    return _softmax_grad_op(h, w, targets)
