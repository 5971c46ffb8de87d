"""``tamdeploy verify``: does a deployed artifact compute what the PyTorch original computes?

The artifact runs on its runner (``open_runner``: an ``.onnx`` on ONNX Runtime, a ``.plan`` on TensorRT)
and the checkpoint on PyTorch (CPU, FP32: the reference must not itself carry TF32 or FP16 error), on the
same inputs: clips read from ``data`` (``deploy.inputs``; undecodable files are named, skipped and counted)
or, without data, seeded random pixels normalised like real frames. Every output is compared over all
samples (``tamdeploy.compare``) and judged by the tolerance of the artifact's precision (``TOLERANCES``).

When the ONNX file carries tamdeploy metadata, its config (T, input size, mean/std, classes) decides how
the checkpoint is loaded and how the inputs are made, and the checkpoint's sha256 is checked against the
one the file was exported from (a mismatch is a warning: the same weights may live in another file).
``bisect=True`` then looks for the first intermediate tensor that diverges (``deploy.check.bisect``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from tamdeploy.compare import (
    TOLERANCES,
    Check,
    Comparison,
    Tolerance,
    compare,
    fails_on_rel_l2_alone,
    rounding_limit,
    rounding_note,
)
from tamdeploy.console import progress_bar
from tamdeploy.deploy.check.bisect import BisectReport
from tamdeploy.deploy.inputs.clips import ClipSpec, DataSummary, iter_clips, random_clips
from tamdeploy.deploy.runners import OnnxRuntimeRunner, Runner, TorchRunner, open_runner
from tamdeploy.errors import DataError, TamdeployError
from tamdeploy.files import sha256_file
from tamdeploy.models.config import ModelConfig

DEFAULT_BATCH = 8
DEFAULT_RANDOM_SAMPLES = 16
DEFAULT_SEED = 0


@dataclass(frozen=True)
class OutputResult:
    name: str
    comparison: Comparison
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        return {"passed": self.passed, **self.comparison.to_dict(), "checks": [asdict(c) for c in self.checks]}


@dataclass
class InputsUsed:
    """Where the samples came from: ``source`` is "data" (``path``) or "random" (``seed``)."""

    source: str
    path: str | None
    seed: int | None
    samples: int
    batch: int
    shape: list[int | str]
    summary: DataSummary = field(default_factory=DataSummary)

    def describe(self) -> str:
        if self.source == "random":
            return (f"{self.samples} seeded random clip(s) (uniform 8-bit pixels, normalised; seed "
                    f"{self.seed}): no --data given")
        skipped = len(self.summary.skipped)
        return (f"{self.samples} clip(s) from {len(self.summary.used)} file(s) in {self.path}"
                + (f", {skipped} undecodable file(s) skipped" if skipped else ""))

    def to_dict(self) -> dict:
        return {"source": self.source, "path": self.path, "seed": self.seed, "samples": self.samples,
                "batch": self.batch, "shape": self.shape, "description": self.describe(),
                "files_used": len(self.summary.used), "skipped_count": len(self.summary.skipped),
                **self.summary.to_dict()}


@dataclass
class VerifyReport:
    artifact: str
    runner: str
    checkpoint: str
    checkpoint_sha256: str
    exported_from_sha256: str | None  # from the artifact's metadata; None when it has none
    precision: str
    precision_source: str  # "metadata" or "default"
    tolerance: Tolerance
    inputs: InputsUsed
    outputs: dict[str, OutputResult]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bisect: BisectReport | None = None
    bisect_skipped: str | None = None  # why --bisect could not run
    runner_settings: dict = field(default_factory=dict)  # how the backend ran the artifact (``Runner.settings``)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs.values())

    @property
    def checkpoint_matches_export(self) -> bool | None:
        return None if self.exported_from_sha256 is None else self.exported_from_sha256 == self.checkpoint_sha256

    def to_dict(self) -> dict:
        return {
            "artifact": self.artifact, "runner": self.runner, "runner_settings": self.runner_settings,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256, "exported_from_sha256": self.exported_from_sha256,
            "checkpoint_matches_export": self.checkpoint_matches_export,
            "precision": self.precision, "precision_source": self.precision_source,
            "thresholds": self.tolerance.to_dict(), "inputs": self.inputs.to_dict(),
            "outputs": {name: o.to_dict() for name, o in self.outputs.items()},
            "passed": self.passed, "verdict": "PASS" if self.passed else "FAIL",
            "bisect": self.bisect.to_dict() if self.bisect else (
                {"skipped": self.bisect_skipped} if self.bisect_skipped else None),
            "seconds": round(self.seconds, 3), "warnings": list(self.warnings), "notes": list(self.notes),
        }


# --- the reference ---------------------------------------------------------------------------------


@dataclass
class _Reference:
    model: nn.Module
    config: ModelConfig
    sha256: str
    warnings: list[str]


def _artifact_config(runner: Runner, artifact: Path) -> tuple[int | None, int]:
    """(T or None, S) the artifact takes, from its metadata or else from its input shape."""
    if runner.config is not None:
        return runner.config.num_segments, runner.config.input_size
    shape = runner.input_shape
    if len(shape) == 5 and shape[1] is not None and shape[3] is not None and shape[3] == shape[4]:
        return shape[1], shape[3]
    if len(shape) == 4 and shape[2] is not None and shape[2] == shape[3]:
        return None, shape[2]
    spec = runner.input_specs()[0]
    raise TamdeployError(f"{artifact.name} takes {spec.describe()}, which is neither a clip [N, T, 3, S, S] nor "
                         f"an image [N, 3, S, S] with a fixed T and S: verify cannot build inputs for it")


def _load_reference(checkpoint: Path, runner: Runner, artifact: Path, trust: bool) -> _Reference:
    """The checkpoint's network, built for the T and input size the artifact takes; a network that
    differs from the one the artifact was exported from is a user error."""
    from tamdeploy.models import load_checkpoint

    num_segments, input_size = _artifact_config(runner, artifact)
    want = runner.config
    if want is not None and want.block == "custom":
        raise TamdeployError(f"{artifact.name} was exported from your own network ({want.arch}); verify rebuilds "
                             "tamdeploy's networks only: the export's own parity check covers user networks")
    loaded = load_checkpoint(checkpoint, trust_checkpoint=trust)
    cfg = loaded.config
    if (num_segments is None) != (not cfg.is_video):
        kind = "clips" if num_segments is not None else "images"
        raise TamdeployError(f"{artifact.name} takes {kind}, but {checkpoint.name} holds "
                             f"{'a video' if cfg.is_video else 'an image'} model ({cfg.arch})")
    if want is not None:
        fields = ("arch", "width", "num_classes", "tam_kernel_size")
        diff = [f"{f} {getattr(want, f)} vs {getattr(cfg, f)}" for f in fields if getattr(want, f) != getattr(cfg, f)]
        if diff:
            raise TamdeployError(f"{checkpoint.name} is not the network {artifact.name} was exported from "
                                 f"({'; '.join(diff)}, artifact vs checkpoint)")
    warnings = list(loaded.warnings)
    if num_segments is not None and num_segments != cfg.num_segments:
        if cfg.block == "tam":
            raise TamdeployError(f"{artifact.name} takes clips of T={num_segments} frames, but the TAM weights in "
                                 f"{checkpoint.name} were trained for T={cfg.num_segments}: they are not the "
                                 f"same model")
        # T is not in the weights (ACTION-Net, TSN): build the network for the artifact's T
        loaded = load_checkpoint(checkpoint, num_segments=num_segments, trust_checkpoint=trust)
        warnings = list(loaded.warnings)
    if num_segments is not None:  # T came from the artifact: the "assumed T" warning does not apply
        warnings = [w for w in warnings if "do not record T" not in w]
    config = replace(loaded.config, input_size=input_size)
    if want is not None:
        config = replace(config, mean=want.mean, std=want.std)
    return _Reference(loaded.model, config, loaded.sha256, warnings)


def _check_inputs_agree(candidate: Runner, reference: Runner, artifact: Path, checkpoint: Path) -> None:
    (ref,) = reference.input_specs()
    specs = candidate.input_specs()
    if len(specs) != 1:
        raise TamdeployError(f"{artifact.name} takes {len(specs)} inputs; the checkpoint's model takes one "
                             f"({ref.describe()})")
    (got,) = specs
    same = len(got.shape) == len(ref.shape) and all(
        a is None or b is None or a == b for a, b in zip(got.shape[1:], ref.shape[1:], strict=True))
    if not same:
        raise TamdeployError(f"{artifact.name} takes {got.describe()} but the model in {checkpoint.name} takes "
                             f"{ref.describe()}: they are not the same network")


def _pair_outputs(candidate: Runner, reference: Runner, artifact: Path) -> dict[str, str]:
    """{candidate output: reference output}: by name, or the single output of each."""
    cand, ref = candidate.output_names, reference.output_names
    pairs = {name: name for name in cand if name in ref}
    if not pairs and len(cand) == 1 and len(ref) == 1:
        pairs = {cand[0]: ref[0]}
    if not pairs:
        raise TamdeployError(f"cannot pair the outputs of {artifact.name} ({', '.join(cand)}) with the PyTorch "
                             f"model's ({', '.join(ref)})")
    return pairs


# --- inputs ----------------------------------------------------------------------------------------


def _chunks(spec: ClipSpec, data: Path | None, samples: int | None, batch: int, seed: int,
            summary: DataSummary) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Batches of at most ``batch`` samples: clips from ``data`` (read lazily, undecodable files recorded in
    ``summary``), else seeded random ones (chunk k uses seed ``seed + k``: same seed and batch, same inputs)."""
    if data is None:
        total = samples or DEFAULT_RANDOM_SAMPLES
        for k, start in enumerate(range(0, total, batch)):
            chunk = random_clips(spec, min(batch, total - start), seed=seed + k)
            summary.used.extend(chunk.sources)
            yield chunk.array, chunk.sources
        return
    arrays, sources = [], []
    for clip in iter_clips(data, spec, limit=samples, progress=False, summary=summary):
        arrays.append(clip.array)
        sources.append(clip.source)
        if len(arrays) == batch:
            yield np.stack(arrays), sources
            arrays, sources = [], []
    if arrays:
        yield np.stack(arrays), sources


def _infer(runner: Runner, name: str, x: np.ndarray, fixed_batch: int | None) -> dict[str, np.ndarray]:
    """Run ``x``; an artifact built for a fixed batch gets it padded with copies of the last sample."""
    dtype = runner.input_specs()[0].dtype
    n = len(x)
    if fixed_batch is not None and n != fixed_batch:
        x = np.concatenate([x, np.repeat(x[-1:], fixed_batch - n, axis=0)])
    out = runner.infer({name: np.ascontiguousarray(x, dtype=dtype)})
    return {k: np.asarray(v)[:n] for k, v in out.items()}


def _per_sample_rel_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)


@dataclass
class _Runs:
    got: dict[str, list[np.ndarray]]  # per candidate output, one array per batch
    want: dict[str, list[np.ndarray]]  # the reference's, paired
    count: int = 0
    worst: tuple[float, np.ndarray | None, str] = (-1.0, None, "")  # (relative L2, sample, source)


def _run_both(candidate: Runner, reference: Runner, pairs: dict[str, str],
              batches: Iterator[tuple[np.ndarray, list[str]]], fixed: int | None, total: int | None,
              progress: bool, artifact: Path) -> _Runs:
    """Every batch through both runners; keeps the outputs and the sample whose first output differs most
    (the one ``--bisect`` looks at)."""
    runs = _Runs({name: [] for name in pairs}, {name: [] for name in pairs})
    first = next(iter(pairs))
    with progress_bar(progress) as bar:
        task = bar.add_task("verifying", total=total)
        for x, sources in batches:
            out = _infer(candidate, candidate.input_name, x, fixed)
            ref_out = _infer(reference, reference.input_name, x, None)
            for cand_name, ref_name in pairs.items():
                a, b = out[cand_name], ref_out[ref_name]
                if a.shape != b.shape:
                    raise TamdeployError(f"{artifact.name} output '{cand_name}' is {list(a.shape)} but the PyTorch "
                                         f"model's is {list(b.shape)}: they are not the same network")
                runs.got[cand_name].append(a)
                runs.want[cand_name].append(b)
            errors = _per_sample_rel_l2(out[first], ref_out[pairs[first]])
            errors = np.where(np.isfinite(errors), errors, np.inf)
            i = int(np.argmax(errors))
            if errors[i] > runs.worst[0]:
                runs.worst = (float(errors[i]), x[i:i + 1].copy(), sources[i])
            runs.count += len(x)
            bar.advance(task, len(x))
    return runs


# --- FP32 rounding ----------------------------------------------------------------------------------

def _fp32_rounding(ref: Any, want: dict[str, list[np.ndarray]], batches: Iterator[tuple[np.ndarray, list[str]]],
                   pairs: dict[str, str]) -> dict[str, float]:
    """Per reference output: relative L2 of PyTorch FP32's outputs (``want``) from the same model in float64
    on the same inputs (``batches`` regenerated from the same data and seed)."""
    import copy

    exact = TorchRunner(_Float64(copy.deepcopy(ref.model)), config=ref.config, device="cpu")
    got64: dict[str, list[np.ndarray]] = {name: [] for name in pairs}
    with exact:
        for x, _ in batches:
            out = exact.infer({exact.input_name: x})
            for cand_name, ref_name in pairs.items():
                got64[cand_name].append(out[ref_name])
    return {pairs[name]: compare(np.concatenate(want[name]).astype(np.float64),
                                 np.concatenate(got64[name])).rel_l2_error for name in pairs}


class _Float64(nn.Module):
    """The model computing in float64 on FP32 inputs, its outputs back in float64 (the exact reference)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model.double()

    def forward(self, x: Any) -> Any:
        return self.model(x.double())


# --- verify ----------------------------------------------------------------------------------------


def _refuse_self_comparison(artifact: Path, checkpoint: Path) -> None:
    """The same file on both sides would compare PyTorch with itself and always pass."""
    same = artifact.resolve() == checkpoint.resolve() or (
        artifact.stat().st_size == checkpoint.stat().st_size and sha256_file(artifact) == sha256_file(checkpoint))
    if same:
        raise TamdeployError(f"{artifact} and {checkpoint} are the same file (same sha256): verify would compare the "
                             f"PyTorch model with itself; pass the deployed model (.onnx, .xml, .plan) as the artifact")


def verify(artifact: str | os.PathLike, checkpoint: str | os.PathLike, *, data: str | os.PathLike | None = None,
           samples: int | None = None, batch: int = DEFAULT_BATCH, backend: str | None = None,
           bisect: bool = False, trust_checkpoint: bool = False, seed: int = DEFAULT_SEED,
           threads: int | None = None, runner_options: Mapping[str, Any] | None = None,
           progress: bool = True) -> VerifyReport:
    """Run ``artifact`` and the checkpoint's PyTorch model on the same inputs and judge every output by
    the artifact's precision (``TOLERANCES``). ``samples``: how many (default: every clip in ``data``, or
    16 random ones); ``batch``: samples per inference; ``threads``: intra-op threads of both runtimes (None:
    their defaults; 1 is much faster for small models on a CPU that other work shares, where every
    multi-threaded op waits for a descheduled thread); ``runner_options``: more options of the artifact's
    runner (OpenVINO's precision, performance, streams, cache_dir). User errors raise ``TamdeployError``."""
    started = time.perf_counter()
    artifact, checkpoint = Path(artifact), Path(checkpoint)
    for what, path in (("artifact", artifact), ("checkpoint", checkpoint)):
        if not path.exists():
            raise TamdeployError(f"{what} {path} does not exist")
        if not path.is_file():
            raise TamdeployError(f"{what} {path} is not a file")
    if batch < 1:
        raise DataError(f"`batch` must be at least 1, got {batch}")
    if samples is not None and samples < 1:
        raise DataError(f"`samples` must be at least 1, got {samples}")
    if threads is not None and threads < 1:
        raise TamdeployError(f"`threads` must be at least 1, got {threads}")
    data = Path(data) if data is not None else None
    _refuse_self_comparison(artifact, checkpoint)

    candidate = open_runner(artifact, backend, threads=threads, **dict(runner_options or {}))
    # the two runners take turns: the artifact's threads must not spin (and take the CPU) while PyTorch runs
    candidate.share_cpu()
    with candidate:
        precision = candidate.precision or "fp32"
        precision_source = "metadata" if candidate.precision else "default"
        if precision not in TOLERANCES:
            raise TamdeployError(f"{artifact.name} declares precision {precision!r}; verify knows "
                                 f"{', '.join(TOLERANCES)}")
        tolerance = TOLERANCES[precision]
        meta = getattr(candidate, "metadata", None)
        exported_from = meta.checkpoint_sha256 if meta is not None else None
        ref = _load_reference(checkpoint, candidate, artifact, trust_checkpoint)
        warnings = list(ref.warnings) + list(getattr(candidate, "notes", []))
        notes = []
        if precision_source == "default":
            notes.append(f"{artifact.name} does not declare its precision: judged as fp32")
        if exported_from is not None and exported_from != ref.sha256:
            warnings.append(f"{checkpoint.name} (sha256 {ref.sha256[:12]}...) is not the file {artifact.name} was "
                            f"exported from (sha256 {exported_from[:12]}...): the weights may still match; the "
                            f"comparison below says whether they do")
        spec = ClipSpec.from_config(ref.config)
        reference = TorchRunner(ref.model, config=ref.config, device="cpu", threads=threads)
        reference.share_cpu()
        with reference:
            _check_inputs_agree(candidate, reference, artifact, checkpoint)
            pairs = _pair_outputs(candidate, reference, artifact)
            input_name = candidate.input_name
            fixed = candidate.input_shape[0]
            if fixed is not None and fixed != batch:
                notes.append(f"{artifact.name} takes a fixed batch of {fixed}: batches were run at {fixed}")
                batch = fixed
            summary = DataSummary()
            total = samples or (DEFAULT_RANDOM_SAMPLES if data is None else None)
            runs = _run_both(candidate, reference, pairs, _chunks(spec, data, samples, batch, seed, summary),
                             fixed, total, progress, artifact)
            outputs = {}
            for name in pairs:
                comparison = compare(np.concatenate(runs.got[name]), np.concatenate(runs.want[name]))
                outputs[name] = OutputResult(name, comparison, tolerance.judge(comparison))
            if precision == "fp32" and fails_on_rel_l2_alone(c for r in outputs.values() for c in r.checks):
                # large logits (a deep net, big activations): FP32's own rounding alone can exceed 1e-5
                own = _fp32_rounding(ref, runs.want, _chunks(spec, data, samples, batch, seed, DataSummary()), pairs)
                for name, result in list(outputs.items()):
                    widened = rounding_limit(tolerance, own[pairs[name]])
                    if widened is not None:  # the same judgement, this one limit widened
                        outputs[name] = replace(result, checks=widened.judge(result.comparison))
                        notes.append(rounding_note(name, own[pairs[name]], widened, tolerance))
        count = runs.count
        inputs = InputsUsed("data" if data is not None else "random", str(data) if data else None,
                            None if data is not None else seed, count, batch,
                            ["N", *spec.sample_shape], summary)
        if tolerance.top1_min is not None and count < 1 / (1 - tolerance.top1_min):
            notes.append(f"only {count} sample(s): top-1 agreement moves in steps of {1 / count:.0%}, so "
                         f">= {tolerance.top1_min:g} means every sample must agree; use more samples")
        report = VerifyReport(str(artifact), candidate.name, str(checkpoint), ref.sha256, exported_from, precision,
                              precision_source, tolerance, inputs, outputs, 0.0, warnings, notes,
                              runner_settings=candidate.settings)
        if bisect:
            _run_bisect(report, artifact, candidate, ref, input_name, runs.worst, threads)
    report.seconds = time.perf_counter() - started
    return report


def _run_bisect(report: VerifyReport, artifact: Path, candidate: Runner, ref: _Reference, input_name: str,
                worst: tuple[float, np.ndarray | None, str], threads: int | None) -> None:
    """Bisect on the sample whose first output differs most."""
    import onnx

    from tamdeploy.deploy.check.bisect import bisect

    if not isinstance(candidate, OnnxRuntimeRunner) or artifact.suffix.lower() != ".onnx":
        report.bisect_skipped = (f"bisect compares ONNX intermediate values, and {artifact.name} runs on "
                                 f"{candidate.name}: bisect the .onnx it was built from")
        return
    _, sample, source = worst
    spec = candidate.input_specs()[0]
    if spec.shape[0] is not None:  # a fixed batch: the sample repeated
        sample = np.repeat(sample, spec.shape[0], axis=0)
    dtype = spec.dtype
    report.bisect = bisect(onnx.load(str(artifact)), ref.model, {input_name: sample.astype(dtype)},
                           precision=report.precision, rel_l2_limit=report.tolerance.bisect_rel_l2,
                           providers=candidate.providers, threads=threads, sources=[source])
