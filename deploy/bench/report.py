"""The bench report: dataclasses, JSON (``to_dict``), Markdown (``to_markdown``), PNG (``plot``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one ``runner.infer(feed)`` call, in milliseconds (percentiles interpolate linearly)."""

    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float

    @classmethod
    def from_samples(cls, samples_ms: np.ndarray) -> LatencyStats:
        s = np.asarray(samples_ms, dtype=np.float64)
        if s.size == 0:
            raise ValueError("no latency samples")
        median, p90, p95, p99 = np.percentile(s, [50, 90, 95, 99])
        return cls(min_ms=float(s.min()), mean_ms=float(s.mean()), median_ms=float(median), p90_ms=float(p90),
                   p95_ms=float(p95), p99_ms=float(p99), max_ms=float(s.max()), std_ms=float(s.std()))


@dataclass
class BatchResult:
    """One runner at one batch size.

    ``clips_per_s`` = batch * 1000 / median latency (the rate of back-to-back calls at a typical
    iteration); ``frames_per_s`` = ``clips_per_s`` * T. ``time_ratio`` = this median latency / the first
    runner's median at the same batch (< 1: faster than the first runner). ``first_ms`` is the first
    call at this batch, before warm-up (lazy initialisation, ``torch.compile`` for a new shape).
    """

    batch: int
    iterations: int
    first_ms: float
    latency: LatencyStats
    clips_per_s: float
    frames_per_s: float
    time_ratio: float
    samples_ms: list[float] = field(repr=False)


@dataclass
class RunnerResult:
    """One runner: what it is, what loading it cost, and its results per batch size.

    ``memory_growth_mb``: how much the process's peak resident set (VmHWM, reset through
    /proc/self/clear_refs just before loading) grew over the resident set just before loading, while this
    runner loaded and ran its first call at every batch; runners load one after another, so each
    figure is that runner's own growth. Memory that earlier work in the process freed goes back to the
    system first (glibc's malloc_trim), so that malloc does not hide a runner's allocations by reusing
    it; pools that a runtime keeps for itself (an earlier session's arena) still can, so this is not the
    runner's whole footprint: bench one artifact alone for that. None where /proc does not allow it
    (not Linux).
    ``peak_cuda_mb``: ``torch.cuda.max_memory_allocated`` growth over the same span, for runners on
    torch's CUDA allocator; None otherwise (ONNX Runtime's and TensorRT's GPU memory is not counted).
    """

    label: str
    backend: str
    arch: str | None
    precision: str | None
    threads: int | None  # intra-op threads it was given (None: the backend's default)
    input_name: str
    input_shape: list[int | None]
    frames_per_clip: int
    load_seconds: float
    memory_growth_mb: float | None
    peak_cuda_mb: float | None
    batches: list[BatchResult]
    settings: dict = field(default_factory=dict)  # how the backend ran it (``Runner.settings``)

    def at(self, batch: int) -> BatchResult:
        for result in self.batches:
            if result.batch == batch:
                return result
        raise KeyError(f"{self.label} has no result at batch {batch}")


@dataclass
class BenchReport:
    """Runners measured interleaved: at each batch, every round calls each runner once (the order
    rotates by one each round), so drift and noise reach all of them alike. ``iterations`` per batch
    are timed after ``warmup`` untimed rounds; with ``duration_s`` the rounds go on until that many
    seconds have passed at each batch."""

    runners: list[RunnerResult]
    batches: list[int]
    warmup: int
    iters: int | None
    duration_s: float | None
    threads: int | None
    seed: int
    inputs: str  # "random normal (seed N)" or "given"
    wall_seconds: float
    environment: dict[str, str]
    notes: list[str]  # how the bench kept interleaved runners from disturbing each other

    @property
    def warnings(self) -> list[str]:
        """Where the spread says the machine was busy, so that the ratios cannot be trusted (see
        ``noise_warning``), and runners fed different inputs."""
        noisy = [f"{r.label} at batch {b.batch}: {warning}" for r in self.runners for b in r.batches
                 if (warning := noise_warning(b.latency))]
        if noisy:
            noisy.append("the latencies spread widely: the machine was busy, or the runners disturbed each other "
                         "(caches, clock); medians and ratios are uncertain: rerun on an idle machine, with more "
                         "--iters or fewer artifacts per run")
        if len({_describe_input(r) for r in self.runners}) > 1:
            noisy.insert(0, "the runners take different inputs (see input): a ratio compares different work, not "
                            "only different runtimes")
        return noisy

    def input_description(self) -> str:
        """The shape every runner was fed, for people: "video [N, 8, 3, 224, 224] (T=8, 224x224)", or each
        runner's where they differ."""
        shapes = {_describe_input(r) for r in self.runners}
        if len(shapes) == 1:
            fed = shapes.pop()
        else:
            fed = "differs per runner: " + "; ".join(f"{r.label}: {_describe_input(r)}" for r in self.runners)
        return f"{fed}, batch {', '.join(map(str, self.batches))}"

    def runner(self, label: str) -> RunnerResult:
        for result in self.runners:
            if result.label == label:
                return result
        raise KeyError(f"no runner labelled {label!r}")

    def to_dict(self, samples: bool = False) -> dict:
        """JSON-ready; ``samples=True`` keeps every latency sample (``samples_ms``)."""
        data = asdict(self)
        if not samples:
            for runner in data["runners"]:
                for batch in runner["batches"]:
                    del batch["samples_ms"]
        data["reference"] = self.runners[0].label
        data["input"] = self.input_description()
        data["warnings"] = self.warnings
        return data

    def to_markdown(self) -> str:
        first = self.runners[0].label
        mode = (f"{self.iters} iteration{'s' if self.iters != 1 else ''}" if self.iters is not None
                else f"{self.duration_s:g} s")
        warmup = f"{self.warmup} warm-up round{'s' if self.warmup != 1 else ''}"
        env = self.environment
        lines = [
            f"Latency of one call, ms ({mode} per batch after {warmup}, runners interleaved; "
            f"{self.inputs} inputs; threads {self.threads if self.threads is not None else 'default'})",
            f"{env.get('cpu', '?')} ({env.get('cpu_isa', '?')}) · torch {env.get('torch', '?')} · onnxruntime "
            f"{env.get('onnxruntime', '?')}" + (f" · openvino {env['openvino']}" if "openvino" in env else ""),
            f"input: {self.input_description()}",
            "",
            f"| runner | backend | batch | median | p90 | p99 | min | max | clips/s | frames/s | time vs {first} |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for batch in self.batches:
            for r in self.runners:
                b = r.at(batch)
                s = b.latency
                lines.append(f"| {r.label} | {r.backend} | {batch} | {_num(s.median_ms)} | {_num(s.p90_ms)} | "
                             f"{_num(s.p99_ms)} | {_num(s.min_ms)} | {_num(s.max_ms)} | {_num(b.clips_per_s)} | "
                             f"{_num(b.frames_per_s)} | {_ratio(b.time_ratio)} |")
        settings = [f"{r.label}: {describe_settings(r.settings)}" for r in self.runners if r.settings]
        if settings:
            lines += ["", *(f"settings: {line}" for line in settings)]
        if self.notes:
            lines += ["", *(f"note: {note}" for note in self.notes)]
        if self.warnings:
            lines += ["", *(f"**warning**: {warning}" for warning in self.warnings)]
        lines += ["", "| runner | load s | first call ms | memory growth MB | peak CUDA MB |", "|---|--:|--:|--:|--:|"]
        for r in self.runners:
            lines.append(f"| {r.label} | {r.load_seconds:.3g} | {_num(r.batches[0].first_ms)} | "
                         f"{_opt(r.memory_growth_mb)} | {_opt(r.peak_cuda_mb)} |")
        lines += ["", "memory growth: how much the process's peak resident memory grew while the runner loaded and ran "
                  "its first calls (pools a runtime kept from earlier work can be reused, so it can read low; bench "
                  "one artifact alone for its footprint)"]
        return "\n".join(lines) + "\n"


def _describe_input(runner: RunnerResult) -> str:
    dims = ", ".join("N" if i == 0 else str(d) for i, d in enumerate(runner.input_shape))
    size = runner.input_shape[-1]
    clip = f"T={runner.frames_per_clip}, {size}x{size}" if runner.frames_per_clip > 1 else f"{size}x{size}"
    return f"{runner.input_name} [{dims}] ({clip})"


# Why these limits: in a quiet interleaved run on this project's 2-core machines p90 stayed within 1.4-1.5x
# of the minimum and the median within 1.2x (benchmarks/results/bench_export-2026-11-26-session5-final-cpu2.md,
# 100 rounds of full-size R50s); under load they stretched to 3-7x (the demo beside other work: median
# 786 ms, minimum 117 ms, reported as a 0.034x ratio without a word).
SPREAD_LIMITS = {"p90": 2.0, "median": 1.5}


def paired_ratio(numerator: list[float], denominator: list[float], seed: int = 0) -> tuple[float, float, float]:
    """How two interleaved runners compare beyond the machine's noise: the median of the per-round ratios
    (round i's two calls ran within about a second of each other) and a bootstrap 95% interval of it."""
    ratios = np.asarray(numerator) / np.asarray(denominator)
    resampled = np.random.default_rng(seed).choice(ratios, (4000, ratios.size))
    low, high = np.percentile(np.median(resampled, axis=1), [2.5, 97.5])
    return float(np.median(ratios)), float(low), float(high)


def noise_warning(stats: LatencyStats) -> str | None:
    """Why one runner's latencies look disturbed (None when they do not): p90 more than twice the
    minimum, or the median more than 1.5x the minimum."""
    if stats.min_ms <= 0:
        return None
    p90, median = stats.p90_ms / stats.min_ms, stats.median_ms / stats.min_ms
    if p90 > SPREAD_LIMITS["p90"]:
        return f"p90 is {p90:.1f}x the minimum ({stats.p90_ms:.4g} vs {stats.min_ms:.4g} ms)"
    if median > SPREAD_LIMITS["median"]:
        return f"the median is {median:.1f}x the minimum ({stats.median_ms:.4g} vs {stats.min_ms:.4g} ms)"
    return None


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _ratio(x: float) -> str:
    return f"{x:.2f}x" if x >= 0.095 else f"{x:.2g}x"


def _opt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def describe_settings(settings: dict) -> str:
    """A runner's settings (``Runner.settings``) as one line: ``performance latency, streams 1, ...``."""
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in settings.items() if value is not None)
