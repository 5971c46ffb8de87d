"""Latency and throughput of several runners, measured interleaved in one run.

``run_benchmark`` works in two phases:

1. Sequentially, per runner: activate it (``load_seconds``) and make one call at every batch size
   (``first_ms``), with the peak memory of that span measured (see ``RunnerResult``).
2. Per batch size: ``warmup`` untimed rounds, then timed rounds until ``iters`` rounds or ``duration``
   seconds. A round calls every runner once on the same input, starting one runner later than the
   previous round, so that drift (thermal, other load) and cache effects reach all runners alike.
   Each call is timed with ``time.perf_counter_ns`` around ``runner.infer(feed)``: host arrays in,
   host arrays out, so GPU runners include their copies. The garbage collector is off while timing.
   With several runners, calls start ``settle`` seconds apart: ONNX Runtime's and OpenMP's threads
   busy-wait for a while after a call (their default, and what a deployment gets), and without the
   pause they would take the CPU from the next runner's call.
"""

from __future__ import annotations

import ctypes
import gc
import math
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, suppress
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.progress import Progress

from tamdeploy import __version__
from tamdeploy.console import progress_bar
from tamdeploy.deploy.bench.report import BatchResult, BenchReport, LatencyStats, RunnerResult
from tamdeploy.deploy.runners.base import Runner, TensorSpec, random_feed
from tamdeploy.errors import DataError, TamdeployError
from tamdeploy.system import system_info

DEFAULT_BATCHES = (1, 4, 16)
DEFAULT_ITERS = 50
DEFAULT_SETTLE_S = 0.05  # longer than ONNX Runtime's and libgomp's spin-wait after a parallel region
Feed = Mapping[str, np.ndarray]


def run_benchmark(
    runners: Sequence[tuple[str, Runner]],
    batches: Sequence[int] = DEFAULT_BATCHES,
    *,
    warmup: int = 5,
    iters: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    inputs: Feed | None = None,
    seed: int = 0,
    settle: float | None = None,
    progress: bool = True,
) -> BenchReport:
    """Measure ``runners`` (``(label, runner)`` pairs, not yet active; the first is the reference of
    the ratios) at each batch size, then deactivate them.

    ``iters`` timed rounds per batch, or rounds for ``duration`` seconds per batch (at least one);
    neither: ``DEFAULT_ITERS``. ``threads`` sets every runner's intra-op threads (torch.set_num_threads,
    ONNX Runtime's intra_op_num_threads). ``inputs`` is a feed whose first axis holds clips: a batch of
    B takes clips 0..B-1, cycling when there are fewer; without it, each batch gets standard-normal
    arrays (seeded), made once and shared by the runners whose input specs are equal. ``settle``: the
    pause in seconds before each call when there are several runners (None: ``DEFAULT_SETTLE_S``).
    """
    batches = _check_args(runners, batches, warmup, iters, duration, threads, settle)
    if iters is None and duration is None:
        iters = DEFAULT_ITERS
    started = time.perf_counter()
    feeds = _Inputs(inputs, seed)
    settle = (DEFAULT_SETTLE_S if settle is None else settle) if len(runners) > 1 else 0.0
    notes = [f"calls start {settle * 1000:g} ms apart, so that threads still busy-waiting after one runner's "
             f"call do not slow the next runner"] if settle > 0 else []
    with ExitStack() as stack, progress_bar(progress) as bar:
        loads = []
        task = bar.add_task("loading", total=len(runners))
        for label, runner in runners:
            bar.update(task, description=f"loading {label}")
            if threads is not None:
                runner.threads = threads
            loads.append(_load(stack, runner, batches, feeds))
            bar.advance(task)
        bar.remove_task(task)
        samples: dict[tuple[int, int], list[int]] = {}
        for batch in batches:
            batch_feeds = [feeds.get(runner, batch) for _, runner in runners]
            timed = _measure([r for _, r in runners], batch_feeds, batch, warmup, iters, duration, settle, bar)
            for i, ns in enumerate(timed):
                samples[i, batch] = ns
        results = [_runner_result(label, runner, load, batches, samples, i)
                   for i, ((label, runner), load) in enumerate(zip(runners, loads, strict=True))]
    _fill_ratios(results)
    return BenchReport(
        runners=results, batches=list(batches), warmup=warmup, iters=iters, duration_s=duration,
        threads=threads, seed=seed, inputs="given" if inputs is not None else f"random normal (seed {seed})",
        wall_seconds=time.perf_counter() - started, environment=environment(), notes=notes,
    )


def _check_args(runners: Sequence[tuple[str, Runner]], batches: Sequence[int], warmup: int, iters: int | None,
                duration: float | None, threads: int | None, settle: float | None) -> list[int]:
    if not runners:
        raise TamdeployError("nothing to benchmark: give at least one runner")
    labels = [label for label, _ in runners]
    if len(set(labels)) != len(labels):
        raise TamdeployError(f"runner labels must differ, got {labels}")
    for label, runner in runners:
        if runner.is_active:
            raise TamdeployError(f"runner {label!r} is already active: the benchmark activates the runners "
                                 f"itself, to time loading and measure memory")
    batches = [int(b) for b in batches]
    if not batches or any(b < 1 for b in batches) or len(set(batches)) != len(batches):
        raise TamdeployError(f"batch sizes must be distinct and >= 1, got {batches}")
    if iters is not None and duration is not None:
        raise TamdeployError("give iterations or a duration, not both")
    if iters is not None and iters < 1:
        raise TamdeployError(f"iterations must be >= 1, got {iters}")
    if duration is not None and not duration > 0:
        raise TamdeployError(f"duration must be > 0 seconds, got {duration}")
    if warmup < 0:
        raise TamdeployError(f"warm-up rounds must be >= 0, got {warmup}")
    if threads is not None and threads < 1:
        raise TamdeployError(f"`threads` must be at least 1, got {threads}")
    if settle is not None and not 0 <= settle <= 10:
        raise TamdeployError(f"the pause between calls must be 0-10 seconds, got {settle}")
    return batches


# --- inputs ------------------------------------------------------------------------------------------

class _Inputs:
    """Each batch's feed, made once: from the given clips, else random per distinct input specs."""

    def __init__(self, given: Feed | None, seed: int) -> None:
        self.given, self.seed = given, seed
        self.cache: dict[tuple[tuple[TensorSpec, ...] | None, int], Feed] = {}

    def get(self, runner: Runner, batch: int) -> Feed:
        specs = tuple(runner.input_specs())
        key = (None if self.given is not None else specs, batch)
        if key not in self.cache:
            if self.given is not None:
                self.cache[key] = {name: _take_clips(name, a, batch) for name, a in self.given.items()}
            else:
                self.cache[key] = random_feed(specs, batch, self.seed)
        return self.cache[key]


def _take_clips(name: str, array: np.ndarray, batch: int) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.ndim == 0 or array.shape[0] == 0:
        raise DataError(f"input '{name}' must be an array with at least one clip on its first axis")
    if array.shape[0] == batch:
        return array
    return np.ascontiguousarray(np.take(array, np.arange(batch) % array.shape[0], axis=0))


# --- phase 1: loading, first calls, memory -----------------------------------------------------------


Load = tuple[float, dict[int, float], float | None, float | None]


def _load(stack: ExitStack, runner: Runner, batches: list[int], feeds: _Inputs) -> Load:
    """Activate ``runner`` and call it once per batch: (load s, first call ms per batch, peak RSS MB,
    peak CUDA MB). The input arrays are made between two RSS windows, so they do not count."""
    cuda = runner.torch_cuda_device
    if cuda is not None:
        import torch

        torch.cuda.synchronize(cuda)
        torch.cuda.reset_peak_memory_stats(cuda)
        cuda_before = torch.cuda.memory_allocated(cuda)
    rss_start = _reset_peak_rss()
    stack.enter_context(runner)
    load_peak, rss_loaded = _status_kb("VmHWM"), _status_kb("VmRSS")
    batch_feeds = {batch: feeds.get(runner, batch) for batch in batches}
    rss_calls = _reset_peak_rss()
    first = {}
    for batch in batches:
        t0 = time.perf_counter_ns()
        runner.infer(batch_feeds[batch])
        first[batch] = (time.perf_counter_ns() - t0) / 1e6
    peak_rss = None
    if rss_start is not None and rss_calls is not None:
        calls_peak = _status_kb("VmHWM") - rss_calls
        peak_rss = max(0, load_peak - rss_start, rss_loaded - rss_start + calls_peak) / 1024
    peak_cuda = None
    if cuda is not None:
        peak_cuda = max(0, torch.cuda.max_memory_allocated(cuda) - cuda_before) / 2**20
    return runner.load_seconds, first, peak_rss, peak_cuda


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak_rss() -> int | None:
    """Reset VmHWM to the current RSS (Linux >= 4.0) and return that RSS in kB; None where /proc does not
    allow it. Memory that earlier work freed goes back to the system first (``_release_freed_memory``):
    kept by the allocator, it would be reused without growing the resident set and hide what comes next."""
    _release_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _release_freed_memory() -> None:
    """glibc's ``malloc_trim(0)``: return the free pages of every malloc arena to the system. A test
    allocating 70 MB after earlier tests had freed large arrays read 40 MB of growth without it. No-op
    where the C library has no such call (musl, macOS, Windows)."""
    with suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).malloc_trim(0)


# --- phase 2: interleaved timing ---------------------------------------------------------------------


def _measure(runners: list[Runner], feeds: list[Feed], batch: int, warmup: int, iters: int | None,
             duration: float | None, settle: float, bar: Progress) -> list[list[int]]:
    """Per runner, the nanoseconds of each timed call at this batch."""
    n = len(runners)
    for round_ in range(warmup):
        for i in _order(round_, n):
            time.sleep(settle)
            runners[i].infer(feeds[i])
    samples: list[list[int]] = [[] for _ in runners]
    total = iters if iters is not None else max(1, math.ceil(duration))
    unit = "rounds" if iters is not None else "s"
    task = bar.add_task(f"batch {batch} ({unit})", total=total)
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        deadline = None if duration is None else start + int(duration * 1e9)
        round_ = 0
        while True:
            for i in _order(warmup + round_, n):
                time.sleep(settle)
                t0 = time.perf_counter_ns()
                runners[i].infer(feeds[i])
                samples[i].append(time.perf_counter_ns() - t0)
            round_ += 1
            now = time.perf_counter_ns()
            if deadline is None:
                bar.update(task, completed=round_)
                if round_ >= iters:
                    break
            else:
                bar.update(task, completed=min(total, int((now - start) / 1e9)))
                if now >= deadline:
                    break
    finally:
        if gc_was_enabled:
            gc.enable()
    bar.remove_task(task)
    return samples


def _order(round_: int, n: int) -> list[int]:
    return [(round_ + k) % n for k in range(n)]


# --- results -----------------------------------------------------------------------------------------


def _runner_result(label: str, runner: Runner, load: Load, batches: list[int], samples, index: int) -> RunnerResult:
    load_seconds, first, peak_rss, peak_cuda = load
    frames = runner.frames_per_clip
    results = []
    for batch in batches:
        ms = np.asarray(samples[index, batch], dtype=np.float64) / 1e6
        stats = LatencyStats.from_samples(ms)
        clips = batch * 1000.0 / stats.median_ms
        results.append(BatchResult(batch=batch, iterations=len(ms), first_ms=first[batch], latency=stats,
                                   clips_per_s=clips, frames_per_s=clips * frames, time_ratio=1.0,
                                   samples_ms=ms.tolist()))
    return RunnerResult(
        label=label, backend=runner.name, arch=runner.config.arch if runner.config else None,
        precision=runner.precision, threads=runner.threads, input_name=runner.input_name,
        input_shape=list(runner.input_shape), frames_per_clip=frames, load_seconds=load_seconds,
        memory_growth_mb=peak_rss, peak_cuda_mb=peak_cuda, batches=results, settings=runner.settings,
    )


def _fill_ratios(results: list[RunnerResult]) -> None:
    reference = results[0]
    for result in results:
        for b in result.batches:
            b.time_ratio = b.latency.median_ms / reference.at(b.batch).latency.median_ms


def environment() -> dict[str, str]:
    """Versions and hardware that a latency number depends on: the CPU with the instruction sets that
    decide which precision pays off (``tamdeploy.system``), and the runtimes. PyTorch's threads and GPU
    are read only when a runner loaded torch: an OpenVINO or ONNX Runtime bench never imports it."""
    import onnxruntime

    system = system_info()
    env = {
        "tamdeploy": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": system.cpu, "cpu_isa": ", ".join(system.isa) or "unknown", "cpu_count": str(system.logical_cores),
        "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for runtime in ("torch", "openvino"):
        if runtime in system.runtimes:
            env[runtime] = system.runtimes[runtime]
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch_threads"] = str(torch.get_num_threads())
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name()
    return env
