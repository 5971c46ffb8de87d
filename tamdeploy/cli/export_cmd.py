"""tamdeploy export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import JsonOption, TrustOption, user_errors
from tamdeploy.cli.tables import parity_table
from tamdeploy.console import err, info, key_value_table, out, print_json, stages, warn


@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to export (any layout 'inspect' reads).")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Output .onnx (default: beside the checkpoint, its name with .onnx).")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture, when detection needs help.")] = None,
    num_segments: Annotated[int | None, typer.Option(help="Frames per clip (T).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Number of classes.")] = None,
    input_size: Annotated[int | None, typer.Option(help="Square input size S (default: the model's, 224).")
                          ] = None,
    tam_op: Annotated[str, typer.Option(
        help="'plugin': TAM as one custom TAMAggregate node carrying a standard-op ONNX function (ONNX "
             "Runtime runs the function, TensorRT can use the plugin); 'onnx': standard ops inline.")
    ] = "plugin",
    opset: Annotated[int, typer.Option(help="ONNX opset: 18 up to the newest the installed onnx knows.")] = 18,
    model: Annotated[str | None, typer.Option(
        "--model", help="Your own network as path/to/file.py:factory; the checkpoint holds its weights. "
                        "Its TAM / ACTION modules are recognised by structure.")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the ONNX Runtime parity check.")] = False,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Export to ONNX with a dynamic batch and check parity against PyTorch on ONNX Runtime.

    Input `video` [N, T, 3, S, S] (image models: `image` [N, 3, S, S]), output `logits`. Parity: batch 1
    and 3, FP32 passes at relative L2 error <= 1e-5 with identical top-5 (where only the relative L2 misses,
    at 3x PyTorch FP32's own distance from float64, as verify judges); a failure exits 1.
    """
    from tamdeploy.exporters.onnx_export import ExportOptions
    from tamdeploy.exporters.pipeline import export_checkpoint

    options = ExportOptions(opset=opset, tam_op=tam_op)
    with stages(enabled=not json_output) as stage:
        run = export_checkpoint(checkpoint, output, arch=arch, num_segments=num_segments,
                                num_classes=num_classes, input_size=input_size, options=options,
                                model_spec=model, trust_checkpoint=trust_checkpoint, verify=not no_verify,
                                stage=stage)
    res = run.export
    report = {
        "output": str(res.path), "checkpoint": str(checkpoint), "layout": run.layout, "arch": res.config.arch,
        "input": {"name": res.export_config.input_name, "layout": res.export_config.layout,
                  "shape": ["N", *res.config.input_shape]},
        "tam_op": tam_op, "opset": opset, "rewritten_modules": len(res.rewrites),
        "nodes": res.nodes, "custom_nodes": res.custom_nodes, "size_bytes": res.size_bytes,
        "sha256": res.sha256, "export_seconds": round(res.seconds, 3),
        "parity": run.parity.to_dict() if run.parity else None, "warnings": run.warnings,
    }
    if json_output:
        print_json(report)
    else:
        for w in run.warnings:
            warn(w)
        rows = [("output", res.path), ("arch", res.config.arch), ("layout", run.layout),
                ("input", f"{res.export_config.input_name} {report['input']['shape']}"),
                ("TAM op", f"{tam_op} ({len(res.rewrites)} modules rewritten, {res.custom_nodes} custom nodes)"),
                ("nodes", res.nodes), ("size", f"{res.size_bytes / 1e6:.2f} MB"),
                ("export time", f"{res.seconds:.1f} s")]
        out.print(key_value_table("export", rows))
        if run.parity:
            comparisons = {f"batch {b}": c for b, c in run.parity.per_batch.items()}
            out.print(parity_table("parity vs PyTorch (ONNX Runtime CPU)", comparisons, run.parity.passed))
            if run.parity.note:
                info(f"note: {run.parity.note}")
    if run.parity and not run.parity.passed:
        err.print(f"[red]parity FAILED[/red]: the ONNX model does not compute what the PyTorch model computes; it "
                  f"was kept as {res.path} for inspection, and {output or checkpoint.with_suffix('.onnx')} was not "
                  f"written")
        raise typer.Exit(1)
