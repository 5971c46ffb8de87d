"""The bench harness: every reported field, interleaving, iteration and duration modes, reports."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tamdeploy.deploy.bench import BenchReport, plot_bench, run_benchmark
from tamdeploy.deploy.runners import OnnxRuntimeRunner, Runner, TensorSpec, TorchRunner
from tamdeploy.errors import DataError, TamdeployError
from tamdeploy.exporters.metadata import ModelMetadata, write_metadata
from tamdeploy.models import create_model
from tamdeploy.models.config import ModelConfig
from tamdeploy.onnx_model import make_model

T, SIZE, CLASSES = 4, 32, 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PEAK_RSS_MEASURABLE = os.access("/proc/self/clear_refs", os.W_OK)  # Linux


def tiny_config() -> ModelConfig:
    return create_model("tsn_r50", width=0.25, input_size=SIZE, num_segments=T, num_classes=CLASSES).config


def tiny_onnx() -> bytes:
    """A video classifier small enough to build by hand: mean over T, H, W, then a linear layer."""
    weight = np.random.default_rng(0).standard_normal((3, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["video", "axes"], ["pooled"], keepdims=0),
         helper.make_node("MatMul", ["pooled", "weight"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", T, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(np.array([1, 3, 4], np.int64), "axes"), numpy_helper.from_array(weight, "weight")],
    )
    model = make_model(graph)
    write_metadata(model, ModelMetadata(config=tiny_config(), input_name="video", input_layout="NTCHW",
                                        precision="fp32", checkpoint_sha256="0" * 64, tam_op="none"))
    onnx.checker.check_model(model)
    return model.SerializeToString()


class RecordingRunner(Runner):
    """A numpy backend that records every call (runner label, batch, first value of each clip) in a log."""

    def __init__(self, label: str, log: list[tuple[str, int, tuple[float, ...]]], shape: Sequence[int] = (T, 3, 8, 8),
                 sleep_s: float = 0.0) -> None:
        super().__init__("numpy")
        self.label, self.log, self.shape, self.sleep_s = label, log, tuple(shape), sleep_s

    def activate_impl(self) -> None:
        self.weights = np.ones(self.shape[-1], np.float32)

    def input_specs_impl(self) -> Sequence[TensorSpec]:
        return [TensorSpec("video", (None, *self.shape), np.dtype(np.float32))]

    def output_names_impl(self) -> Sequence[str]:
        return ["logits"]

    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feed["video"]
        self.log.append((self.label, x.shape[0], tuple(x.reshape(x.shape[0], -1)[:, 0].tolist())))
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return {"logits": x.reshape(x.shape[0], -1, self.shape[-1]) @ self.weights}

    def deactivate_impl(self) -> None:
        del self.weights


class AllocatingRunner(RecordingRunner):
    """Keeps ``keep_mb`` from activation on, and needs ``scratch_mb`` more for a moment in each call."""

    def __init__(self, label: str, keep_mb: int, scratch_mb: int, shape: Sequence[int]) -> None:
        super().__init__(label, [], shape)
        self.keep_mb, self.scratch_mb = keep_mb, scratch_mb

    def activate_impl(self) -> None:
        super().activate_impl()
        self.kept = np.ones(self.keep_mb << 18, np.float32)  # ones: the pages are touched, hence resident

    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        scratch = np.ones(self.scratch_mb << 18, np.float32)
        del scratch
        return super().infer_impl(feed)


@pytest.fixture(scope="module")
def report() -> BenchReport:
    model = create_model("tsn_r50", width=0.25, input_size=SIZE, num_segments=T, num_classes=CLASSES)
    # one torch thread: two on this 2-core machine under load from other processes took 10-100x longer
    runners = [("eager", TorchRunner(model, device="cpu", threads=1)),
               ("ort", OnnxRuntimeRunner(tiny_onnx(), threads=1)), ("ort-again", OnnxRuntimeRunner(tiny_onnx()))]
    result = run_benchmark(runners, batches=[1, 3], warmup=2, iters=7, progress=False)
    assert not any(r.is_active for _, r in runners)  # the bench frees what it activated
    return result


# --- the report's numbers ----------------------------------------------------------------------------


def test_every_field_is_reported_with_sane_values(report: BenchReport) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    assert (data["batches"], data["warmup"], data["iters"], data["duration_s"]) == ([1, 3], 2, 7, None)
    assert data["reference"] == "eager" and data["inputs"] == "random normal (seed 0)"
    assert {"torch", "onnxruntime", "numpy", "python", "cpu", "cpu_count"} <= set(data["environment"])
    assert [r["label"] for r in data["runners"]] == ["eager", "ort", "ort-again"]
    assert [r["backend"] for r in data["runners"]] == ["pytorch", "onnxruntime-cpu", "onnxruntime-cpu"]
    for runner in data["runners"]:
        assert (runner["arch"], runner["precision"], runner["frames_per_clip"]) == ("tsn_r50", "fp32", T)
        assert (runner["input_name"], runner["input_shape"]) == ("video", [None, T, 3, SIZE, SIZE])
        assert runner["load_seconds"] > 0
        assert (runner["memory_growth_mb"] is not None) == PEAK_RSS_MEASURABLE
        assert runner["memory_growth_mb"] is None or runner["memory_growth_mb"] >= 0
        assert runner["peak_cuda_mb"] is None  # no runner on torch's CUDA allocator
        assert [b["batch"] for b in runner["batches"]] == [1, 3]
        for b in runner["batches"]:
            s = b["latency"]
            assert b["iterations"] == 7 and "samples_ms" not in b
            assert 0 < s["min_ms"] <= s["median_ms"] <= s["p90_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
            assert s["min_ms"] <= s["mean_ms"] <= s["max_ms"] and s["std_ms"] >= 0
            assert b["first_ms"] > 0
            assert b["clips_per_s"] == pytest.approx(b["batch"] * 1000 / s["median_ms"])
            assert b["frames_per_s"] == pytest.approx(b["clips_per_s"] * T)
    assert [r["threads"] for r in data["runners"]] == [1, 1, None]


def test_ratios_are_against_the_first_runner(report: BenchReport) -> None:
    first = report.runners[0]
    for batch in report.batches:
        assert first.at(batch).time_ratio == 1.0
        for runner in report.runners[1:]:
            assert runner.at(batch).time_ratio == pytest.approx(
                runner.at(batch).latency.median_ms / first.at(batch).latency.median_ms)


def test_samples_are_kept_on_request(report: BenchReport) -> None:
    data = report.to_dict(samples=True)
    for runner, result in zip(data["runners"], report.runners, strict=True):
        for b, batch in zip(runner["batches"], result.batches, strict=True):
            assert len(b["samples_ms"]) == 7
            assert min(b["samples_ms"]) == batch.latency.min_ms and max(b["samples_ms"]) == batch.latency.max_ms


def test_interleaving_notes(report: BenchReport) -> None:
    # runners keep their own thread settings (ONNX Runtime's spinning is what a deployment gets); the
    # pause between calls is what keeps one runner's spinning threads off the next one's CPU
    assert report.notes == ["calls start 50 ms apart, so that threads still busy-waiting after one runner's "
                            "call do not slow the next runner"]


class StampingRunner(RecordingRunner):
    """Records when each call starts and ends (perf_counter seconds)."""

    def __init__(self, label: str, spans: list[tuple[float, float]]) -> None:
        super().__init__(label, [], sleep_s=0.002)
        self.spans = spans

    def infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        result = super().infer_impl(feed)
        self.spans.append((start, time.perf_counter()))
        return result


@pytest.mark.parametrize("settle", [0.03, None])
def test_calls_start_a_pause_apart_when_runners_interleave(settle: float | None) -> None:
    spans: list[tuple[float, float]] = []
    runners = [(name, StampingRunner(name, spans)) for name in "ab"]
    report = run_benchmark(runners, batches=[1], warmup=1, iters=3, settle=settle, progress=False)
    pause = 0.05 if settle is None else settle
    timed = spans[1:]  # after the first call of each runner, made while loading
    gaps = [start - previous_end for (_, previous_end), (start, _) in zip(timed[1:], timed[2:], strict=False)]
    assert len(gaps) >= 6 and min(gaps) >= pause
    assert f"calls start {pause * 1000:g} ms apart" in report.notes[0]
    assert all(b.latency.max_ms < pause * 1000 for r in report.runners for b in r.batches)  # pause not timed


def test_a_single_runner_is_not_paused() -> None:
    spans: list[tuple[float, float]] = []
    report = run_benchmark([("a", StampingRunner("a", spans))], batches=[1], warmup=0, iters=5, progress=False)
    gaps = [start - end for (_, end), (start, _) in zip(spans[1:], spans[2:], strict=False)]
    assert max(gaps) < 0.02 and report.notes == []


def test_markdown(report: BenchReport) -> None:
    text = report.to_markdown()
    assert "time vs eager" in text and "7 iterations per batch after 2 warm-up rounds" in text
    rows = [line for line in text.splitlines() if line.endswith("x |") and not line.startswith("| runner")]
    assert len(rows) == 6  # 3 runners x 2 batches
    for label in ("eager", "ort", "ort-again"):
        assert any(row.startswith(f"| {label} | ") for row in rows)
        assert f"| {label} | " in text.split("load s")[1]  # and in the load / memory table
    assert all(row.startswith("| eager |") == row.endswith("| 1.00x |") for row in rows)


def test_plot_writes_a_png_atomically(report: BenchReport, tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    path.write_bytes(b"old")
    assert plot_bench(report, path) == path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["bench.png"]  # no temp file left behind


# --- how the runs are made ---------------------------------------------------------------------------


def test_rounds_are_interleaved_and_rotate() -> None:
    log: list[tuple[str, int, tuple[float, ...]]] = []
    runners = [(name, RecordingRunner(name, log)) for name in "abc"]
    report = run_benchmark(runners, batches=[2, 1], warmup=1, iters=4, progress=False)
    # phase 1, runner by runner: one first call per batch
    assert [(name, batch) for name, batch, _ in log[:6]] == [
        ("a", 2), ("a", 1), ("b", 2), ("b", 1), ("c", 2), ("c", 1)]
    # phase 2, batch by batch: 1 warm-up + 4 timed rounds, each calling every runner once, each round
    # starting one runner later than the one before
    calls = log[6:]
    assert len(calls) == 2 * 5 * 3
    for b, batch in enumerate([2, 1]):
        rounds = [calls[b * 15 + 3 * r: b * 15 + 3 * r + 3] for r in range(5)]
        for r, round_ in enumerate(rounds):
            assert [name for name, _, _ in round_] == ["abc"[(r + k) % 3] for k in range(3)]
            assert {size for _, size, _ in round_} == {batch}
    # the same random arrays for every runner (equal input specs) at a batch
    assert len({value for name, batch, value in log if batch == 2}) == 1
    assert [b.iterations for r in report.runners for b in r.batches] == [4] * 6


def test_duration_mode_stops_in_time() -> None:
    log: list[tuple[str, int, tuple[float, ...]]] = []
    runners = [(name, RecordingRunner(name, log, sleep_s=0.005)) for name in ("a", "b")]
    started = time.perf_counter()
    report = run_benchmark(runners, batches=[1, 2], warmup=0, duration=0.25, settle=0.0, progress=False)
    elapsed = time.perf_counter() - started
    assert (report.iters, report.duration_s) == (None, 0.25)
    # two batches of 0.25 s, plus loading and one round past each deadline; the bounds leave room for a
    # loaded machine (a GPU machine running 14 test workers took longer than 1.5 s)
    assert 0.5 <= elapsed < 0.5 + 3.0
    for batch in (1, 2):
        counts = [r.at(batch).iterations for r in report.runners]
        assert counts[0] == counts[1] >= 2  # whole rounds only, ~10 ms each
        timed_ms = sum(sum(r.at(batch).samples_ms) for r in report.runners)
        assert 200 <= timed_ms <= 250 + 500


@pytest.mark.skipif(not PEAK_RSS_MEASURABLE, reason="peak RSS needs /proc/self/clear_refs (Linux)")
@pytest.mark.parametrize("after_freed_arrays", [False, True])
def test_peak_memory_is_each_runners_own(after_freed_arrays: bool) -> None:
    if after_freed_arrays:
        if platform.libc_ver()[0] != "glibc":
            pytest.skip("the freed-memory case is glibc's malloc")
        # what a test suite or an export leaves behind: freeing a 31 MB array raises glibc's mmap threshold
        # to 31 MB, so 30 MB arrays then come from the heap, and freed they stay there (this made runner a
        # read 40 MB, not 70, in a full test run)
        freed = np.ones(31 * 2**20 // 8)
        del freed
        freed = [np.ones(30 * 2**20 // 8) for _ in range(2)]
        del freed
    big_input = (T, 3, 256, 256)  # batch 16: 50 MB of input arrays, which must not count
    runners = [("a", AllocatingRunner("a", keep_mb=40, scratch_mb=30, shape=big_input)),
               ("b", AllocatingRunner("b", keep_mb=0, scratch_mb=0, shape=big_input)),
               ("c", AllocatingRunner("c", keep_mb=0, scratch_mb=60, shape=big_input))]
    report = run_benchmark(runners, batches=[16], warmup=0, iters=1, progress=False)
    a, b, c = (report.runner(label).memory_growth_mb for label in "abc")
    assert 40 + 30 - 3 <= a <= 40 + 30 + 15
    assert b <= 15
    assert 60 - 3 <= c <= 60 + 15


def test_given_inputs_cycle_over_clips() -> None:
    log: list[tuple[str, int, tuple[float, ...]]] = []
    clips = np.arange(2, dtype=np.float32)[:, None, None, None, None] * np.ones((2, T, 3, 8, 8), np.float32)
    report = run_benchmark([("a", RecordingRunner("a", log))], batches=[3], warmup=0, iters=1,
                           inputs={"video": clips}, progress=False)
    assert report.inputs == "given"
    assert [(batch, firsts) for _, batch, firsts in log] == [(3, (0.0, 1.0, 0.0))] * 2
    with pytest.raises(DataError, match="is float64; the model takes float32"):
        run_benchmark([("a", RecordingRunner("a", log))], batches=[1], inputs={"video": clips.astype(np.float64)},
                      progress=False)


def test_frames_per_second_of_an_image_model() -> None:
    log: list[tuple[str, int, tuple[float, ...]]] = []
    report = run_benchmark([("img", RecordingRunner("img", log, shape=(3, 8, 8)))], batches=[2], iters=3,
                           progress=False)
    result = report.runner("img").at(2)
    assert report.runner("img").frames_per_clip == 1 and result.frames_per_s == result.clips_per_s


def test_threads_reach_every_runner() -> None:
    model = create_model("tsn_r50", width=0.25, input_size=SIZE, num_segments=T, num_classes=CLASSES)
    before = torch.get_num_threads()
    runners = [("eager", TorchRunner(model)), ("ort", OnnxRuntimeRunner(tiny_onnx()))]
    report = run_benchmark(runners, batches=[1], warmup=0, iters=2, threads=1, progress=True)
    assert report.threads == 1 and [r.threads for r in report.runners] == [1, 1]
    assert torch.get_num_threads() == before  # restored when the torch runner was freed


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_runner_reports_peak_cuda_memory() -> None:
    model = create_model("tsn_r50", width=0.25, input_size=SIZE, num_segments=T, num_classes=CLASSES)
    report = run_benchmark([("cpu", TorchRunner(model, device="cpu")), ("gpu", TorchRunner(model, device="cuda"))],
                           batches=[1, 4], warmup=1, iters=3, progress=False)
    assert report.runner("gpu").backend == "pytorch-cuda" and report.runner("gpu").peak_cuda_mb > 0
    assert report.runner("cpu").peak_cuda_mb is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"iters": 3, "duration": 1.0}, "not both"),
    ({"iters": 0}, "iterations must be >= 1"),
    ({"duration": 0}, "duration must be > 0"),
    ({"batches": [1, 1]}, "distinct and >= 1"),
    ({"batches": [0]}, "distinct and >= 1"),
    ({"warmup": -1}, "warm-up rounds must be >= 0"),
    ({"threads": 0}, "`threads` must be at least 1"),
    ({"settle": -0.1}, "pause between calls must be 0-10 seconds"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(TamdeployError, match=message):
        run_benchmark([("a", RecordingRunner("a", []))], progress=False, **kwargs)


def test_bad_runner_lists() -> None:
    with pytest.raises(TamdeployError, match="at least one runner"):
        run_benchmark([], progress=False)
    with pytest.raises(TamdeployError, match="labels must differ"):
        run_benchmark([("a", RecordingRunner("a", [])), ("a", RecordingRunner("a", []))], progress=False)
    with RecordingRunner("a", []) as active, pytest.raises(TamdeployError, match="already active"):
        run_benchmark([("a", active)], progress=False)


def test_labels_tell_artifacts_apart_and_number_one_file_named_twice():
    from tamdeploy.deploy.bench.setup import unique_labels

    assert unique_labels([Path("a.onnx"), Path("a.onnx")]) == ["a.onnx #1", "a.onnx #2"]
    assert unique_labels([Path("x/a.onnx"), Path("y/a.onnx"), Path("b.onnx")]) == ["x/a.onnx", "y/a.onnx", "b.onnx"]
    assert unique_labels([Path("a.onnx"), Path("a.onnx@openvino")]) == ["a.onnx", "a.onnx@openvino"]


def test_an_at_sign_picks_a_backend_only_at_the_end_of_a_file_name(tmp_path):
    from tamdeploy.deploy.bench.setup import split_backend

    assert split_backend("m.onnx@openvino") == (Path("m.onnx"), "openvino")
    assert split_backend("runs/exp@2/model.onnx") == (Path("runs/exp@2/model.onnx"), None)
    odd = tmp_path / "model@v2"
    odd.write_bytes(b"")
    assert split_backend(odd) == (odd, None)
