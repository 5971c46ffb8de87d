"""TAM aggregation as one Triton kernel: the CUDA implementation of ``tamdeploy::tam_aggregate`` and
the kernel the TensorRT plugin embeds.

Contract (DESIGN.md), P = (K - 1) // 2, out-of-range terms zero::

    Y[n*T + t, c] = sum_j kernel[n, c, j] * local[n, c, t + j - P] * X[n*T + t + j - P, c]

Design for bandwidth: one program per (clip n, block of elements of a frame). A block is a run of
one channel's H*W (large frames: the gates are scalars of the program) or of the whole C*H*W of a
frame (small frames: no lanes wasted on a power-of-two block; the gates are gathered per element
from cache). The program loads its block of all T frames first, so T loads are in flight at once,
then walks them in order: frame s, scaled by ``local[n, c, s]``, enters a window of the last K
scaled frames held in registers; as soon as the window covers frame t + P, output frame t is the
K-tap dot product of the window with ``kernel[n, c, :]``. Every X element is read once and every Y
element written once, in contiguous runs; T and K are compile-time constants (the loops unroll; the
window is a tuple of K register blocks). Loads are upcast to fp32, products accumulate in fp32 and
the result is rounded once to the output type (fp16 in, fp16 out).

Importing this module does not import Triton: the kernel is built on first use. That keeps
``import tamdeploy`` free of Triton on machines where no CUDA tensor ever reaches the op, and
lets ``TRITON_INTERPRET=1`` (read when the kernel is built) take effect even if the variable is set
after import. The op's CUDA implementation (``tam_op.tam_aggregate_cuda``) imports this module on the
first CUDA call and uses the kernel where ``triton_handles`` says so; it falls back to the portable
implementation when Triton is missing or the inputs are outside what the kernel does (dtypes other than
fp32/fp16/bf16, K > 7).

AOT (for the TensorRT plugin): ``compile_tam_kernel`` compiles the kernel to PTX for a
``GPUTarget`` without needing a GPU, and removes the two hidden scratch-buffer parameters that
Triton >= 3.3 appends to every kernel (``global_scratch``, ``profile_scratch``) when the kernel uses
neither: a TensorRT AOT plugin launches the kernel with exactly its inputs, extra scalars and
outputs, nothing after them.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from tamdeploy.errors import TamdeployError
from tamdeploy.plugins.contract import check_tam_inputs

MAX_KERNEL_SIZE = 7
# torch dtype -> Triton pointer element type, for the dtypes the kernel takes
TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
# the kernel's runtime parameters, in order: TensorRT's AOT launch passes inputs, then the extra
# int32 scalars, then outputs
KERNEL_PARAMS = ("x_ptr", "kernel_ptr", "local_ptr", "C", "HW", "y_ptr")
SCALAR_PARAMS = ("C", "HW")
HIDDEN_PARAMS = ("global_scratch", "profile_scratch")


class TritonKernelError(TamdeployError):
    """The Triton kernel cannot be built or compiled for the request (dtype, K, target, Triton version)."""


# --- launch configuration: pure, no Triton, no CUDA ----------------------------------------------------


@dataclass(frozen=True)
class LaunchConfig:
    """Elements per program (``block``, a power of two), warps per program, and what a block covers:
    one channel's H*W (``flat`` False) or a run of the C*H*W elements of a frame (``flat`` True)."""

    block: int
    num_warps: int
    flat: bool = False


# Measured on an H100 (benchmarks/bench_triton_tam.py, N=8, T=8, K=3, GPU time in a CUDA graph):
# per-channel blocks reach 95-99.5% of a device copy for 56x56 and 28x28 frames; for 14x14 and 7x7
# a power-of-two block wastes lanes or holds one warp (the per-channel kernel reached 47-78%), and
# flat blocks of 512 reach 80-85%.
FLAT_BELOW_HW = 512
FLAT_LAUNCH = LaunchConfig(block=512, num_warps=4, flat=True)
DEFAULT_LAUNCH = FLAT_LAUNCH  # H*W unknown when compiling: flat blocks waste no lanes at any size


def launch_config(hw: int | None) -> LaunchConfig:
    """The launch for frames of ``hw`` = H*W elements per channel (None: not known when compiling).

    Frames of 512 elements and more: one channel's frame per block, in as few programs as possible
    (blocks up to 1024 elements, 4 contiguous elements per thread, 4 warps), so a 56x56 frame takes
    4 programs. Smaller frames: flat blocks of 512 elements across channels.
    """
    if hw is None:
        return DEFAULT_LAUNCH
    if hw < 1:
        raise TritonKernelError(f"H*W must be >= 1, got {hw}")
    if hw < FLAT_BELOW_HW:
        return FLAT_LAUNCH
    return LaunchConfig(block=min(1024, 1 << (hw - 1).bit_length()), num_warps=4)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def launch_grid(n: Any, c: Any, hw: Any, config: LaunchConfig,
                cdiv: Callable[[Any, int], Any] = ceil_div) -> tuple[Any, Any, int]:
    """Grid (x, y, z) for N clips, C channels and H*W = ``hw``: x = the blocks of one frame, y = N.

    Works on ints and on symbolic sizes (TensorRT's ``trtp.ShapeExpr`` with ``cdiv=trtp.cdiv``).
    Axis x may hold up to 2**31 - 1 programs and axis y 65535, so the batch goes on y.
    """
    if config.flat:
        return cdiv(c * hw, config.block), n, 1
    return c * cdiv(hw, config.block), n, 1


def check_kernel_size(k: int) -> None:
    if k % 2 == 0 or not 1 <= k <= MAX_KERNEL_SIZE:
        raise TritonKernelError(f"the Triton TAM kernel takes an odd kernel size K <= {MAX_KERNEL_SIZE}, got K={k}")


# --- the kernel (built on first use) ------------------------------------------------------------------


@functools.cache
def kernel_function() -> Callable[..., None]:
    """The kernel as a plain Python function, to be wrapped by ``triton.jit`` (or compiled AOT)."""
    import triton.language as tl

    def tam_aggregate_kernel(
        x_ptr, kernel_ptr, local_ptr, C, HW, y_ptr,  # noqa: N803 (kernel sizes read as in the contract)
        T: tl.constexpr, K: tl.constexpr, BLOCK: tl.constexpr, FLAT: tl.constexpr,  # noqa: N803
    ):
        P: tl.constexpr = (K - 1) // 2  # noqa: N806
        n = tl.program_id(1).to(tl.int64)
        frame = (tl.zeros([], dtype=tl.int64) + C) * HW  # elements from X[n*T + s, c] to X[n*T + s + 1, c]
        if FLAT:  # the block runs over the C*H*W of a frame: c per element, gates gathered (cached) per element
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            mask = offs < frame
            nc = n * C + offs // HW
            first = n * T * frame + offs
            row_mask = mask
        else:  # the block runs over one channel's H*W: c per program, gates are scalars
            blocks = tl.cdiv(HW, BLOCK)
            c = tl.program_id(0) // blocks
            hw = (tl.program_id(0) - c * blocks) * BLOCK + tl.arange(0, BLOCK)
            mask = hw < HW
            nc = n * C + c
            first = (n * T * C + c) * HW + hw
            row_mask = None
        # every load is issued before the first store: stores may alias loads as far as the compiler
        # knows, so interleaving them would serialise the loads (one frame in flight instead of T)
        frames = ()
        gates = ()
        for s in tl.static_range(T):
            frames = frames + (tl.load(x_ptr + first + s * frame, mask=mask, other=0.0),)
            gates = gates + (tl.load(local_ptr + nc * T + s, mask=row_mask).to(tl.float32),)
        taps = ()
        for j in tl.static_range(K):
            taps = taps + (tl.load(kernel_ptr + nc * K + j, mask=row_mask).to(tl.float32),)
        zero = tl.zeros([BLOCK], dtype=tl.float32)
        window = ()  # local[s] * X[s] for the last K frames s, oldest first
        for _ in tl.static_range(K):
            window = window + (zero,)
        for s in tl.static_range(T + P):
            if s < T:  # noqa: SIM108 (a static if: frames[s] does not exist for s >= T)
                scaled = frames[s].to(tl.float32) * gates[s]
            else:
                scaled = zero
            window = window[1:] + (scaled,)
            if s >= P:  # window now holds frames (s - P) - P ... (s - P) + P
                acc = taps[0] * window[0]
                for j in tl.static_range(1, K):
                    acc += taps[j] * window[j]
                tl.store(y_ptr + first + (s - P) * frame, acc.to(y_ptr.dtype.element_ty), mask=mask)

    return tam_aggregate_kernel


@functools.cache
def jit_kernel() -> Any:
    """``triton.jit`` of the kernel (an interpreted function under ``TRITON_INTERPRET=1``)."""
    import triton

    return triton.jit(kernel_function())


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_tam_aggregate(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Y [N*T, C, H, W] by the Triton kernel, on the device of the inputs (CUDA, or CPU tensors under
    ``TRITON_INTERPRET=1``). Validates like the op; the launch goes to torch's current stream."""
    check_tam_inputs(x, kernel, local)
    x, kernel, local = x.contiguous(), kernel.contiguous(), local.contiguous()
    y = torch.empty_like(x)
    launch_tam_kernel(x, kernel, local, y)
    return y


def launch_tam_kernel(x: torch.Tensor, kernel: torch.Tensor, local: torch.Tensor, y: torch.Tensor,
                      config: LaunchConfig | None = None) -> None:
    """Write the aggregation of contiguous ``x``, ``kernel``, ``local`` into contiguous ``y`` (shaped
    like ``x``) on torch's current stream, with ``config`` or the one ``launch_config`` picks. The
    caller has checked the shapes (the TensorRT plugin's runtime hands over tensors its shape
    descriptor has checked)."""
    if x.dtype not in TRITON_TYPES:
        raise TritonKernelError(f"the Triton TAM kernel takes {', '.join(map(str, TRITON_TYPES))}, got {x.dtype}")
    n, c, k = kernel.shape
    check_kernel_size(k)
    hw = x.shape[2] * x.shape[3]
    if y.numel() == 0:
        return
    config = config or launch_config(hw)
    jit_kernel()[launch_grid(n, c, hw, config)](
        x, kernel, local, c, hw, y, T=local.shape[-1], K=k, BLOCK=config.block, FLAT=config.flat,
        num_warps=config.num_warps,
    )


def triton_handles(x: torch.Tensor, kernel: torch.Tensor) -> bool:
    """Whether the kernel takes these inputs (dtype, K) and Triton is installed: the op's CUDA
    implementation (``tam_op.tam_aggregate_cuda``) falls back to the fused ops otherwise."""
    return x.dtype in TRITON_TYPES and kernel.dim() == 3 and kernel.shape[-1] <= MAX_KERNEL_SIZE and triton_available()


# --- ahead-of-time compilation (PTX), for the TensorRT plugin ------------------------------------------


@dataclass(frozen=True)
class CompiledKernel:
    """PTX of the kernel specialised for one (dtype, T, K, launch), and what a launch needs."""

    name: str
    ptx: str
    dtype: str  # "fp32" | "fp16"
    num_segments: int
    kernel_size: int
    block: int
    flat: bool
    num_warps: int
    shared: int
    arch: str  # e.g. "sm_90"

    @property
    def threads(self) -> int:
        return self.num_warps * 32

    @property
    def launch(self) -> LaunchConfig:
        return LaunchConfig(block=self.block, num_warps=self.num_warps, flat=self.flat)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ptx_chars"] = len(d.pop("ptx"))
        return d


def aot_signature(dtype: str, *, hw_multiple_of_16: bool) -> tuple[dict[str, str], dict[tuple[int], list]]:
    """Triton signature and attributes of the runtime parameters for ``dtype`` (fp32/fp16).

    Pointers are declared 16-byte aligned (TensorRT and torch hand out 256-byte aligned buffers),
    and H*W divisible by 16 when it is, which lets Triton vectorise the loads and stores."""
    if dtype not in ("fp32", "fp16"):
        raise TritonKernelError(f"the TensorRT plugin's kernel takes fp32 or fp16, got {dtype}")
    signature = {"x_ptr": f"*{dtype}", "kernel_ptr": f"*{dtype}", "local_ptr": f"*{dtype}", "C": "i32", "HW": "i32",
                 "y_ptr": f"*{dtype}", "T": "constexpr", "K": "constexpr", "BLOCK": "constexpr", "FLAT": "constexpr"}
    aligned = [KERNEL_PARAMS.index(p) for p in ("x_ptr", "kernel_ptr", "local_ptr", "y_ptr")]
    if hw_multiple_of_16:
        aligned.append(KERNEL_PARAMS.index("HW"))
    return signature, {(i,): [["tt.divisibility", 16]] for i in sorted(aligned)}


def compile_tam_kernel(dtype: str, num_segments: int, kernel_size: int, *, capability: tuple[int, int],
                       hw: int | None = None) -> CompiledKernel:
    """PTX of the kernel for a GPU of compute ``capability`` (e.g. (9, 0)); no GPU needed.

    ``hw`` = H*W when it is fixed (it picks the block and the alignment hint), else None."""
    check_kernel_size(kernel_size)
    if num_segments < 1:
        raise TritonKernelError(f"the number of segments T must be >= 1, got {num_segments}")
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from triton.runtime.jit import JITFunction
    except ImportError as e:
        raise TritonKernelError(f"Triton is needed to compile the TAM kernel: pip install triton ({e})") from e
    config = launch_config(hw)
    signature, attrs = aot_signature(dtype, hw_multiple_of_16=hw is not None and hw % 16 == 0)
    # JITFunction directly, not triton.jit: AOT compilation must not depend on TRITON_INTERPRET
    src = ASTSource(fn=JITFunction(kernel_function()), signature=signature,
                    constexprs={"T": num_segments, "K": kernel_size, "BLOCK": config.block, "FLAT": config.flat},
                    attrs=attrs)
    major, minor = capability
    try:
        compiled = triton.compile(src, target=GPUTarget("cuda", major * 10 + minor, 32),
                                  options={"num_warps": config.num_warps})
    except Exception as e:  # Triton raises its own compilation errors
        raise TritonKernelError(f"Triton {triton.__version__} could not compile the TAM kernel for "
                                f"sm_{major}{minor}: {e}") from e
    meta = compiled.metadata
    scratch = {p: getattr(meta, f"{p}_size", 0) or 0 for p in HIDDEN_PARAMS}
    if any(scratch.values()):
        raise TritonKernelError(f"the compiled TAM kernel needs scratch memory {scratch}, which a TensorRT AOT "
                                f"plugin cannot provide")
    ptx = strip_hidden_params(compiled.asm["ptx"], meta.name, len(KERNEL_PARAMS))
    return CompiledKernel(name=meta.name, ptx=ptx, dtype=dtype, num_segments=num_segments, kernel_size=kernel_size,
                          block=config.block, flat=config.flat, num_warps=meta.num_warps, shared=meta.shared,
                          arch=f"sm_{major}{minor}")


_ENTRY = r"\.entry\s+{name}\s*\((?P<params>[^)]*)\)"


def ptx_entry_params(ptx: str, name: str) -> list[str]:
    """The parameter names of the ``.entry`` ``name`` in ``ptx``."""
    match = re.search(_ENTRY.format(name=re.escape(name)), ptx)
    if match is None:
        raise TritonKernelError(f"no .entry {name} in the PTX")
    return [p.split()[-1] for p in match.group("params").split(",") if p.strip()]


def strip_hidden_params(ptx: str, name: str, visible: int) -> str:
    """``ptx`` with the parameters of ``.entry name`` after the first ``visible`` removed, provided
    the kernel body never reads them (Triton's scratch pointers of a kernel that uses no scratch).

    A kernel that has only its visible parameters is returned unchanged (Triton < 3.3)."""
    match = re.search(_ENTRY.format(name=re.escape(name)), ptx)
    if match is None:
        raise TritonKernelError(f"no .entry {name} in the PTX")
    params = [p for p in match.group("params").split(",") if p.strip()]
    if len(params) < visible:
        raise TritonKernelError(f".entry {name} has {len(params)} parameters, fewer than the kernel's {visible}")
    hidden = [p.split()[-1] for p in params[visible:]]
    if not hidden:
        return ptx
    body = ptx[match.end():]
    used = [h for h in hidden if re.search(rf"\b{re.escape(h)}\b", body)]
    if used:
        raise TritonKernelError(f"the kernel reads its hidden parameter(s) {', '.join(used)}; a TensorRT AOT plugin "
                                f"does not pass them")
    kept = ",".join(params[:visible]).rstrip() + "\n"
    return ptx[:match.start("params")] + kept + ptx[match.end("params"):]
