"""``torch.ops.tamdeploy.tam_aggregate``: TAM's local activation and adaptive temporal conv, fused.

Contract (DESIGN.md), with P = (K - 1) // 2 and out-of-range terms zero::

    Y[n*T + t, c] = sum_j kernel[n, c, j] * local[n, c, t + j - P] * X[n*T + t + j - P, c]

The default implementation is made of plain tensor ops, so it runs on every device. A faster
kernel for one device registers over it without touching callers::

    from tamdeploy.plugins.tam_op import tam_aggregate
    tam_aggregate.register_kernel("cuda")(triton_tam_aggregate)

Why it is shaped like this (2-core AMD EPYC VM, torch 2.14, fp32, N=1 T=8 K=3; medians of
interleaved runs on a quiet machine, see benchmarks/bench_tam_op.py): accumulating K shifted
slices of X viewed [N, T, C, H*W] into the output (one ``mul`` and K-1 ``addcmul_`` on views)
allocates one output and never copies X. At layer1 size it ran 2.0-2.9x faster than the
reference's permute + grouped conv with freed memory kept mapped, 3-8x with glibc's default
trimming (the reference's four temporaries fault their pages in again), and 4.8x back to back with
a warm cache; 1.8-2.7x at layer2, 1.5-2.2x at layer3, 1.3-1.9x at layer4, where per-call costs
dominate. A loop over frames instead (3 ops per frame) took 1.3-2.4x the time of this, an einsum
with a banded T x T matrix 4-18x.
"""

from __future__ import annotations

import torch

from tamdeploy.plugins.contract import check_tam_inputs

TAM_OP_QUALNAME = "tamdeploy::tam_aggregate"


def tam_aggregate_fused(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """The op's default implementation, callable without the dispatcher (validates its inputs)."""
    check_tam_inputs(x, kernel, local)
    if x.dtype in (torch.float16, torch.bfloat16):
        # Accumulate in fp32: the result is then correctly rounded, and on CPU the upcast costs
        # less than half-precision elementwise kernels do.
        return _accumulate_shifted(x.float(), kernel.float(), local.float()).to(x.dtype)
    return _accumulate_shifted(x, kernel, local)


def _accumulate_shifted(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    n, c, k = kernel.shape
    t = local.shape[-1]
    p = (k - 1) // 2
    kernel_t = kernel.transpose(1, 2)  # [N, K, C]
    local_t = local.transpose(1, 2)  # [N, T, C]
    xv = x.contiguous().view(n, t, c, x.shape[2] * x.shape[3])
    out = torch.empty_like(xv)
    torch.mul(xv, (local_t * kernel_t[:, p : p + 1]).unsqueeze(-1), out=out)
    for j in range(k):
        shift = j - p
        lo, hi = max(0, -shift), min(t, t - shift)  # output frames whose source frame t+shift exists
        if shift == 0 or lo >= hi:
            continue
        weight = local_t[:, lo + shift : hi + shift] * kernel_t[:, j : j + 1]  # [N, hi-lo, C]
        out[:, lo:hi].addcmul_(xv[:, lo + shift : hi + shift], weight.unsqueeze(-1))
    return out.view(x.shape)


@torch.library.custom_op(TAM_OP_QUALNAME, mutates_args=())
def tam_aggregate(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Y [N*T, C, H, W] from x [N*T, C, H, W], kernel [N, C, K] (K odd) and local [N, C, T]."""
    return tam_aggregate_fused(x, kernel, local)


@tam_aggregate.register_fake
def _tam_aggregate_fake(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    check_tam_inputs(x, kernel, local)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@tam_aggregate.register_kernel("cuda")
def tam_aggregate_cuda(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """The op on CUDA: the Triton kernel when Triton is installed and the inputs are what it does (fp32,
    fp16, bf16; K <= 7), else the fused ops. ``triton_tam`` is imported on the first CUDA call (it imports
    no Triton itself), so CPU-only processes never load it."""
    from tamdeploy.plugins.triton_tam import triton_handles, triton_tam_aggregate

    if triton_handles(x, kernel):
        return triton_tam_aggregate(x, kernel, local)
    return tam_aggregate_fused(x, kernel, local)
