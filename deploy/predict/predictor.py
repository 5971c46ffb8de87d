"""Labels for videos: ``Predictor(artifact).predict(path)``, and the batched stream that ``predict``
and ``eval`` share.

The stream takes decoded videos (``decoding.decoded``: worker processes ahead of the model), puts
the views of as many videos as fit into one batch of ``batch`` inputs (the views of one video always
travel together through the batch axis), runs every model on that batch and hands back, per video
and model, the logits averaged over its views (mmaction2's ``average_clips='score'``). Several models
share one decoding pass: ``eval model.onnx model.int8.onnx`` decodes each video once.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tamdeploy.console import progress_bar
from tamdeploy.deploy.inputs.clips import ClipSpec
from tamdeploy.deploy.inputs.video import Views
from tamdeploy.deploy.predict.decoding import Decoded, decode_one, decoded, default_workers
from tamdeploy.deploy.predict.labels import check_label_count, read_labels
from tamdeploy.deploy.runners.base import Runner
from tamdeploy.errors import DataError, TamdeployError


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Prediction:
    """One video's result: ``logits`` averaged over its views (float32 ``[classes]``), or ``error``."""

    source: str
    logits: np.ndarray | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Decoded, and the model gave finite logits (an FP16 overflow gives NaN or inf: not a label)."""
        return self.logits is not None and bool(np.isfinite(self.logits).all())

    @property
    def label(self) -> int | None:
        return None if self.logits is None else int(np.argmax(self.logits))

    def top(self, k: int) -> list[tuple[int, float]]:
        """(class, probability) of the k best classes, best first; probability = softmax of the logits."""
        if self.logits is None:
            return []
        probabilities = softmax(self.logits.astype(np.float64))
        order = np.argsort(-self.logits, kind="stable")[:k]
        return [(int(i), float(probabilities[i])) for i in order]

    def to_dict(self, names: Sequence[str] | None, k: int) -> dict[str, Any]:
        if self.logits is not None and not self.ok:
            return {"video": self.source, "top_k": [], "error": "the model gave NaN or infinite logits"}
        top = [{"index": i, "label": names[i] if names else str(i), "score": round(p, 6)} for i, p in self.top(k)]
        return {"video": self.source, "top_k": top, "error": self.error}


@dataclass
class StreamStats:
    """What a stream saw: videos, views run, model seconds (the rest of the wall time is waiting on decoding)."""

    videos: int = 0
    failed: int = 0
    inputs: int = 0
    model_seconds: float = 0.0
    batches: list[int] = field(default_factory=list)


def model_spec(runner: Runner) -> ClipSpec:
    """The clip geometry and normalisation an active runner's model expects (from its metadata)."""
    if runner.config is None:
        raise DataError(f"{runner.name}: the model carries no tamdeploy metadata (T, input size, mean/std), so its "
                        "inputs cannot be prepared; export it with `tamdeploy export`")
    return ClipSpec.from_config(runner.config)


def logits_of(runner: Runner, batch: np.ndarray) -> np.ndarray:
    """The first output (the logits) for a batch."""
    outputs = runner.infer({runner.input_name: batch})
    return np.asarray(outputs[runner.output_names[0]], dtype=np.float32)


def predict_stream(items: Iterable[Decoded], runners: Sequence[Runner], batch: int, spec: ClipSpec | None = None,
                   stats: StreamStats | None = None) -> Iterator[tuple[Decoded, list[np.ndarray] | None]]:
    """(decoded video, one averaged logits vector per runner) in input order; None for a failed video.

    The models always run batches of exactly ``batch`` inputs (the last one may be smaller): a video's
    views may be split across two batches, and its scores are averaged once all of them are in. So a
    TensorRT profile or an OpenVINO compile for ``batch`` fits every call, whatever the views and failures.
    ``spec``: normalise uint8 frames (what decode workers hand over) on the way in.
    """
    if batch < 1:
        raise TamdeployError(f"`batch` must be at least 1, got {batch}")
    stats = stats if stats is not None else StreamStats()
    waiting: deque[list] = deque()  # [item, rows still to run, per-runner logits rows so far]
    rows: list[np.ndarray] = []  # inputs not yet run, in order
    owners: list[list] = []  # the waiting entry each row belongs to

    def run(count: int) -> None:
        inputs = np.stack(rows[:count])
        if spec is not None and inputs.dtype == np.uint8:
            inputs = spec.normalise(inputs)
        started = time.perf_counter()
        outputs = [logits_of(runner, inputs) for runner in runners]
        stats.model_seconds += time.perf_counter() - started
        stats.inputs += count
        stats.batches.append(count)
        for i, owner in enumerate(owners[:count]):
            owner[2].append([out[i] for out in outputs])
            owner[1] -= 1
        del rows[:count], owners[:count]

    def finished() -> Iterator[tuple[Decoded, list[np.ndarray] | None]]:
        while waiting and waiting[0][1] == 0:
            item, _, per_view = waiting.popleft()
            stats.videos += 1
            if item.views is None:
                stats.failed += 1
                yield item, None
            else:
                yield item, [np.mean([view[r] for view in per_view], axis=0) for r in range(len(runners))]

    for item in items:
        count = 0 if item.views is None else len(item.views)
        entry = [item, count, []]
        waiting.append(entry)
        if count:
            rows.extend(item.views)
            owners.extend([entry] * count)
        while len(rows) >= batch:
            run(batch)
        yield from finished()
    if rows:
        run(len(rows))
    yield from finished()


class Predictor:
    """Top-k labels for videos from any artifact the runners take (checkpoint, ONNX, precision graphs,
    OpenVINO IR, TensorRT plan)::

        with Predictor("model.onnx", labels="labels.txt") as p:
            print(p.predict("clip.mp4").top(5))

    ``views`` ("3x3" or ``Views``): test-time views averaged per video; ``batch``: model inputs per
    inference; ``workers``: decode processes for ``predict_many`` (default 0: decode in this process;
    None: from the core count; worker processes re-run an unguarded script, so a script that uses them
    needs ``if __name__ == "__main__":``, as PyTorch's DataLoader does). ``runner_options`` go to the
    runner (``open_runner``).
    """

    def __init__(self, artifact: str | os.PathLike, *, backend: str | None = None,
                 labels: str | os.PathLike | Sequence[str] | None = None, views: str | Views | None = None,
                 batch: int = 8, workers: int | None = 0, runner: Runner | None = None,
                 **runner_options: Any) -> None:
        from tamdeploy.deploy.runners.factory import open_runner

        self.artifact = Path(artifact)
        self.views = Views.parse(views) if isinstance(views, str) else (views or Views())
        self.batch = batch
        self.workers = default_workers() if workers is None else workers
        self.runner = runner or open_runner(artifact, backend, **runner_options)
        self._labels = labels
        self.class_names: list[str] | None = None
        self.spec: ClipSpec | None = None

    def __enter__(self) -> Predictor:
        self.runner.activate()
        try:
            self.spec = model_spec(self.runner)
            self.class_names = resolve_labels(self._labels, self.runner)
        except BaseException:
            self.runner.deactivate()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.runner.deactivate()

    def _active_spec(self) -> ClipSpec:
        if self.spec is None:
            raise RuntimeError("use the Predictor as a context manager: with Predictor(...) as p: ...")
        return self.spec

    def predict(self, path: str | os.PathLike) -> Prediction:
        """One video, decoded here (no workers)."""
        spec = self._active_spec()
        views, error = decode_one(str(path), spec, self.views)
        item = Decoded(0, str(path), views, error)
        ((_, logits),) = predict_stream([item], [self.runner], self.batch)
        return Prediction(str(path), None if logits is None else logits[0], error)

    def predict_many(self, paths: Iterable[str | os.PathLike], progress: bool = False,
                     total: int | None = None, stats: StreamStats | None = None) -> Iterator[Prediction]:
        """Every path in input order, decoding in ``workers`` processes ahead of the model."""
        spec = self._active_spec()
        items = decoded((str(p) for p in paths), spec, self.views, self.workers, self.batch)
        with progress_bar(progress, unit="videos") as bar:
            task = bar.add_task("predicting", total=total)
            for item, logits in predict_stream(items, [self.runner], self.batch, spec, stats):
                bar.advance(task)
                yield Prediction(item.source, None if logits is None else logits[0], item.error)


def resolve_labels(labels: str | os.PathLike | Sequence[str] | None, runner: Runner) -> list[str] | None:
    """Class names from a labels file (or a list), checked against the model's class count."""
    if labels is None:
        return None
    names = list(labels) if not isinstance(labels, (str, os.PathLike)) else read_labels(labels)
    if runner.config is not None and runner.config.num_classes:
        check_label_count(names, runner.config.num_classes, labels if isinstance(labels, (str, os.PathLike))
                          else "the labels")
    return names
