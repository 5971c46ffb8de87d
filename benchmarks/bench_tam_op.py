"""Time the TAM aggregation op: PyTorch reference vs fused op, and ONNX Runtime function bodies.

    python benchmarks/bench_tam_op.py [--repeats 60] [--keep-heap]

Sizes are TANet-R50's TAMs (after each bottleneck's conv1) for one 8-frame clip, K=3, fp32.
Implementations of one runtime are measured interleaved, in a fresh random order each repeat, so
that drift and cache or allocator state left by one do not favour another. ONNX Runtime sessions
run with thread spinning off (a spinning pool would steal the cores from the next session) and
write into a preallocated output (a fresh 6 MB output costs page faults, which a network avoids).
On a VM where first-touch page faults are dear, PyTorch timings of large tensors are dominated by
them (glibc hands freed memory back and faults it in again); ``--keep-heap`` keeps freed memory
mapped, so that the timings show the computation. Run it on a quiet machine: with one core taken
by another process, torch's OpenMP ops take 20-50 ms each. The last lines weigh each layer by its
number of TAMs in TANet-R50 (3, 4, 6, 3).
"""

from __future__ import annotations

import argparse
import ctypes
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch

from tamdeploy.onnx_runtime import create_session
from tamdeploy.plugins.tam_onnx import TAM_DOMAIN, TAM_OP_TYPE, make_tam_model
from tamdeploy.plugins.tam_reference import tam_aggregate_reference

SEGMENTS, KERNEL = 8, 3
LAYERS = {"layer1": (64, 56, 3), "layer2": (128, 28, 4), "layer3": (256, 14, 6), "layer4": (512, 7, 3)}


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Median and p10/p90 wall time of each function, run interleaved in random order."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for _ in range(repeats):
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            fns[name]()
            samples[name].append((time.perf_counter() - start) * 1e3)
    timings = {}
    for name, values in samples.items():
        deciles = statistics.quantiles(values, n=10)
        timings[name] = Timing(statistics.median(values), deciles[0], deciles[-1])
    return timings


def slice_body(num_segments: int, kernel_size: int) -> onnx.FunctionProto:
    """The first body (DESIGN.md): local * X, Pad over T, then K Slices * kernel tap, summed."""
    p = (kernel_size - 1) // 2
    lines = [
        "n = Shape <end = 1> (kernel)",
        "c = Shape <start = 1, end = 2> (kernel)",
        f"tt = Constant <value_ints = [{num_segments}]> ()",
        "rest = Constant <value_ints = [-1]> ()",
        "shape4 = Concat <axis = 0> (n, tt, c, rest)",
        "x4 = Reshape (x, shape4)",
        "local_t = Transpose <perm = [0, 2, 1]> (local)",
        "local_u = Unsqueeze (local_t, rest)",
        "xl = Mul (x4, local_u)",
        f"pads = Constant <value_ints = [0, {p}, 0, 0, 0, {p}, 0, 0]> ()",
        "xp = Pad (xl, pads)",
        "kernel_t = Transpose <perm = [0, 2, 1]> (kernel)",
        "taps = Unsqueeze (kernel_t, rest)",
        "axis = Constant <value_ints = [1]> ()",
    ]
    for j in range(kernel_size):
        lines += [
            f"s{j} = Constant <value_ints = [{j}]> ()",
            f"e{j} = Constant <value_ints = [{j + num_segments}]> ()",
            f"f{j} = Constant <value_ints = [{j + 1}]> ()",
            f"xs{j} = Slice (xp, s{j}, e{j}, axis)",
            f"k{j} = Slice (taps, s{j}, f{j}, axis)",
            f"p{j} = Mul (xs{j}, k{j})",
        ]
    total = "p0"
    for j in range(1, kernel_size):
        lines.append(f"a{j} = Add ({total}, p{j})")
        total = f"a{j}"
    lines += ["shape = Shape (x)", f"y = Reshape ({total}, shape)"]
    body = "\n".join(lines)
    return onnx.parser.parse_function(
        f'<domain: "{TAM_DOMAIN}", opset_import: ["" : 18]>\n'
        f"{TAM_OP_TYPE} <num_segments, kernel_size, plugin_namespace> (x, kernel, local) => (y) {{\n{body}\n}}"
    )


def ort_runner(model: onnx.ModelProto, feed: dict[str, np.ndarray], out: np.ndarray) -> Callable[[], None]:
    session = create_session(model, spin=False)
    binding = session.io_binding()
    for name, value in feed.items():
        binding.bind_cpu_input(name, value)
    binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_numpy(out))
    return lambda: session.run_with_iobinding(binding)


def with_body(model: onnx.ModelProto, body: onnx.FunctionProto) -> onnx.ModelProto:
    del model.functions[:]
    model.functions.append(body)
    return model


def layer_inputs(channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(SEGMENTS, channels, size, size)
    kernel = torch.softmax(torch.randn(1, channels, KERNEL), dim=-1)
    local = torch.sigmoid(torch.randn(1, channels, SEGMENTS))
    return x, kernel, local


def bench_layer(channels: int, size: int, repeats: int) -> dict[str, Timing]:
    """Torch and ONNX Runtime timed as separate groups: their thread pools would fight otherwise."""
    x, kernel, local = layer_inputs(channels, size)
    torch_fns: dict[str, Callable[[], object]] = {
        "torch reference": lambda: tam_aggregate_reference(x, kernel, local),
        "torch fused op": lambda: torch.ops.tamdeploy.tam_aggregate(x, kernel, local),
    }
    feed = {"x": x.numpy(), "kernel": kernel.numpy(), "local": local.numpy()}
    out = np.empty_like(feed["x"])
    slice_model = make_tam_model(SEGMENTS, KERNEL, channels, size, size)
    ort_fns: dict[str, Callable[[], object]] = {
        "ort slice body": ort_runner(with_body(slice_model, slice_body(SEGMENTS, KERNEL)), feed, out),
        "ort matmul body": ort_runner(make_tam_model(SEGMENTS, KERNEL, channels, size, size), feed, out),
    }
    return {**time_interleaved(torch_fns, repeats), **time_interleaved(ort_fns, repeats)}


def print_table(results: dict[str, dict[str, Timing]]) -> None:
    baselines = {"torch": "torch reference", "ort": "ort slice body"}
    print(f"{'layer':8} {'C x H x W':12} {'implementation':16} {'median ms':>10} {'p10':>8} {'p90':>8} {'speedup':>8}")
    for layer, timings in results.items():
        channels, size, _ = LAYERS[layer]
        for name, timing in timings.items():
            speedup = timings[baselines[name.split()[0]]].median_ms / timing.median_ms
            print(
                f"{layer:8} {f'{channels}x{size}x{size}':12} {name:16} {timing.median_ms:10.3f} "
                f"{timing.p10_ms:8.3f} {timing.p90_ms:8.3f} {speedup:7.2f}x"
            )
    for name in next(iter(results.values())):
        total = sum(results[layer][name].median_ms * LAYERS[layer][2] for layer in results)
        print(f"TANet-R50, 16 TAMs, {name}: {total:.2f} ms per clip")


def keep_heap() -> None:
    """Tell glibc malloc to keep freed memory mapped (no trimming, no per-tensor mmap)."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_trim_threshold, 2**30) and libc.mallopt(m_mmap_threshold, 32 * 2**20)):
        raise SystemExit("mallopt failed: --keep-heap needs glibc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--keep-heap", action="store_true", help="keep freed memory mapped (glibc)")
    args = parser.parse_args()
    if args.keep_heap:
        keep_heap()
    random.seed(0)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}; "
        f"N=1 T={SEGMENTS} K={KERNEL} fp32, {args.repeats} repeats, keep heap: {args.keep_heap}"
    )
    print_table({layer: bench_layer(c, s, args.repeats) for layer, (c, s, _) in LAYERS.items()})


if __name__ == "__main__":
    main()
