"""tamdeploy build."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tamdeploy.cli.options import JsonOption, user_errors
from tamdeploy.console import key_value_table, out, print_json
from tamdeploy.errors import TamdeployError

if TYPE_CHECKING:
    from tamdeploy.deploy.build.int8 import LayerError

_SENSITIVITY_ROWS = 15


def _parse_batch(value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        parts = tuple(int(p) for p in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise TamdeployError(f"--batch takes MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX (e.g. 1,4,16), got {value!r}")
    return parts  # type: ignore[return-value]


def _sensitivity_table(errors: list[LayerError], fallback: list[str]) -> Table:
    table = Table(title=f"INT8 sensitivity: one layer quantized at a time (worst {_SENSITIVITY_ROWS})",
                  title_justify="left")
    for column in ("layer", "op", "rel L2 vs FP32", "top-1 agreement", "fallback"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right")
    for e in errors[:_SENSITIVITY_ROWS]:
        table.add_row(e.node, e.op_type, f"{e.rel_l2_error:.3g}", f"{e.top1_agreement:.1%}",
                      "FP32" if e.node in fallback else "")
    table.caption = (f"{len(errors)} layers; kept in float: {', '.join(fallback) if fallback else 'none'} "
                     "(the fewest worst layers for 99% top-1 agreement with FP32 on up to 32 calibration clips, "
                     "one flip allowed)")
    return table


@user_errors
def build(
    model: Annotated[Path, typer.Argument(help="The FP32 .onnx that 'tamdeploy export' wrote.")],
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 graph (FP32 inputs/outputs kept); for openvino, "
                                                      "FP16 weights and inference precision.")] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="openvino only: BF16 inference precision (native on CPUs "
                                                      "with AVX512-BF16 or AMX).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 graph with explicit Q/DQ, calibrated on --calib.")
                    ] = False,
    calib: Annotated[str | None, typer.Option(
        help="Calibration data for --int8: videos, frame folders, images or .npy arrays (a file or a "
             "directory); 'random' for random pixels (only to try the pipeline).")] = None,
    calib_samples: Annotated[int | None, typer.Option(
        help="Clips to calibrate on (default: up to 64, as many as --calib holds).")] = None,
    calib_method: Annotated[str, typer.Option(help="minmax, entropy or percentile (99.999%).")] = "minmax",
    sensitivity: Annotated[bool, typer.Option(
        "--sensitivity", help="Measure each layer quantized alone, print the errors, and keep the outliers "
                              "in float.")] = False,
    target: Annotated[str, typer.Option(help="onnxruntime (a graph), tensorrt (an engine built from it) or "
                                             "openvino (an IR: model.xml + model.bin).")] = "onnxruntime",
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Output file (default beside MODEL: model.fp16.onnx, model.int8.onnx, "
                               "model[.fp16|.int8].plan for tensorrt, model[.bf16|.fp16|.int8].xml for "
                               "openvino). An engine's or IR's FP16/INT8 graph goes beside it: out.plan -> "
                               "out.onnx, out.xml -> out.openvino.onnx.")] = None,
    batch: Annotated[str | None, typer.Option(help="TensorRT: batch profile MIN,OPT,MAX.")] = None,
    workspace: Annotated[float | None, typer.Option(help="TensorRT: workspace limit in GB.")] = None,
    opt_level: Annotated[int | None, typer.Option(help="TensorRT: builder optimization level 0-5.")] = None,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT: timing cache file (read and updated).")
                            ] = None,
    no_plugin: Annotated[bool, typer.Option(
        "--no-plugin", help="TensorRT: run TAMAggregate as its ONNX function body, not the plugin.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Build an FP16 or INT8 graph from MODEL (target onnxruntime), a TensorRT engine (target tensorrt) or
    an OpenVINO IR (target openvino: FP32, BF16, FP16 or INT8; the fast CPU path).

    INT8: symmetric per-channel Q/DQ that TensorRT accepts (zero points 0, float biases), calibrated on
    ONNX Runtime's CPU provider. TAM's kernel branch stays in float by default (measured).
    """
    from tamdeploy.deploy.build.pipeline import BuildOptions, EngineOptions
    from tamdeploy.deploy.build.pipeline import build as run_build

    chosen = [name for name, flag in (("fp16", fp16), ("bf16", bf16), ("int8", int8)) if flag]
    if len(chosen) > 1:
        raise TamdeployError(f"{' and '.join('--' + c for c in chosen)} exclude each other: choose one")
    options = BuildOptions(
        precision=chosen[0] if chosen else None, target=target, output=output, calib=calib,
        calib_samples=calib_samples, calib_method=calib_method, sensitivity=sensitivity,
        engine=EngineOptions(batch=_parse_batch(batch), workspace_gb=workspace, opt_level=opt_level,
                             timing_cache=timing_cache, use_plugin=not no_plugin),
    )

    def show_sensitivity(errors: list[LayerError], fallback: list[str]) -> None:
        if not json_output:
            out.print(_sensitivity_table(errors, fallback))

    report = run_build(model, options, progress=not json_output, on_sensitivity=show_sensitivity)
    if json_output:
        print_json(report.to_dict())
        return
    calibration = report.calibration
    rows = [("input", report.input), ("precision", report.precision), ("target", report.target),
            ("graph", report.onnx_output),
            ("size", f"{report.size_bytes / 1e6:.2f} MB ({report.size_bytes / report.input_size_bytes:.2f} x FP32)")]
    if calibration:
        rows.append(("calibration", f"{calibration['samples']} clips, {report.details['method']}"
                                    f"{' (random pixels)' if calibration['random'] else ''}"))
        rows.append(("INT8 layers", f"{report.details['quantized_nodes']} quantized, "
                                    f"{len(report.details['excluded_nodes'])} kept in float"))
    if "blocked_nodes" in report.details:  # an FP16 graph (OpenVINO's FP16 is a hint on the FP32 graph)
        rows.append(("kept in FP32", f"{report.details['blocked_nodes']} nodes"))
    if report.engine:
        rows.append(("engine", report.engine.get("engine_path", "")))
    if report.openvino:
        ir = report.openvino
        rows.append(("OpenVINO IR", f"{ir['xml_path']} (+ .bin, .json); inference precision "
                                    f"{ir['inference_precision']}, OpenVINO {ir['openvino_version']}"))
    rows.append(("time", f"{report.seconds:.1f} s"))
    out.print(key_value_table("build", rows))
