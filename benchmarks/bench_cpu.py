"""Issue 15's measurements: which runtime and precision is fastest on this CPU, for full-size R50s
(TSN, TANet, ACTION-Net), batch 1, 8x224x224 clips, every runner interleaved in one run:

    python benchmarks/bench_cpu.py [--iters 20] [--archs tsn_r50,tanet_r50,action_r50] [--out-dir runs/bench_cpu]

Runners per network: ONNX Runtime FP32 (the ONNX file as exported) and INT8 (``tamdeploy build --int8``),
OpenVINO f32 / bf16 (the same FP32 ONNX, TAMAggregate converted by tamdeploy's OpenVINO extension, the
precision a compile hint) and OpenVINO int8 (the IR of ``tamdeploy build --target openvino --int8``; float
parts at f32). Models are made once into ``--out-dir`` and reused: delete them after changing the export or
the builds. For TANet also
OpenVINO bf16 on the export with TAM's ONNX function body inlined (what ``--tam-op onnx`` gives), which
is what the extension's formulation is measured against.

Random weights with random BatchNorm statistics: latency does not depend on the values; INT8 ranges come
from a few random clips (speed only; accuracy is the tests' business). Each ratio is reported as the
ratio of medians and as the median of per-round paired ratios with a bootstrap 95% interval, first from the
run of all runners, then from a run of the two runners alone (``--pair-iters`` rounds, the two calls of a
round well under a second apart), which decides whether a target is met: on these VMs the clock drifts
within seconds (p90 up to 3x the minimum), and a round of all sixteen runners spans several. The CPU
(model and ISA flags) and the versions are written into the result. Targets (CPU with VNNI):
OV int8 TANet <= 0.33x ORT FP32 TANet; TANet/TSN on OV <= 1.10 (bf16 and int8); ACTION/TSN on OV int8
<= 1.25; OV f32 TANet <= 1.0x ORT FP32 TANet.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import onnx

from tamdeploy.deploy.bench import paired_ratio, plot_bench, run_benchmark
from tamdeploy.deploy.build import BuildOptions, build
from tamdeploy.deploy.runners import OnnxRuntimeRunner, OpenVINORunner
from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, randomize_batchnorm_, save_checkpoint
from tamdeploy.plugins.tam_onnx import inline_tam_functions
from tamdeploy.system import system_info

TARGETS = {
    "ov int8 tanet_r50 / ort fp32 tanet_r50": 0.33,
    "ov bf16 tanet_r50 / ov bf16 tsn_r50": 1.10,
    "ov int8 tanet_r50 / ov int8 tsn_r50": 1.10,
    "ov int8 action_r50 / ov int8 tsn_r50": 1.25,
    "ov f32 tanet_r50 / ort fp32 tanet_r50": 1.0,
}


def prepare(arch: str, out_dir: Path, calib_samples: int) -> dict[str, Path]:
    """The FP32 export and its INT8 graph (made once; reused when already there)."""
    onnx_path, int8_path = out_dir / f"{arch}.onnx", out_dir / f"{arch}.int8.onnx"
    if not onnx_path.is_file():
        ckpt = save_checkpoint(randomize_batchnorm_(create_model(arch), seed=1), None, out_dir / f"{arch}.pth")
        export_checkpoint(ckpt, onnx_path)
    if not int8_path.is_file():
        build(onnx_path, BuildOptions(precision="int8", calib="random", calib_samples=calib_samples), progress=False)
    ir_path = out_dir / f"{arch}.int8.xml"  # OpenVINO's own INT8 graph (TAM inputs quantized too), as an IR
    if not ir_path.is_file():
        build(onnx_path, BuildOptions(precision="int8", target="openvino", calib="random",
                                      calib_samples=calib_samples, output=ir_path), progress=False)
    files = {"fp32": onnx_path, "int8": int8_path, "int8_ir": ir_path}
    if arch.startswith("tanet"):
        inlined = out_dir / f"{arch}.inlined.onnx"
        if not inlined.is_file():
            onnx.save(inline_tam_functions(onnx.load(str(onnx_path))), str(inlined))
        files["inlined"] = inlined
    return files


def runners_for(arch: str, files: dict[str, Path], threads: int | None) -> list[tuple[str, object]]:
    runners = [
        (f"ort fp32 {arch}", OnnxRuntimeRunner(files["fp32"], threads=threads)),
        (f"ort int8 {arch}", OnnxRuntimeRunner(files["int8"], threads=threads)),
        (f"ov f32 {arch}", OpenVINORunner(files["fp32"], precision="fp32", threads=threads)),
        (f"ov bf16 {arch}", OpenVINORunner(files["fp32"], precision="bf16", threads=threads)),
        (f"ov int8 {arch}", OpenVINORunner(files["int8_ir"], threads=threads)),
    ]
    if "inlined" in files:
        runners.append((f"ov bf16 {arch} (TAM body inlined)",
                        OpenVINORunner(files["inlined"], precision="bf16", threads=threads)))
    return runners


def runner_pair(key: str) -> tuple[str, str]:
    """The two runner labels of a ratio's key, ``"a / b"``."""
    a, b = (part.strip() for part in key.split("/"))
    return a, b


def measure_pair(a: str, b: str, by_label: dict[str, object], args: argparse.Namespace) -> tuple[float, float, float]:
    """The per-round ratio of runners ``a`` and ``b`` measured alone, interleaved (median, 95% interval)."""
    report = run_benchmark([(a, by_label[a]), (b, by_label[b])], [1], warmup=args.warmup, iters=args.pair_iters,
                           threads=args.threads, progress=False)
    samples = {r.label: r.at(1).samples_ms for r in report.runners}
    return paired_ratio(samples[a], samples[b])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--pair-iters", type=int, default=40, help="rounds of each target's two runners alone")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--archs", default="tsn_r50,tanet_r50,action_r50")
    parser.add_argument("--calib-samples", type=int, default=8)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench_cpu"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    system = system_info()
    print(f"CPU: {system.describe()}", flush=True)

    archs = [a for a in args.archs.split(",") if a]
    runners = []
    for arch in archs:
        runners += runners_for(arch, prepare(arch, args.out_dir, args.calib_samples), args.threads)
    report = run_benchmark(runners, [1], warmup=args.warmup, iters=args.iters, threads=args.threads)
    median = {r.label: r.at(1).latency.median_ms for r in report.runners}
    samples = {r.label: r.at(1).samples_ms for r in report.runners}
    print(report.to_markdown())

    table = ["| runner | " + " | ".join(archs) + " |", "|---|" + "--:|" * len(archs)]
    for kind in ("ort fp32", "ort int8", "ov f32", "ov bf16", "ov int8"):
        cells = []
        for arch in archs:
            base = median[f"ort fp32 {arch}"]
            cells.append(f"{median[f'{kind} {arch}']:.1f} ms ({median[f'{kind} {arch}'] / base:.2f}x)")
        table.append(f"| {kind} | " + " | ".join(cells) + " |")
    print("\n".join(table))

    keys = [*TARGETS, "ov bf16 tanet_r50 (TAM body inlined) / ov bf16 tsn_r50"]
    ratios = {}
    for key in keys:
        a, b = runner_pair(key)
        if a in median and b in median:
            ratios[key] = (median[a] / median[b], *paired_ratio(samples[a], samples[b]))
    by_label = dict(runners)
    pairs = {key: measure_pair(*runner_pair(key), by_label, args) for key in ratios}
    print("| ratio | all runners: of medians | all runners: per-round [95% CI] | two alone: per-round [95% CI] "
          "| target | met |\n|---|--:|--:|--:|--:|---|")
    for key, (value, mid, low, high) in ratios.items():
        target = TARGETS.get(key)
        pair_mid, pair_low, pair_high = pairs[key]
        met = "" if target is None else ("yes" if pair_mid <= target else "NO")
        print(f"| {key} | {value:.3f} | {mid:.3f} [{low:.3f}, {high:.3f}] | {pair_mid:.3f} [{pair_low:.3f}, "
              f"{pair_high:.3f}] | {'' if target is None else f'<= {target:g}'} | {met} |")
    result = {"system": system.to_dict(), "python": platform.python_version(), "table": table,
              "ratios": {k: dict(zip(("of_medians", "paired_median", "ci_low", "ci_high"), v, strict=True))
                         | dict(zip(("pair_run_median", "pair_run_ci_low", "pair_run_ci_high"), pairs[k], strict=True))
                         for k, v in ratios.items()},
              "targets": TARGETS, "bench": report.to_dict()}
    (args.out_dir / "bench_cpu.json").write_text(json.dumps(result, indent=2))
    plot_bench(report, args.out_dir / "bench_cpu.png")


if __name__ == "__main__":
    main()
