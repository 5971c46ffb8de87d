"""tamdeploy verify."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from tamdeploy.cli.options import (
    OPENVINO_FLAGS,
    CacheDirOption,
    JsonOption,
    OVPrecisionOption,
    PerformanceOption,
    StreamsOption,
    TrustOption,
    openvino_options,
    user_errors,
)
from tamdeploy.cli.tables import parity_table
from tamdeploy.console import info, key_value_table, out, print_json, warn
from tamdeploy.errors import TamdeployError

if TYPE_CHECKING:
    from tamdeploy.deploy.check.bisect import BisectReport
    from tamdeploy.deploy.check.verify import VerifyReport

_MAX_UNMAPPED_SHOWN = 8


@user_errors
def verify(
    artifact: Annotated[Path, typer.Argument(
        help="The deployed model: .onnx (ONNX Runtime), .xml (OpenVINO IR) or .plan (TensorRT).")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="The PyTorch checkpoint it was made from.")],
    data: Annotated[Path | None, typer.Option(
        help="Videos, frame folders, images or .npy arrays (a file or a directory); default: seeded random "
             "clips.")] = None,
    samples: Annotated[int | None, typer.Option(
        help="How many samples (default: every clip in --data, or 16 random ones).")] = None,
    batch: Annotated[int, typer.Option(help="Samples per inference.")] = 8,
    backend: Annotated[str | None, typer.Option(
        help="pytorch, onnxruntime, openvino or tensorrt (default: from the artifact's suffix; an .onnx also "
             "runs on openvino).")] = None,
    bisect: Annotated[bool, typer.Option(
        "--bisect", help="Also find the first intermediate tensor that diverges and name its layer (.onnx).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random inputs (without --data).")] = 0,
    threads: Annotated[int | None, typer.Option(
        help="Intra-op threads of both runtimes (default: theirs; 1 is faster for small models on a busy CPU)."
    )] = None,
    ov_precision: OVPrecisionOption = None,
    performance: PerformanceOption = None,
    streams: StreamsOption = None,
    cache_dir: CacheDirOption = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Check that ARTIFACT computes what the PyTorch checkpoint computes, on real clips or random inputs.

    Per output: max / mean absolute error, max relative error, relative L2, cosine, top-1 / top-5
    agreement, judged by the artifact's precision: FP32 relative L2 <= 1e-5 with identical top-5; FP16
    cosine >= 0.999 and top-1 agreement >= 0.99; BF16 cosine >= 0.995 and top-1 agreement >= 0.98; INT8
    cosine >= 0.99 and top-1 agreement >= 0.95.
    Exits 0 on PASS, 1 on FAIL, 2 on unusable input.
    """
    from tamdeploy.deploy.check.verify import verify as run_verify
    from tamdeploy.deploy.runners import backend_for

    openvino = openvino_options(ov_precision, performance, streams, cache_dir)
    if openvino and (backend or backend_for(artifact)) != "openvino":
        raise TamdeployError(f"{', '.join(OPENVINO_FLAGS[key] for key in openvino)} only apply to OpenVINO: add "
                             f"--backend openvino to run {artifact.name} there")
    report = run_verify(artifact, ckpt, data=data, samples=samples, batch=batch, backend=backend, bisect=bisect,
                        trust_checkpoint=trust_checkpoint, seed=seed, threads=threads, progress=not json_output,
                        runner_options=openvino)
    if json_output:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if not report.passed:
        raise typer.Exit(1)


def _print_report(report: VerifyReport) -> None:
    from tamdeploy.compare import METRIC_LABELS

    for w in report.warnings:
        warn(w)
    tol = report.tolerance
    sha = {True: "matches the export's", False: "differs from the export's", None: "the artifact records none"}
    precision_source = "from metadata" if report.precision_source == "metadata" else "not declared: default"
    rows = [("artifact", f"{report.artifact} on {report.runner}"),
            ("checkpoint", f"{report.checkpoint} (sha256 {sha[report.checkpoint_matches_export]})"),
            ("precision", f"{report.precision} ({precision_source})"),
            ("criterion", tol.describe()),
            ("inputs", report.inputs.describe())]
    if report.runner_settings:
        from tamdeploy.deploy.bench.report import describe_settings

        rows.insert(1, ("settings", describe_settings(report.runner_settings)))
    rows += [("skipped", f"{s.source}: {s.reason}") for s in report.inputs.summary.skipped]
    out.print(key_value_table("verify", rows))
    comparisons = {name: o.comparison for name, o in report.outputs.items()}
    out.print(parity_table(f"{report.runner} vs PyTorch (CPU, FP32)", comparisons, report.passed))
    for note in report.notes:
        info(f"note: {note}")
    if report.bisect_skipped:
        info(f"bisect: {report.bisect_skipped}")
    if report.bisect is not None:
        _print_bisect(report.bisect)
    if report.passed:
        out.print(f"[green]PASS[/green]: {escape(report.artifact)} matches the PyTorch model "
                  f"({escape(tol.describe())})")
    else:
        failed = [f"{name}: {METRIC_LABELS[c.metric]} {c.value:.4g}, must be {c.op} {c.limit:g}"
                  for name, o in report.outputs.items() for c in o.checks if not c.passed]
        out.print(f"[red]FAIL[/red]: {escape('; '.join(failed))}")


def _print_bisect(b: BisectReport) -> None:
    rows = [("compared", f"{len(b.results)} intermediate tensors on {', '.join(b.inputs)}"),
            ("diverges at", f"relative L2 > {b.rel_l2_limit:g} ({b.precision})")]
    for label, r in (("first divergent", b.first_divergent), ("last agreeing", b.last_agreeing)):
        if r is not None:
            rows += [(label, r.probe.label),
                     ("", f"ONNX {r.probe.op_type} node {r.probe.onnx_node} -> {r.probe.onnx_value}"),
                     ("", f"rel L2 {r.rel_l2_error:.3g}, max abs {r.max_abs_error:.3g}, "
                          f"cosine {r.cosine_similarity:.6f}")]
    if b.unmapped:
        names = ", ".join(u.name for u in b.unmapped[:_MAX_UNMAPPED_SHOWN])
        if len(b.unmapped) > _MAX_UNMAPPED_SHOWN:
            names += f" (+{len(b.unmapped) - _MAX_UNMAPPED_SHOWN} more)"
        rows.append(("not compared", f"{names}: no reliable ONNX counterpart (reasons in --json)"))
    out.print(key_value_table("bisect", rows))
    out.print(escape(f"bisect: {b.summary}"))
