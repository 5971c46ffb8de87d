"""``build_engine`` and ``TensorRTRunner`` against a stand-in of ``tensorrt`` (no TensorRT or GPU needed)."""


from __future__ import annotations

import contextlib
import ctypes
import enum
import hashlib
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tamdeploy.deploy.build.engine import (
    build_engine,
    layers_path,
)
from tamdeploy.deploy.runners import TensorRTRunner
from tamdeploy.deploy.runners.trt import (
    EngineMismatchError,
    check_plan,
    read_sidecar,
    sidecar_path,
)
from tamdeploy.errors import DataError, TamdeployError
from tamdeploy.files import write_bytes_atomic
from tamdeploy.plugins.tam_onnx import make_tam_model

# --- build_engine's orchestration against a tensorrt stand-in (no TensorRT needed) ------------------------------


class CreationFlag(enum.IntEnum):
    """``trt.NetworkDefinitionCreationFlag`` with NvInfer.h's values (bit i of the mask is flag i)."""

    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1
    PREFER_JIT_PYTHON_PLUGINS = 2
    PREFER_AOT_PYTHON_PLUGINS = 3


def flag_names(mask: int) -> set[str]:
    """The creation flags set in ``mask``, by name: what a wrong bit would show."""
    return {f.name for f in CreationFlag if mask & (1 << f.value)}


# tensorrt.plugin's Python plugin objects, whose class names say where the implementation runs
AOTPlugin = type("_TemplateAOTPlugin", (), {})
JITPlugin = type("_TemplateJITPlugin", (), {})


class FakeEngine:
    """A deserialized engine: x [N, 4, 5, 5] float32 (batch 1..4) -> y [N, 2] = per-clip sum and max.

    Its context reads and writes the buffers at the addresses it is given (CPU memory stands in
    for the GPU's), and while ``trt.capturing`` holds a list it records the launch there instead of
    running it, as a CUDA graph capture does."""

    PROFILE = ((1, 4, 5, 5), (2, 4, 5, 5), (4, 4, 5, 5))

    def __init__(self, trt: types.ModuleType) -> None:
        self.trt = trt
        self.num_io_tensors, self.num_layers = 2, 4

    def get_tensor_name(self, i: int) -> str:
        return ("x", "y")[i]

    def get_tensor_mode(self, name: str) -> str:
        return "OUTPUT" if name == "y" else "INPUT"

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 2) if name == "y" else (-1, 4, 5, 5)

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        return self.PROFILE

    def get_tensor_dtype(self, name: str) -> str:
        return "float32"

    def create_engine_inspector(self):
        from types import SimpleNamespace as NS

        return NS(get_engine_information=lambda fmt: '{"Layers": ["conv"]}')

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self.trt)


class FakeContext:
    def __init__(self, trt: types.ModuleType) -> None:
        self.trt = trt
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.shapes["x"][0], 2)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        launch = (self.shapes["x"], self.addresses["x"], self.addresses["y"])
        if self.trt.capturing is not None:
            if self.trt.capture_fails == "raise":
                raise RuntimeError("operation not permitted when stream is capturing\nmore detail")
            self.trt.capturing.append(launch)
            return self.trt.capture_fails != "false"
        run_launch(*launch)
        return True


def run_launch(shape: tuple[int, ...], x_address: int, y_address: int) -> None:
    """What the fake engine computes, on the memory at the bound addresses."""
    x = np.ctypeslib.as_array((ctypes.c_float * math.prod(shape)).from_address(x_address)).reshape(shape[0], -1)
    y = np.ctypeslib.as_array((ctypes.c_float * (shape[0] * 2)).from_address(y_address)).reshape(shape[0], 2)
    y[:] = np.stack([x.sum(1), x.max(1)], axis=1)


def fake_tensorrt(plugin_layers: int, parse_ok: bool = True, plan: bytes | None = b"PLAN", plugin: type = AOTPlugin,
                  cache_fails: str | None = None) -> types.ModuleType:
    """A ``tensorrt`` stand-in with just the calls ``build_engine`` and ``TensorRTRunner`` make,
    recording the builder's in ``trt.calls``. Its plugin layers carry a ``plugin`` object of class
    ``plugin``; ``cache_fails`` ("raise" or "false"): how it refuses a non-empty timing cache."""
    from types import SimpleNamespace as NS

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0"
    trt.calls = []
    trt.capturing = None
    trt.capture_fails = None
    record = trt.calls.append

    class ILogger:
        Severity = NS(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3)

        def __init__(self) -> None:
            pass

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class ParserError:
        def desc(self):
            return "Unsupported operator Foo"

        def node_name(self):
            return "/layer1/Foo"

        def node_operator(self):
            return "Foo"

    class Parser:
        def __init__(self, network, logger):
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path):
            record(("parse_from_file", path))
            return parse_ok

        def parse(self, data, path):
            record(("parse", type(data).__name__, path))
            return parse_ok

        def get_error(self, i):
            return ParserError()

    layers = [NS(type="PLUGIN_V3", plugin=plugin())] * plugin_layers + [NS(type="CONVOLUTION")] * 3
    network = NS(num_layers=len(layers), get_layer=lambda i: layers[i])
    profile = NS(set_shape=lambda *a: record(("set_shape", *a)))
    cache = NS(serialize=lambda: b"CACHE")

    class Config:
        def set_memory_pool_limit(self, pool, size):
            record(("workspace", size))

        def add_optimization_profile(self, p):
            record(("profile",))

        def create_timing_cache(self, data):
            record(("create_timing_cache", bytes(data)))
            if data and cache_fails == "raise":
                raise RuntimeError("Timing cache is not compatible")
            return NS(serialize=cache.serialize, blob=bytes(data))

        def set_timing_cache(self, c, ignore_mismatch):
            record(("set_timing_cache", c.blob))
            return not (c.blob and cache_fails == "false")

        def get_timing_cache(self):
            return cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            record(("flags", flags))
            return network

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return profile

        def build_serialized_network(self, net, config):
            if plan is None:
                self.logger.log(ILogger.Severity.ERROR, "out of memory")
            return plan

    trt.ILogger, trt.IProgressMonitor, trt.OnnxParser, trt.Builder = ILogger, IProgressMonitor, Parser, Builder
    trt.Runtime = lambda logger: NS(deserialize_cuda_engine=lambda data: FakeEngine(trt))
    trt.NetworkDefinitionCreationFlag = CreationFlag
    trt.LayerType, trt.TensorIOMode = NS(PLUGIN_V3="PLUGIN_V3"), NS(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.MemoryPoolType, trt.ProfilingVerbosity = NS(WORKSPACE="workspace"), NS(DETAILED="detailed")
    trt.LayerInformationFormat = NS(JSON="json")
    trt.nptype = np.dtype
    return trt


@pytest.fixture
def stand_in_build(monkeypatch, tmp_path):
    """Run ``build_engine`` on a 2-clip TAM graph against a tensorrt stand-in; returns (run, root).

    ``run(trt, aot=..., **options)``: ``aot`` is what the registered plugin supports (TensorRT >= 10.9)."""
    from tamdeploy.deploy.build import engine as engine_module
    from tamdeploy.plugins import trt_plugin
    from tamdeploy.plugins.trt_plugin import PluginSupport

    onnx_path = tmp_path / "tam.onnx"
    onnx.save(make_tam_model(8, 3, 4, 5, 5), str(onnx_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(engine_module, "gpu_identity", lambda device=None: ("Fake GPU", "9.0"))

    def run(trt, aot=True, **options):
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(trt_plugin, "register_tam_plugin", lambda: PluginSupport("10.13.0", aot=aot))
        kw = dict(batch=(1, 2, 4), workspace_gb=1.5, opt_level=None, timing_cache=tmp_path / "t.cache",
                  progress=True)
        kw.update(options)
        return build_engine(onnx_path, tmp_path / "tam.plan", **kw)

    return run, tmp_path


def test_build_with_the_plugin_writes_plan_sidecar_layers_and_cache(stand_in_build):
    run, root = stand_in_build
    trt = fake_tensorrt(plugin_layers=1)
    result = run(trt)
    assert (result.tam_op, result.tam_nodes, result.plugin_layers) == ("plugin-aot", 1, 1)
    assert [flag_names(c[1]) for c in trt.calls if c[0] == "flags"] == [{"STRONGLY_TYPED",
                                                                         "PREFER_AOT_PYTHON_PLUGINS"}]
    assert ("parse_from_file", str(root / "tam.onnx")) in trt.calls
    assert ("set_shape", "x", (1, 4, 5, 5), (2, 4, 5, 5), (4, 4, 5, 5)) in trt.calls  # the batch axis follows batch
    assert ("workspace", int(1.5 * 2**30)) in trt.calls and ("create_timing_cache", b"") in trt.calls
    assert (root / "tam.plan").read_bytes() == b"PLAN" and (root / "t.cache").read_bytes() == b"CACHE"
    assert json.loads(layers_path(root / "tam.plan").read_text())["layers"] == {"Layers": ["conv"]}
    sidecar = read_sidecar(root / "tam.plan")
    assert sidecar["tam_op"] == "plugin-aot" and sidecar["gpu"] == {"name": "Fake GPU", "compute_capability": "9.0"}
    assert sidecar["outputs"] == ["y"] and sidecar["onnx"]["sha256"] == result.onnx_sha256
    assert sidecar["engine"] == {"bytes": 4, "sha256": hashlib.sha256(b"PLAN").hexdigest()}
    assert result.profile.batch == (1, 2, 4) and not result.timing_cache_loaded
    again = run(fake_tensorrt(plugin_layers=1))
    assert again.timing_cache_loaded


@pytest.mark.parametrize(("plugin", "aot", "tam_op", "flags"), [
    (AOTPlugin, True, "plugin-aot", {"STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS"}),
    # asked for AOT, got JIT (a plugin without an AOT implementation): the layer's plugin decides
    (JITPlugin, True, "plugin-jit", {"STRONGLY_TYPED", "PREFER_AOT_PYTHON_PLUGINS"}),
    (JITPlugin, False, "plugin-jit", {"STRONGLY_TYPED"}),
])
def test_the_plugin_layer_decides_between_aot_and_jit(stand_in_build, plugin, aot, tam_op, flags):
    run, root = stand_in_build
    trt = fake_tensorrt(plugin_layers=1, plugin=plugin)
    result = run(trt, aot=aot, timing_cache=None, progress=False)
    assert result.tam_op == read_sidecar(root / "tam.plan")["tam_op"] == tam_op
    assert [flag_names(c[1]) for c in trt.calls if c[0] == "flags"] == [flags]


def test_build_without_the_plugin_parses_the_inlined_function(stand_in_build):
    run, root = stand_in_build
    trt = fake_tensorrt(plugin_layers=0)
    result = run(trt, use_plugin=False, timing_cache=None, progress=False)
    assert (result.tam_op, result.plugin_layers) == ("onnx-function", 0)
    assert ("parse", "bytes", str(root / "tam.onnx")) in trt.calls
    assert [flag_names(c[1]) for c in trt.calls if c[0] == "flags"] == [{"STRONGLY_TYPED"}]
    assert not (root / "t.cache").exists()


@pytest.mark.parametrize("refusal", ["raise", "false"])
def test_a_timing_cache_tensorrt_refuses_is_replaced_with_a_warning(stand_in_build, refusal):
    run, root = stand_in_build
    (root / "t.cache").write_bytes(b"CACHE OF ANOTHER TENSORRT")
    trt = fake_tensorrt(plugin_layers=1, cache_fails=refusal)
    result = run(trt)
    assert not result.timing_cache_loaded
    assert any(w.startswith(f"timing cache {root / 't.cache'} is unreadable") for w in result.warnings)
    assert ("create_timing_cache", b"CACHE OF ANOTHER TENSORRT") in trt.calls
    assert trt.calls[-1] == ("set_timing_cache", b"")  # the build ran with a new, empty cache
    assert (root / "t.cache").read_bytes() == b"CACHE"  # and its cache replaced the refused one


def test_build_reports_parser_and_builder_errors_in_one_line(stand_in_build):
    run, root = stand_in_build
    with pytest.raises(TamdeployError, match=r"parser rejected tam.onnx: node /layer1/Foo \(Foo\): Unsupported"):
        run(fake_tensorrt(plugin_layers=1, parse_ok=False))
    with pytest.raises(TamdeployError, match="could not build tam.onnx: out of memory"):
        run(fake_tensorrt(plugin_layers=1, plan=None))
    assert not (root / "tam.plan").exists() and not sidecar_path(root / "tam.plan").exists()


def test_build_checks_its_options_before_building(stand_in_build):
    run, root = stand_in_build
    with pytest.raises(TamdeployError, match="optimization level must be 0..5"):
        run(fake_tensorrt(1), opt_level=9)
    with pytest.raises(TamdeployError, match="workspace must be > 0"):
        run(fake_tensorrt(1), workspace_gb=0)
    with pytest.raises(TamdeployError, match="directory .* does not exist"):
        run(fake_tensorrt(1), timing_cache=root / "missing" / "t.cache")


# --- TensorRTRunner against the stand-in: CPU memory stands in for the GPU's ------------------------------------


class FakeGraph:
    """``torch.cuda.CUDAGraph``: replays the launches recorded while it was captured."""

    def __init__(self) -> None:
        self.launches: list[tuple] = []

    def replay(self) -> None:
        for launch in self.launches:
            run_launch(*launch)


@pytest.fixture
def stand_in_cuda(monkeypatch):
    """torch.cuda's streams, events and graphs as CPU stand-ins, and the runner's view of the GPU;
    yields ``activate(runner, trt)``, which activates ``runner`` against ``trt`` on CPU buffers (and
    deactivates it after the test)."""
    from tamdeploy.deploy.runners import tensorrt_runner

    @contextlib.contextmanager
    def capture(graph, stream=None, capture_error_mode=None):
        trt = sys.modules["tensorrt"]
        trt.capturing = graph.launches
        try:
            yield
        finally:
            trt.capturing = None

    class Event:
        def __init__(self, enable_timing=False) -> None:
            pass

        def record(self, stream=None) -> None:
            pass

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end) -> float:
            return 0.25

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: types.SimpleNamespace(cuda_stream=7))
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(tensorrt_runner, "gpu_identity", lambda device=None: ("Fake GPU", "9.0"))

    active = []

    def activate(runner, trt):
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        active.append(runner.activate())
        runner._device = torch.device("cpu")  # the buffers: CPU tensors, read and written by the fake context
        return runner

    yield activate
    for runner in active:
        runner.deactivate()


def test_runner_refuses_the_plan_of_an_interrupted_build(stand_in_build, stand_in_cuda, monkeypatch):
    from tamdeploy.deploy.build import engine as engine_module

    run, root = stand_in_build
    plan = root / "tam.plan"
    run(fake_tensorrt(plugin_layers=1, plan=b"OLD PLAN, plugin-aot"))
    stand_in_cuda(TensorRTRunner(plan), sys.modules["tensorrt"]).deactivate()  # a consistent pair loads
    old_sidecar = sidecar_path(plan).read_bytes()

    def interrupted(target, data):
        if Path(target) == sidecar_path(plan):
            raise KeyboardInterrupt  # Ctrl-C after the plan's rename, before the sidecar's
        return write_bytes_atomic(target, data)

    monkeypatch.setattr(engine_module, "write_bytes_atomic", interrupted)
    trt = fake_tensorrt(plugin_layers=0, plan=b"NEW PLAN, onnx-function")
    with pytest.raises(KeyboardInterrupt):
        run(trt, use_plugin=False)
    assert plan.read_bytes() == b"NEW PLAN, onnx-function" and sidecar_path(plan).read_bytes() == old_sidecar
    with pytest.raises(EngineMismatchError) as raised:
        stand_in_cuda(TensorRTRunner(plan), trt)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("tam.plan (23 bytes) is not the engine its sidecar describes")
    assert ("the engine and its sidecar were not written together (an interrupted build?): rebuild with "
            f"'tamdeploy build {root / 'tam.onnx'}'") in message


def test_check_plan_refuses_a_sidecar_without_the_plans_record(tmp_path):
    sidecar = {"format": "tamdeploy-tensorrt-engine", "onnx": {"path": "m.onnx"}}
    with pytest.raises(EngineMismatchError, match=r"does not record the engine's sha256 .* 'tamdeploy build m.onnx'"):
        check_plan(sidecar, tmp_path / "m.plan", b"PLAN")
    same_size = {**sidecar, "engine": {"bytes": 4, "sha256": hashlib.sha256(b"PLAN").hexdigest()}}
    check_plan(same_size, tmp_path / "m.plan", b"PLAN")
    with pytest.raises(EngineMismatchError, match="not written together"):
        check_plan(same_size, tmp_path / "m.plan", b"PLAM")  # same size, other bytes: the sha256 tells


def clip_batch(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4, 5, 5), dtype=np.float32)


def expected_output(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    return np.stack([flat.sum(1), flat.max(1)], axis=1)


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["plain", "cuda-graph"])
def test_runner_rebinds_each_input_shape_and_replays_its_graph(stand_in_cuda, tmp_path, cuda_graph):
    (tmp_path / "m.plan").write_bytes(b"PLAN")  # no sidecar: loaded as it is
    runner = stand_in_cuda(TensorRTRunner(tmp_path / "m.plan", cuda_graph=cuda_graph), fake_tensorrt(0))
    assert runner.input_shape == (None, 4, 5, 5) and runner.batch_range == (1, 4)
    # batch 2, 3, then 2 and 3 again: the second visit of a shape reuses (and rebinds) its buffers
    for step, batch in enumerate((2, 2, 3, 2, 3, 3)):
        x = clip_batch(batch, seed=step)
        y = runner.infer({"x": x})["y"].copy()  # on the CPU stand-in the result shares the output buffer
        np.testing.assert_allclose(y, expected_output(x), rtol=1e-5, err_msg=f"step {step}, batch {batch}")
        assert runner.last_gpu_ms == 0.25
    # one capture per shape after its first (plain) run; every later run of that shape is a replay
    assert (runner.graph_captures, runner.graph_replays) == ((2, 4) if cuda_graph else (0, 0))
    assert runner.notes == [] and runner.cuda_graph == cuda_graph
    with pytest.raises(DataError, match="batch 5, outside the engine's profile 1..4"):
        runner.infer({"x": clip_batch(5, seed=0)})


@pytest.mark.parametrize(("failure", "note"), [
    ("raise", "CUDA graph capture failed (RuntimeError: operation not permitted when stream is capturing); "
              "running plain enqueues"),
    ("false", "CUDA graph capture failed (execute_async_v3 returned False while capturing); running plain enqueues"),
])
def test_runner_says_why_a_graph_was_not_captured_and_runs_plain(stand_in_cuda, tmp_path, failure, note):
    (tmp_path / "m.plan").write_bytes(b"PLAN")
    trt = fake_tensorrt(0)
    trt.capture_fails = failure
    runner = stand_in_cuda(TensorRTRunner(tmp_path / "m.plan", cuda_graph=True), trt)
    for step in range(3):
        x = clip_batch(2, seed=step)
        np.testing.assert_allclose(runner.infer({"x": x})["y"].copy(), expected_output(x), rtol=1e-5)
    assert runner.notes == [note] and not runner.cuda_graph
    assert (runner.graph_captures, runner.graph_replays) == (0, 0)
