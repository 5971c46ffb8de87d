"""Where OpenVINO's CPU plugin spends a call, per kind of node, for one or more models side by side:

    python benchmarks/profile_openvino.py runs/bench_cpu/tsn_r50.int8.xml runs/bench_cpu/action_r50.int8.xml

Each model (IR, or ONNX read through tamdeploy's reader and TAM extension) is compiled with OpenVINO's
per-node counters (``PERF_COUNT``) at batch 1, f32 inference precision unless ``--precision``, the models
called in turn (``--rounds``); a node's time is its median over the rounds, a kind's time the sum over its
nodes. Kinds are OpenVINO's node type and kernel (``Convolution brgconv_avx512_amx_1x1_i8``): the
convolutions that every ResNet has apart from the rest, which is what a module like TAM or ACTION-Net adds.
The counters add a little to each node; compare the sums with each other, not with ``bench_cpu.py``.

``--custom-op LIB`` adds a column per model read through a plain ``openvino.Core`` with that extension
library instead (``benchmarks/openvino_custom_op``: TAMAggregate as a C++ op), so the custom-op route is
profiled beside the formulation tamdeploy ships. Run it with ``OMP_WAIT_POLICY=PASSIVE``: the op's OpenMP
threads would otherwise spin against OpenVINO's own.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tamdeploy.deploy.runners.openvino_ir import read_model, tamdeploy_core
from tamdeploy.system import system_info


def read_models(paths: list[Path], custom_op: Path | None) -> tuple[list[str], list[Any]]:
    """Column names and OpenVINO models: each path through tamdeploy's reader, and with ``custom_op`` each
    again through a plain Core that has that extension library."""
    core = tamdeploy_core()
    names, models = [path.name for path in paths], [read_model(core, path) for path in paths]
    if custom_op is not None:
        import openvino as ov

        plain = ov.Core()
        plain.add_extension(str(custom_op))
        names += [f"{path.name} + {custom_op.name}" for path in paths]
        models += [plain.read_model(path) for path in paths]
    return names, models


def profile(models: list[Any], precision: str, rounds: int, threads: int | None) -> list[dict[str, list[float]]]:
    """Per model, {"type kernel": [ms of each node of that kind]} (medians over ``rounds``)."""
    core = tamdeploy_core()
    requests = []
    for model in models:
        shape = model.input(0).get_partial_shape()
        model.reshape([1, *(shape[i].get_length() for i in range(1, shape.rank.get_length()))])
        config = {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        requests.append(core.compile_model(model, "CPU", config).create_infer_request())
    clip = np.random.default_rng(0).standard_normal(tuple(requests[0].get_input_tensor(0).shape)).astype(np.float32)
    samples: list[dict[tuple[str, str, str], list[float]]] = [defaultdict(list) for _ in models]
    for round_ in range(rounds + 2):
        for request, per_node in zip(requests, samples, strict=True):
            time.sleep(0.05)  # as bench_cpu: threads of the previous call stop spinning
            request.infer({0: clip})
            if round_ < 2:  # warm-up
                continue
            for node in request.profiling_info:
                if node.status.name == "EXECUTED":
                    key = (node.node_name, node.node_type, node.exec_type)
                    per_node[key].append(node.real_time.total_seconds() * 1e3)
    kinds = []
    for per_node in samples:
        by_kind: dict[str, list[float]] = defaultdict(list)
        for (_, node_type, kernel), times in per_node.items():
            by_kind[f"{node_type} {kernel}"].append(float(np.median(times)))
        kinds.append(by_kind)
    return kinds


def table(names: list[str], kinds: list[dict[str, list[float]]], top: int) -> str:
    totals = [sum(sum(times) for times in by_kind.values()) for by_kind in kinds]
    order = sorted({k for by_kind in kinds for k in by_kind}, key=lambda k: -max(sum(b.get(k, [0.0])) for b in kinds))
    lines = ["| node kind | " + " | ".join(f"{n}: ms (nodes)" for n in names) + " |",
             "|---|" + "--:|" * len(names)]
    for kind in order[:top]:
        cells = [f"{sum(b[kind]):.2f} ({len(b[kind])})" if kind in b else "" for b in kinds]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    rest = [sum(sum(b[k]) for k in order[top:] if k in b) for b in kinds]
    lines.append("| the other kinds | " + " | ".join(f"{r:.2f}" for r in rest) + " |")
    lines.append("| **sum of nodes** | " + " | ".join(f"**{t:.2f}** ({sum(map(len, b.values()))})"
                                                     for t, b in zip(totals, kinds, strict=True)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="OpenVINO IR (.xml) or ONNX files")
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top", type=int, default=16, help="kinds listed one by one")
    parser.add_argument("--custom-op", type=Path, default=None,
                        help="an OpenVINO extension library (.so) to profile each model with as well")
    args = parser.parse_args()
    print(f"CPU: {system_info().describe()}; inference precision {args.precision}, batch 1, "
          f"median of {args.rounds} rounds per node\n")
    names, models = read_models(args.models, args.custom_op)
    print(table(names, profile(models, args.precision, args.rounds, args.threads), args.top))


if __name__ == "__main__":
    main()
