"""tamdeploy predict."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

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
from tamdeploy.cli.tables import print_predictions
from tamdeploy.console import info, print_json, warn
from tamdeploy.errors import DataError

OUT_SUFFIXES = (".jsonl", ".csv")


@user_errors
def predict(
    artifact: Annotated[Path, typer.Argument(
        help="The model: a checkpoint (.pt/.pth), .onnx (also FP16/INT8 graphs), .xml (OpenVINO IR) or .plan.")],
    videos: Annotated[list[Path], typer.Argument(
        help="Videos, frame folders, folders of them, or list files (.txt: one path per line).")],
    labels: LabelsOption = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Labels shown per video.")] = 5,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Write one record per video: .jsonl, or .csv (video, label_1, score_1, ..., error).")] = None,
    views: ViewsOption = "1x1",
    batch: BatchOption = 8,
    workers: WorkersOption = None,
    threads: ThreadsOption = None,
    backend: BackendOption = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    ov_precision: OVPrecisionOption = None,
    performance: PerformanceOption = None,
    streams: StreamsOption = None,
    cache_dir: CacheDirOption = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Label videos: the top-k classes of each, with scores (softmax of the logits averaged over views).

    `tamdeploy predict model.onnx clips/ --labels labels.txt --out preds.jsonl`. Videos are decoded in
    worker processes while the model runs; a video that cannot be decoded is named and counted, and the
    others go on. Exits 2 if no video could be used.
    """
    from tamdeploy.deploy.bench.setup import build_runners
    from tamdeploy.deploy.predict.decoding import default_workers
    from tamdeploy.deploy.predict.predictor import Prediction, Predictor
    from tamdeploy.deploy.predict.sources import expand_sources

    if top_k < 1:
        raise DataError(f"--top-k must be at least 1, got {top_k}")
    if out_file is not None:
        from tamdeploy.files import check_writable

        if out_file.suffix.lower() not in OUT_SUFFIXES:
            raise DataError(f"--out {out_file}: write .jsonl or .csv")
        check_writable(out_file)  # before the work, not after it
    openvino = openvino_options(ov_precision, performance, streams, cache_dir)
    make_runners = functools.partial(build_runners, [str(artifact)], backend, False, None, None, trust_checkpoint,
                                     openvino, threads)
    ((_, runner),) = make_runners()
    predictor = Predictor(artifact, runner=runner, labels=labels, views=views, batch=batch,
                          workers=default_workers() if workers is None else workers)
    with predictor:
        sources = expand_sources(videos, predictor.spec)
        names = predictor.class_names
        if not (ray or ray_address):
            results = list(predictor.predict_many(sources, progress=not json_output, total=len(sources)))
    if ray or ray_address:  # after the local model is closed: the actors load their own
        from tamdeploy.deploy.predict.ray_pipeline import needs_gpu, ray_logits

        logits, _ = ray_logits(sources, make_runners, predictor.spec, predictor.views, batch, ray_address,
                               needs_gpu([runner]), not json_output)
        results = [Prediction(source, None if out is None else out[0], error)
                   for source, (out, error) in zip(sources, logits, strict=True)]
    classes = max((r.logits.shape[-1] for r in results if r.logits is not None), default=top_k)
    if top_k > classes:
        if not json_output:
            warn(f"--top-k {top_k} is more than the model's {classes} classes: showing all {classes}")
        top_k = classes
    records = [r.to_dict(names, top_k) for r in results]
    failed = [r for r, record in zip(results, records, strict=True) if record["error"]]
    if len(failed) == len(results):  # before any output: --json prints one document, the error
        first = records[results.index(failed[0])]
        raise DataError(f"none of the {len(results)} video(s) could be labelled (first: {first['video']}: "
                        f"{first['error']})")
    if out_file is not None:
        _write_records(records, out_file, top_k)
    if json_output:
        print_json({"artifact": str(artifact), "views": str(predictor.views), "videos": len(results),
                    "failed": len(failed), "predictions": records, "out": str(out_file) if out_file else None})
    else:
        print_predictions(records, top_k)
        for record in records:
            if record["error"]:
                warn(f"could not label {record['video']}: {record['error']}")
        info(f"{len(results) - len(failed)} of {len(results)} video(s) labelled"
             + (f"; records written to {out_file}" if out_file else ""))


def _write_records(records: list[dict], path: Path, top_k: int) -> None:
    import csv
    import io
    import json

    from tamdeploy.files import write_bytes_atomic

    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(r) + "\n" for r in records)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["video", *[f"{c}_{i}" for i in range(1, top_k + 1) for c in ("label", "score")], "error"])
        for r in records:
            cells = [x for t in r["top_k"] for x in (t["label"], t["score"])]
            writer.writerow([r["video"], *cells, *[""] * (2 * top_k - len(cells)), r["error"] or ""])
        text = buffer.getvalue()
    write_bytes_atomic(path, text.encode())
