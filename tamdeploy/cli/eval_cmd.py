"""tamdeploy eval."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tamdeploy.cli.options import (
    BackendOption,
    BatchOption,
    CacheDirOption,
    JsonOption,
    LabelsOption,
    OVPrecisionOption,
    PerformanceOption,
    RayAddressOption,
    RayOption,
    StreamsOption,
    ThreadsOption,
    TrustOption,
    ViewsOption,
    WorkersOption,
    openvino_options,
    user_errors,
)
from tamdeploy.console import info, key_value_table, out, print_json, warn

if TYPE_CHECKING:
    from tamdeploy.deploy.predict.evaluate import EvalReport

_FAILED_SHOWN = 10


@user_errors
def eval(  # noqa: A001  (the command's name)
    artifacts: Annotated[list[str], typer.Argument(
        help="One or more models (checkpoint, .onnx, FP16/INT8 .onnx, .xml, .plan; PATH@BACKEND picks a runtime), "
             "scored on the same decoded videos; deltas are against the first.")],
    ann: Annotated[Path, typer.Option(
        help="The labelled set: mmaction2 video list (path label), rawframes list (dir total_frames label), or "
             "CSV with a header (path,label or Kinetics' youtube_id,time_start,time_end,label).")],
    data_root: Annotated[Path | None, typer.Option(
        help="Folder the annotation's paths are relative to (default: the annotation file's folder).")] = None,
    labels: LabelsOption = None,
    views: ViewsOption = "1x1",
    batch: BatchOption = 8,
    workers: WorkersOption = None,
    threads: ThreadsOption = None,
    backend: BackendOption = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for report.json, predictions.jsonl and a confusion-matrix PNG per model.")] = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    ov_precision: OVPrecisionOption = None,
    performance: PerformanceOption = None,
    streams: StreamsOption = None,
    cache_dir: CacheDirOption = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Accuracy on a labelled set: top-1, top-5 and mean class accuracy per model, videos that failed to
    decode (named, counted, left out of every model alike), and with several models their top-1
    agreement and accuracy delta against the first.

    `tamdeploy eval model.onnx model.int8.onnx --ann val.txt --data-root videos/ --views 3x3 --out report/`
    """
    from tamdeploy.deploy.inputs.video import Views
    from tamdeploy.deploy.predict.evaluate import evaluate, write_eval_outputs

    if ray_address is not None and not ray:
        ray = True  # an address only makes sense on Ray
    made = out_dir is not None and not out_dir.exists()
    if out_dir is not None:
        from tamdeploy.files import make_output_dir

        make_output_dir(out_dir)  # before the work, not after it
    try:
        report = evaluate(artifacts, ann, data_root=data_root, views=Views.parse(views), labels=labels, batch=batch,
                          workers=workers, backend=backend, trust_checkpoint=trust_checkpoint,
                          openvino=openvino_options(ov_precision, performance, streams, cache_dir), threads=threads,
                          progress=not json_output, ray=ray, ray_address=ray_address)
    except BaseException:
        if made and not any(out_dir.iterdir()):  # the folder this run made, still empty: nothing left behind
            out_dir.rmdir()
        raise
    files = write_eval_outputs(report, out_dir) if out_dir is not None else {}
    if json_output:
        print_json(dict(report.to_dict(), files=files))
        return
    _print_report(report)
    if files:
        info(f"written to {out_dir}: " + ", ".join(Path(f).name for f in files.values()))


def _print_report(report: EvalReport) -> None:
    rows = [("annotations", f"{report.annotations} ({report.format})"),
            ("videos", f"{report.evaluated} scored of {report.videos}"
                       + (f"; {len(report.failed)} could not be decoded" if report.failed else "")),
            ("views", f"{report.views} (clips x crops, scores averaged)"),
            ("time", f"{report.seconds:.1f} s, {report.videos / report.seconds:.1f} videos/s ({_engine(report)}; "
                     f"loading the models {report.load_seconds:.1f} s)")]
    out.print(key_value_table("eval", rows))
    table = Table(title="accuracy", title_justify="left")
    several = len(report.models) > 1
    columns = ["model", "backend", "precision", "top-1", "top-5", "mean class"]
    columns += ["top-1 vs first", "agrees with first"] if several else []
    for column in columns:
        # a narrow terminal folds the model's name rather than cutting it: m.onnx and m.onnx@openvino stay apart
        table.add_column(column, justify="left" if column in ("model", "backend", "precision") else "right",
                         overflow="fold" if column == "model" else "ellipsis")
    matrix = report.agreement_matrix()
    first = report.models[0].top1
    for i, m in enumerate(report.models):
        cells = [escape(m.label), m.backend, m.precision or "?", f"{m.top1:.2%}", f"{m.top5:.2%}",
                 f"{m.mean_class_accuracy:.2%}"]
        if several:
            cells += ["", ""] if i == 0 else [f"{(m.top1 - first) * 100:+.2f} pt", f"{matrix[0][i]:.2%}"]
        table.add_row(*cells)
    out.print(table)
    for f in report.failed[:_FAILED_SHOWN]:
        warn(f"could not decode {f.source} (line {f.line}): {f.reason}")
    if len(report.failed) > _FAILED_SHOWN:
        warn(f"... and {len(report.failed) - _FAILED_SHOWN} more (all listed in --json and report.json)")
    for note in report.notes:
        info(f"note: {note}")


def _engine(report: EvalReport) -> str:
    if report.engine == "ray":
        return "Ray: decoding on CPU tasks, the models on an actor pool"
    workers = f"{report.workers} decode worker(s)" if report.workers else "decoding in this process"
    return f"{workers}, in the models {report.model_seconds:.1f} s"
