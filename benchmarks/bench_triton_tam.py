"""The Triton TAM kernel on a GPU: achieved bandwidth against a device-to-device copy, and TANet-R50
with the fused op against the original grouped-convolution TAM.

    python benchmarks/bench_triton_tam.py [--repeats 100] [--json results.json]

1. Kernel: TANet-R50's layer1 and layer2 TAMs (C=64 at 56x56, C=128 at 28x28), N=8 clips of T=8
   frames, K=3, FP32 and FP16. The kernel reads X once and writes Y once, so its traffic is
   2 * |X| bytes (plus the N*C*(K+T) weights); a copy of X into Y moves the same 2 * |X| and is the
   bandwidth the kernel can hope for. Also timed: the op's portable implementation
   (``tam_aggregate_fused``: K shifted multiply-adds) and TANet's formulation (permutes + grouped
   conv, ``tam_aggregate_reference``), on the same tensors.
2. Model: ``tanet_r50`` (random weights, 8x224x224 clips, FP16, batch 1 and 8): the original TAM
   forward vs the export rewrite that calls ``torch.ops.tamdeploy.tam_aggregate`` (the Triton kernel
   on CUDA), switched with ``tamdeploy.exporters.rewrites.export_rewrites``.

Times are medians of CUDA-event intervals around each call (warm-up first), one call per interval.
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

SEGMENTS, KERNEL, CLIPS = 8, 3, 8
LAYERS = {"layer1": (64, 56), "layer2": (128, 28)}


def time_cuda(fn: Callable[[], object], repeats: int, warmup: int = 10) -> float:
    """Median milliseconds of ``fn`` on the current stream, each call between two CUDA events."""
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
            kernel_ms = time_cuda(lambda x=x, k=kernel, lo=local, y=y: launch_tam_kernel(x, k, lo, y), repeats)
            copy_ms = time_cuda(lambda x=x, y=y: y.copy_(x), repeats)
            fused_ms = time_cuda(lambda x=x, k=kernel, lo=local: tam_aggregate_fused(x, k, lo), repeats)
            ref_ms = time_cuda(lambda x=x, k=kernel, lo=local: tam_aggregate_reference(x, k, lo), repeats)
            kernel_gbs, copy_gbs = traffic / kernel_ms / 1e6, copy_traffic / copy_ms / 1e6
            config = launch_config(size * size)
            rows.append({
                "layer": layer, "dtype": str(dtype).removeprefix("torch."),
                "shape": [CLIPS * SEGMENTS, channels, size, size], "block": config.block, "num_warps": config.num_warps,
                "kernel_ms": kernel_ms, "copy_ms": copy_ms, "fused_torch_ms": fused_ms, "reference_ms": ref_ms,
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
            original_ms = time_cuda(lambda x=x: model(x), repeats)
            expected = model(x).float()
            with export_rewrites(model) as applied:
                fused_ms = time_cuda(lambda x=x: model(x), repeats)
                got = model(x).float()
        rel = float((got - expected).norm() / expected.norm().clamp_min(1e-12))
        rows.append({"batch": batch, "original_ms": original_ms, "fused_ms": fused_ms,
                     "speedup": original_ms / fused_ms, "rewritten_tams": len(applied), "rel_l2_vs_original": rel})
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
    print(f"TAM kernel, N={CLIPS} T={SEGMENTS} K={KERNEL}, {device}")
    print(f"{'layer':8} {'dtype':8} {'kernel ms':>10} {'GB/s':>7} {'copy GB/s':>10} {'% copy':>7} "
          f"{'torch fused ms':>15} {'reference ms':>13}")
    for r in kernels:
        print(f"{r['layer']:8} {r['dtype']:8} {r['kernel_ms']:10.4f} {r['kernel_gbs']:7.0f} {r['copy_gbs']:10.0f} "
              f"{r['percent_of_copy']:6.1f}% {r['fused_torch_ms']:15.4f} {r['reference_ms']:13.4f}")
    models = tanet_latency(repeats=max(10, args.repeats // 2))
    print(f"\nTANet-R50 FP16, 8x224x224 clips, {device}")
    print(f"{'batch':>5} {'original ms':>12} {'fused ms':>9} {'speed-up':>9} {'rel L2':>9}")
    for r in models:
        print(f"{r['batch']:5} {r['original_ms']:12.3f} {r['fused_ms']:9.3f} {r['speedup']:8.2f}x "
              f"{r['rel_l2_vs_original']:9.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "torch": torch.__version__, "kernel": kernels, "tanet_r50": models}, f,
                      indent=2)


if __name__ == "__main__":
    main()
