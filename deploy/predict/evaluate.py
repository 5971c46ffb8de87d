"""``tamdeploy eval``: accuracy of one or more deployed models on a labelled set, decoded once.

Every artifact sees the same decoded views of the same videos (one decoding pass feeds all of them),
so "FP32 vs FP16 vs INT8" differ only by the models. Videos that cannot be decoded are named,
counted and left out of every model's accuracy alike, never silently dropped.
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tamdeploy.deploy.inputs.video import Views
from tamdeploy.deploy.predict.annotations import read_annotations
from tamdeploy.deploy.predict.decoding import decoded, default_workers
from tamdeploy.deploy.predict.metrics import (
    agreement,
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    top1,
    top_k_accuracy,
)
from tamdeploy.deploy.predict.predictor import StreamStats, model_spec, predict_stream, resolve_labels
from tamdeploy.deploy.runners.base import Runner
from tamdeploy.errors import DataError


@dataclass(frozen=True)
class FailedVideo:
    source: str
    line: int  # in the annotation file
    reason: str


@dataclass
class ModelScore:
    """One artifact's accuracy on the videos that decoded."""

    label: str
    backend: str
    precision: str | None
    top1: float
    top5: float
    mean_class_accuracy: float
    per_class: list[float | None]
    confusion: np.ndarray
    predicted: list[int]  # top-1 class per evaluated video, in annotation order (-1: non-finite logits)
    non_finite: int = 0  # videos whose logits held NaN or inf (counted as misses)

    def to_dict(self, names: list[str] | None) -> dict[str, Any]:
        classes = names or [str(i) for i in range(len(self.per_class))]
        return {"artifact": self.label, "backend": self.backend, "precision": self.precision,
                "top1": self.top1, "top5": self.top5, "mean_class_accuracy": self.mean_class_accuracy,
                "per_class_accuracy": dict(zip(classes, self.per_class, strict=True)),
                "non_finite_videos": self.non_finite, "confusion_matrix": self.confusion.tolist()}


@dataclass
class EvalReport:
    annotations: str
    format: str
    views: str
    videos: int
    failed: list[FailedVideo]
    models: list[ModelScore]
    class_names: list[str] | None
    labels: list[int]  # ground truth of the evaluated videos
    sources: list[str]  # the evaluated videos
    seconds: float  # the pass over the videos (decoding and models), after loading
    load_seconds: float  # opening the models
    model_seconds: float  # of ``seconds``, inside the models
    workers: int
    batch: int
    engine: str = "local"  # or "ray"
    notes: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> int:
        return len(self.sources)

    def agreement_matrix(self) -> list[list[float]]:
        return [[agreement(a.predicted, b.predicted) for b in self.models] for a in self.models]

    def to_dict(self) -> dict[str, Any]:
        return _finite(self._as_dict())

    def _as_dict(self) -> dict[str, Any]:
        first = self.models[0].top1 if self.models else float("nan")
        return {
            "annotations": self.annotations, "format": self.format, "views": self.views,
            "videos": self.videos, "evaluated": self.evaluated,
            "failed": [{"video": f.source, "line": f.line, "reason": f.reason} for f in self.failed],
            "models": [dict(m.to_dict(self.class_names), top1_delta_vs_first=m.top1 - first) for m in self.models],
            "top1_agreement": {"artifacts": [m.label for m in self.models], "matrix": self.agreement_matrix()},
            "class_names": self.class_names, "seconds": self.seconds, "load_seconds": self.load_seconds,
            "model_seconds": self.model_seconds,
            "videos_per_s": self.videos / self.seconds if self.seconds else None, "workers": self.workers,
            "batch": self.batch, "engine": self.engine, "notes": self.notes,
        }

    def prediction_rows(self) -> list[dict[str, Any]]:
        """One row per evaluated video: its label and each model's top-1."""
        return [{"video": source, "label": int(label),
                 "predicted": {m.label: m.predicted[i] for m in self.models}}
                for i, (source, label) in enumerate(zip(self.sources, self.labels, strict=True))]


def _finite(value: Any) -> Any:
    """NaN (nothing to average: a class with no videos) as null: strict JSON readers refuse NaN."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def score_model(label: str, runner: Runner, logits: np.ndarray, labels: np.ndarray, num_classes: int) -> ModelScore:
    predicted = top1(logits)
    matrix = confusion_matrix(labels, predicted, num_classes)
    empty = not len(labels)
    return ModelScore(
        label=label, backend=runner.name, precision=runner.precision,
        top1=float("nan") if empty else top_k_accuracy(logits, labels, 1),
        top5=float("nan") if empty else top_k_accuracy(logits, labels, 5),
        mean_class_accuracy=mean_class_accuracy(matrix), per_class=per_class_accuracy(matrix), confusion=matrix,
        predicted=[int(p) for p in predicted], non_finite=int(np.sum(predicted < 0)))


def evaluate(artifacts: list[str | os.PathLike], ann: str | os.PathLike, *, data_root: str | os.PathLike | None = None,
             views: Views | None = None, labels: str | os.PathLike | None = None, batch: int = 8,
             workers: int | None = None, backend: str | None = None, trust_checkpoint: bool = False,
             openvino: dict | None = None, threads: int | None = None, progress: bool = True, ray: bool = False,
             ray_address: str | None = None) -> EvalReport:
    """Accuracy of each artifact (``path`` or ``path@backend``) on the videos ANN lists."""
    from tamdeploy.deploy.bench.setup import build_runners

    views = views or Views()
    workers = default_workers() if workers is None else workers
    labelled = build_runners(list(artifacts), backend, False, None, None, trust_checkpoint, openvino, threads)
    loading = time.perf_counter()
    with ExitStack() as stack:
        for _, runner in labelled:
            stack.enter_context(runner)
        runners = [runner for _, runner in labelled]
        spec = _shared_spec(labelled)
        num_classes = _shared_classes(labelled)
        class_names = resolve_labels(labels, runners[0])
        annotations = read_annotations(ann, data_root, class_names, num_classes)
        items = annotations.items
        load_seconds = time.perf_counter() - loading
        started = time.perf_counter()
        if ray:
            from tamdeploy.deploy.predict.ray_pipeline import needs_gpu, ray_logits

            stack.close()  # the actors load their own models: a GPU holds one copy, not two
            # the actors open their own runners: the same call, made where they run
            make_runners = functools.partial(build_runners, list(artifacts), backend, False, None, None,
                                             trust_checkpoint, openvino, threads)
            results, stats = ray_logits([str(i.source) for i in items], make_runners, spec, views, batch, ray_address,
                                        needs_gpu(runners), progress)
        else:
            results, stats = _local_logits([str(i.source) for i in items], runners, spec, views, batch, workers,
                                           progress)
    failed = [FailedVideo(str(item.source), item.line, error) for item, (_, error) in zip(items, results, strict=True)
              if error is not None]
    kept = [i for i, (logits, _) in enumerate(results) if logits is not None]
    truth = np.array([items[i].label for i in kept], dtype=np.int64)
    models = []
    for m, (label, runner) in enumerate(labelled):
        logits = np.stack([results[i][0][m] for i in kept]) if kept else np.zeros((0, num_classes), np.float32)
        models.append(score_model(label, runner, logits, truth, num_classes))
    seconds = time.perf_counter() - started
    if not kept:
        first = failed[0]
        raise DataError(f"none of the {len(items)} video(s) in {ann} could be decoded, so nothing was scored "
                        f"(first: {first.source}, line {first.line}: {first.reason})")
    notes = [f"{m.label}: {m.non_finite} video(s) gave NaN or infinite logits (counted as misses)"
             for m in models if m.non_finite]
    return EvalReport(
        annotations=str(ann), format=annotations.format, views=str(views), videos=len(items), failed=failed,
        models=models, class_names=class_names, labels=truth.tolist(), sources=[str(items[i].source) for i in kept],
        seconds=seconds, load_seconds=load_seconds, model_seconds=stats.model_seconds, workers=workers, batch=batch,
        engine="ray" if ray else "local", notes=notes)


def _local_logits(sources: list[str], runners: list[Runner], spec, views: Views, batch: int, workers: int,
                  progress: bool) -> tuple[list[tuple[list[np.ndarray] | None, str | None]], StreamStats]:
    from tamdeploy.console import progress_bar

    stats = StreamStats()
    results: list[tuple[list[np.ndarray] | None, str | None]] = []
    with progress_bar(progress, unit="videos") as bar:
        task = bar.add_task("evaluating", total=len(sources))
        for item, logits in predict_stream(decoded(sources, spec, views, workers, batch), runners, batch, spec,
                                           stats):
            results.append((logits, item.error))
            bar.advance(task)
    return results, stats


def _shared_spec(labelled: list[tuple[str, Runner]]):
    specs = {label: model_spec(runner) for label, runner in labelled}
    first_label, first = next(iter(specs.items()))
    for label, spec in specs.items():
        if spec != first:
            raise DataError(f"{label} takes different inputs from {first_label} ({spec.describe()} vs "
                            f"{first.describe()}); evaluate them in separate runs")
    return first


def _shared_classes(labelled: list[tuple[str, Runner]]) -> int:
    counts = {label: runner.config.num_classes for label, runner in labelled}
    if len(set(counts.values())) != 1:
        raise DataError(f"the artifacts have different class counts ({counts}); evaluate them in separate runs")
    return next(iter(counts.values()))


def write_eval_outputs(report: EvalReport, directory: str | os.PathLike, plots: bool = True) -> dict[str, str]:
    """report.json, predictions.jsonl and one confusion-matrix PNG per artifact, in DIRECTORY; the plots of
    an earlier eval there (``confusion-*.png``) go, so that the folder describes this run only."""
    import json

    from tamdeploy.files import make_output_dir, write_bytes_atomic

    directory = make_output_dir(directory)
    for stale in directory.glob("confusion-*.png"):
        stale.unlink()
    files = {"report": str(write_bytes_atomic(directory / "report.json",
                                              json.dumps(report.to_dict(), indent=2).encode()))}
    lines = "".join(json.dumps(row) + "\n" for row in report.prediction_rows())
    files["predictions"] = str(write_bytes_atomic(directory / "predictions.jsonl", lines.encode()))
    if plots and report.evaluated:
        from tamdeploy.deploy.predict.plots import plot_confusion

        for i, model in enumerate(report.models):
            name = f"confusion-{i}-{_file_label(model.label)}.png"
            files[f"confusion_{i}"] = str(plot_confusion(model, report.class_names, directory / name))
    return files


def _file_label(label: str) -> str:
    """A model's label as part of a file name: ``runs/m.int8.onnx@openvino`` -> ``m.int8.onnx-openvino``
    (the whole file name and the backend, so that two models' plots are told apart)."""
    path, _, backend = label.partition("@")
    name = Path(path).name + (f"-{backend}" if backend else "")
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
