"""The ``tamdeploy`` command line. Each command parses its options and calls the library; errors a user
can cause print one line and exit 2 (``--debug`` shows the traceback)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import nullcontext as _nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tamdeploy import __version__
from tamdeploy.console import err, error, key_value_table, out, print_json, warn
from tamdeploy.errors import TamdeployError

app = typer.Typer(
    name="tamdeploy",
    help="Deploy SE / ACTION-Net / TANet (TAM) networks: PyTorch checkpoint -> ONNX -> TensorRT, "
    "with numerical parity checked and latency measured.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"tamdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
) -> None:
    _state["debug"] = debug


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn TamdeployError into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TamdeployError as e:
            if _state["debug"]:
                raise
            error(str(e))
            raise typer.Exit(e.exit_code) from None

    return wrapper


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
TrustOption = Annotated[bool, typer.Option(
    "--trust-checkpoint",
    help="Allow the checkpoint's pickle to run code (only for files you trust; off by default).")]


@app.command()
@user_errors
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt/.pth checkpoint (TANet, mmaction2, ACTION-Net, "
                                                    "senet.pytorch or tamdeploy format).")],
    arch: Annotated[str | None, typer.Option(help="Architecture, when detection needs help.")] = None,
    num_segments: Annotated[int | None, typer.Option(help="Frames per clip (T).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Number of classes.")] = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Show what a checkpoint holds: layout, architecture, T, classes, parameters, input size."""
    from tamdeploy.models import load_checkpoint

    loaded = load_checkpoint(checkpoint, arch=arch, num_segments=num_segments, num_classes=num_classes,
                             trust_checkpoint=trust_checkpoint)
    cfg = loaded.config
    report = {
        "checkpoint": str(checkpoint),
        "layout": loaded.layout,
        "arch": cfg.arch,
        "depth": cfg.depth,
        "width": cfg.width,
        "num_segments": cfg.num_segments,
        "num_classes": cfg.num_classes,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "input_shape": ["N", *cfg.input_shape],
        "input_size": cfg.input_size,
        "sha256": loaded.sha256,
        "warnings": list(loaded.warnings),
    }
    if json_output:
        print_json(report)
        return
    for w in loaded.warnings:
        warn(w)
    rows = [(k, v) for k, v in report.items() if k != "warnings"]
    rows[rows.index(("parameters", report["parameters"]))] = ("parameters", f"{report['parameters']:,}")
    out.print(key_value_table(f"{checkpoint.name}", rows))


def parity_table(title: str, comparisons: dict[str, Any], passed: bool | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("", "max abs", "max rel", "rel L2", "cosine", "top-1", "top-5"):
        table.add_column(column, justify="right" if column else "left")
    for label, c in comparisons.items():
        table.add_row(label, f"{c.max_abs_error:.3g}", f"{c.max_rel_error:.3g}", f"{c.rel_l2_error:.3g}",
                      f"{c.cosine_similarity:.9f}", f"{c.top1_agreement:.0%}", f"{c.top5_agreement:.0%}")
    if passed is not None:
        table.caption = "[green]PASS[/green]" if passed else "[red]FAIL[/red]"
    return table


@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to export (any layout 'inspect' reads).")],
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Output .onnx (default: <checkpoint stem>.onnx).")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture, when detection needs help.")] = None,
    num_segments: Annotated[int | None, typer.Option(help="Frames per clip (T).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Number of classes.")] = None,
    input_size: Annotated[int | None, typer.Option(help="Square input size S (default: the model's, 224).")
                          ] = None,
    tam_op: Annotated[str, typer.Option(
        help="'plugin': TAM as one custom TAMAggregate node carrying a standard-op ONNX function (ONNX "
             "Runtime runs the function, TensorRT can use the plugin); 'onnx': standard ops inline.")
    ] = "plugin",
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 18).")] = 18,
    model: Annotated[str | None, typer.Option(
        "--model", help="Your own network as path/to/file.py:factory; the checkpoint holds its weights. "
                        "Its TAM / ACTION modules are recognised by structure.")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the ONNX Runtime parity check.")] = False,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Export to ONNX with a dynamic batch and check parity against PyTorch on ONNX Runtime.

    Input `video` [N, T, 3, S, S] (image models: `image` [N, 3, S, S]), output `logits`. Parity: batch 1
    and 3, FP32 passes at relative L2 error <= 1e-5 with identical top-5; a failure exits 1.
    """
    from tamdeploy.console import err as console_err
    from tamdeploy.exporters.onnx_export import ExportOptions
    from tamdeploy.exporters.pipeline import export_checkpoint

    options = ExportOptions(opset=opset, tam_op=tam_op)
    with console_err.status("exporting (loading, tracing, simplifying, checking parity)...") \
            if not json_output else _nullcontext():
        run = export_checkpoint(checkpoint, output, arch=arch, num_segments=num_segments,
                                num_classes=num_classes, input_size=input_size, options=options,
                                model_spec=model, trust_checkpoint=trust_checkpoint, verify=not no_verify)
    res = run.export
    report = {
        "output": str(res.path), "checkpoint": str(checkpoint), "layout": run.layout, "arch": res.config.arch,
        "input": {"name": res.export_config.input_name, "layout": res.export_config.layout,
                  "shape": ["N", *res.export_config.sample_shape(res.config)]},
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
    if run.parity and not run.parity.passed:
        err.print("[red]parity FAILED[/red]: the ONNX model does not compute what the PyTorch model computes")
        raise typer.Exit(1)
