"""The Triton TAM kernel on a GPU: achieved bandwidth against a device-to-device copy, and TANet-R50
with the fused op against the original grouped-convolution TAM.

    python benchmarks/bench_triton_tam.py [--repeats 100] [--json results.json]

1. Kernel: the TAMs of TANet-R50's four stages (C=64 at 56x56 ... C=512 at 7x7), N=8 clips of T=8
   frames, K=3, FP32 and FP16. The kernel reads X once and writes Y once, so its traffic is
   2 * |X| bytes (plus the N*C*(K+T) weights); a copy of X into Y moves the same 2 * |X| and is the
   bandwidth the kernel can hope for. Also timed: the op's portable implementation
   (``tam_aggregate_fused``: K shifted multiply-adds) and TANet's formulation (permutes + grouped
   conv, ``tam_aggregate_reference``), on the same tensors.
2. Model: ``tanet_r50`` (random weights, 8x224x224 clips, FP16, batch 1 and 8): the original TAM
   forward vs the export rewrite that calls ``torch.ops.tamdeploy.tam_aggregate`` (the Triton kernel
   on CUDA), switched with ``tamdeploy.exporters.rewrites.export_rewrites``.

GPU time: ``CALLS`` calls captured in one CUDA graph, replayed between two CUDA events, divided by
``CALLS`` (median over repeats). That is the time the GPU spends, as inside a TensorRT engine (the
plugin's kernel is launched by the engine, not by Python) and as trtexec's "GPU Compute Time". A
Python launch of a Triton kernel costs more CPU time (tens of microseconds) than these kernels take
on the GPU, so timing one eager call between events measures the launch, not the kernel; the model
is also timed that way (eager), which is what a PyTorch user calling it from Python sees.
Tensors of the first stages fit in the GPU's L2 cache (50 MB on an H100) for the copy and the
kernel alike; the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable, Sequence

import torch

from tamdeploy.plugins.tam_op import tam_aggregate_fused
from tamdeploy.plugins.tam_reference import tam_aggregate_reference
from tamdeploy.plugins.triton_tam import launch_config, launch_tam_kernel

SEGMENTS, KERNEL, CLIPS, CALLS = 8, 3, 8, 20
LAYERS = {"layer1": (64, 56), "layer2": (128, 28), "layer3": (256, 14), "layer4": (512, 7)}


def time_eager(fn: Callable[[], object], repeats: int, warmup: int = 10) -> float:
    """Median milliseconds of one Python call of ``fn``, between two CUDA events (launch included)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def time_graph(fn: Callable[[], object], repeats: int, calls: int = CALLS) -> float:
    """Median GPU milliseconds of one call of ``fn``: ``calls`` calls captured in a CUDA graph and replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream, as graph capture asks
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    return time_eager(graph.replay, repeats, warmup=2) / calls


def tam_tensors(channels: int, size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(CLIPS * SEGMENTS, channels, size, size, device="cuda", generator=gen).to(dtype)
    kernel = torch.softmax(torch.randn(CLIPS, channels, KERNEL, device="cuda", generator=gen), -1).to(dtype)
    local = torch.sigmoid(torch.randn(CLIPS, channels, SEGMENTS, device="cuda", generator=gen)).to(dtype)
    return x, kernel, local


def kernel_bandwidth(repeats: int = 100, dtypes: Sequence[torch.dtype] = (torch.float32, torch.float16)) -> list[dict]:
    """One row per (layer, dtype): kernel and copy times, GB/s, and the kernel's % of copy bandwidth."""
    rows = []
    for layer, (channels, size) in LAYERS.items():
        for dtype in dtypes:
            x, kernel, local = tam_tensors(channels, size, dtype)
            y = torch.empty_like(x)
            launch_tam_kernel(x, kernel, local, y)
            torch.testing.assert_close(y.float(), tam_aggregate_reference(x.float(), kernel.float(), local.float()),
                                       atol=1e-3 if dtype == torch.float16 else 1e-5, rtol=1e-3)
            traffic = 2 * x.numel() * x.element_size() + (kernel.numel() + local.numel()) * x.element_size()
            copy_traffic = 2 * x.numel() * x.element_size()
            kernel_ms = time_graph(lambda x=x, k=kernel, lo=local, y=y: launch_tam_kernel(x, k, lo, y), repeats)
            copy_ms = time_graph(lambda x=x, y=y: y.copy_(x), repeats)
            fused_ms = time_graph(lambda x=x, k=kernel, lo=local: tam_aggregate_fused(x, k, lo), repeats)
            ref_ms = time_graph(lambda x=x, k=kernel, lo=local: tam_aggregate_reference(x, k, lo), repeats)
            eager_ms = time_eager(lambda x=x, k=kernel, lo=local, y=y: launch_tam_kernel(x, k, lo, y), repeats)
            kernel_gbs, copy_gbs = traffic / kernel_ms / 1e6, copy_traffic / copy_ms / 1e6
            config = launch_config(size * size)
            rows.append({
                "layer": layer, "dtype": str(dtype).removeprefix("torch."),
                "shape": [CLIPS * SEGMENTS, channels, size, size], "block": config.block, "flat": config.flat,
                "num_warps": config.num_warps, "kernel_ms": kernel_ms, "copy_ms": copy_ms, "fused_torch_ms": fused_ms,
                "reference_ms": ref_ms, "kernel_eager_call_ms": eager_ms,
                "kernel_gbs": kernel_gbs, "copy_gbs": copy_gbs, "percent_of_copy": 100 * kernel_gbs / copy_gbs,
            })
    return rows


def tanet_latency(batches: Sequence[int] = (1, 8), repeats: int = 50) -> list[dict]:
    """TANet-R50 FP16 forward: the original TAM (grouped conv) vs the fused op (the Triton kernel)."""
    from tamdeploy.exporters.rewrites import export_rewrites
    from tamdeploy.models import create_model

    model = create_model("tanet_r50").cuda().half().eval()
    rows = []
    for batch in batches:
        x = torch.randn(batch, *model.config.input_shape, device="cuda", dtype=torch.float16)
        with torch.inference_mode():
            forward = lambda x=x: model(x)  # noqa: E731
            original_ms, original_gpu_ms = time_eager(forward, repeats), time_graph(forward, repeats, calls=1)
            expected = model(x).float()
            with export_rewrites(model) as applied:
                fused_ms, fused_gpu_ms = time_eager(forward, repeats), time_graph(forward, repeats, calls=1)
                got = model(x).float()
        rel = float((got - expected).norm() / expected.norm().clamp_min(1e-12))
        rows.append({"batch": batch, "original_ms": original_ms, "fused_ms": fused_ms,
                     "speedup": original_ms / fused_ms, "original_gpu_ms": original_gpu_ms,
                     "fused_gpu_ms": fused_gpu_ms, "gpu_speedup": original_gpu_ms / fused_gpu_ms,
                     "rewritten_tams": len(applied), "rel_l2_vs_original": rel})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    device = torch.cuda.get_device_name()
    kernels = kernel_bandwidth(args.repeats)
    print(f"TAM kernel, N={CLIPS} T={SEGMENTS} K={KERNEL}, {device}; GPU time per call ({CALLS} calls in a CUDA graph)")
    print(f"{'layer':8} {'dtype':8} {'launch':>13} {'kernel us':>10} {'GB/s':>6} {'copy GB/s':>10} {'% copy':>7} "
          f"{'torch fused us':>15} {'reference us':>13} {'eager call us':>14}")
    for r in kernels:
        launch = f"{'flat' if r['flat'] else 'chan'} {r['block']}x{r['num_warps']}w"
        print(f"{r['layer']:8} {r['dtype']:8} {launch:>13} {1e3 * r['kernel_ms']:10.1f} {r['kernel_gbs']:6.0f} "
              f"{r['copy_gbs']:10.0f} {r['percent_of_copy']:6.1f}% {1e3 * r['fused_torch_ms']:15.1f} "
              f"{1e3 * r['reference_ms']:13.1f} {1e3 * r['kernel_eager_call_ms']:14.1f}")
    models = tanet_latency(repeats=max(10, args.repeats // 2))
    print(f"\nTANet-R50 FP16, 8x224x224 clips, {device}: eager (one Python call) and GPU time (CUDA graph)")
    print(f"{'batch':>5} {'original ms':>12} {'fused ms':>9} {'speed-up':>9} {'orig GPU ms':>12} {'fused GPU ms':>13} "
          f"{'speed-up':>9} {'rel L2':>9}")
    for r in models:
        print(f"{r['batch']:5} {r['original_ms']:12.3f} {r['fused_ms']:9.3f} {r['speedup']:8.2f}x "
              f"{r['original_gpu_ms']:12.3f} {r['fused_gpu_ms']:13.3f} {r['gpu_speedup']:8.2f}x "
              f"{r['rel_l2_vs_original']:9.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "kernel": kernels, "tanet_r50": models}, f,
                      indent=2)


if __name__ == "__main__":
    main()
