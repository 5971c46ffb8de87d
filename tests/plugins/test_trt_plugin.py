"""The TAMAggregate TensorRT plugin: its TensorRT-independent logic, and its registration against a stand-in
of ``tensorrt.plugin`` (no TensorRT needed)."""


from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from tamdeploy.plugins.trt_plugin import (
    AUTOTUNE_TYPES,
    PLUGIN_ID,
    TAMPluginError,
    plugin_output_dtype,
    plugin_output_shape,
    resolve_segments_and_kernel,
)

# --- the plugin's TensorRT-independent logic ----------------------------------------------------------------


def test_plugin_type_rules():
    assert plugin_output_dtype("float32", "float32", "float32") == "float32"
    assert plugin_output_dtype("float16", "float16", "float16") == "float16"
    with pytest.raises(TAMPluginError, match="share one type"):
        plugin_output_dtype("float16", "float32", "float16")
    with pytest.raises(TAMPluginError, match="float32 or float16"):
        plugin_output_dtype("int8", "int8", "int8")
    assert AUTOTUNE_TYPES.count(",") == 3 and all(p.strip() == "FP32|FP16" for p in AUTOTUNE_TYPES.split(","))


def test_plugin_shape_descriptor_is_x_shape_and_checks_known_dims():
    assert plugin_output_shape([16, 64, 56, 56], [2, 64, 3], [2, 64, 8]) == (16, 64, 56, 56)
    assert plugin_output_shape([None, 64, 56, 56], [None, 64, 3], [None, 64, 8]) == (None, 64, 56, 56)
    assert plugin_output_shape([-1, 8, 7, 7], [-1, 8, 3], [-1, 8, 4]) == (-1, 8, 7, 7)
    for args, message in (
        (([16, 64, 56], [2, 64, 3], [2, 64, 8]), "X must be"),
        (([16, 64, 56, 56], [2, 64], [2, 64, 8]), "kernel must be"),
        (([16, 64, 56, 56], [2, 32, 3], [2, 64, 8]), "X and kernel disagree on C"),
        (([16, 64, 56, 56], [2, 64, 3], [2, 32, 8]), "X and local disagree on C"),
        (([16, 64, 56, 56], [2, 64, 3], [3, 64, 8]), "disagree on N"),
        (([16, 64, 56, 56], [2, 64, 4], [2, 64, 8]), "must be odd"),
        (([15, 64, 56, 56], [2, 64, 3], [2, 64, 8]), "not N\\*T"),
    ):
        with pytest.raises(TAMPluginError, match=message):
            plugin_output_shape(*args)


def test_plugin_takes_t_and_k_from_static_shapes_whatever_the_attribute_order():
    assert resolve_segments_and_kernel([None, 64, 3], [None, 64, 8], 8, 3) == (8, 3)
    assert resolve_segments_and_kernel([None, 64, 3], [None, 64, 8], 3, 8) == (8, 3)  # attributes swapped
    assert resolve_segments_and_kernel([None, 64, None], [None, 64, 8], 3, 8) == (8, 3)
    assert resolve_segments_and_kernel([None, 64, 5], [None, 64, None], 5, 16) == (16, 5)
    assert resolve_segments_and_kernel([None, 64, None], [None, 64, None], 8, 3) == (8, 3)
    with pytest.raises(TAMPluginError, match="disagree with the inputs"):
        resolve_segments_and_kernel([None, 64, 3], [None, 64, 8], 16, 3)


# --- the registration code against a stand-in of tensorrt.plugin (no TensorRT needed) -------------------------


class FakeExpr:
    """A ``trtp.ShapeExpr`` stand-in: a constant or a named size; products and cdiv build text."""

    def __init__(self, value: int | str) -> None:
        self.value = value
        self.is_fake = False

    @property
    def is_constant(self) -> bool:
        return isinstance(self.value, int)

    def constant_value(self) -> int:
        return self.value

    def __mul__(self, other: FakeExpr) -> FakeExpr:
        if self.is_constant and other.is_constant:
            return FakeExpr(self.value * other.value)
        return FakeExpr(f"({self.value}*{other.value})")


class FakeDesc:
    def __init__(self, dims: list[int | str], dtype=np.float16) -> None:
        self.shape_expr = [FakeExpr(d) for d in dims]
        self.shape = [d if isinstance(d, int) else -1 for d in dims]
        self.has_shape = True
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape_expr)

    def like(self) -> FakeDesc:
        return self


def fake_tensorrt_plugin() -> tuple[types.ModuleType, types.ModuleType, dict]:
    """``tensorrt`` and ``tensorrt.plugin`` stand-ins that record the decorated functions."""
    functions: dict = {}
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0"
    trt.nptype = lambda dtype: dtype
    trtp = types.ModuleType("tensorrt.plugin")

    def decorator(kind):
        def outer(plugin_id):
            assert plugin_id == PLUGIN_ID

            def inner(fn):
                functions[kind] = fn
                return fn
            return inner
        return outer

    for kind in ("register", "impl", "aot_impl", "autotune"):
        setattr(trtp, kind, decorator(kind))

    class KernelLaunchParams:
        pass

    class SymInt32:
        def __init__(self, expr):
            self.expr = expr

    class SymIntExprs(list):
        @classmethod
        def from_tuple(cls, items):
            return cls(items)

    trtp.TensorDesc, trtp.Tensor, trtp.SymExprs = FakeDesc, object, list
    trtp.KernelLaunchParams, trtp.SymInt32, trtp.SymIntExprs = KernelLaunchParams, SymInt32, SymIntExprs
    trtp.AutoTuneCombination = lambda types_, layout: (types_, layout)
    trtp.cdiv = lambda a, b: FakeExpr(f"cdiv({a.value},{b})")
    trt.plugin = trtp
    return trt, trtp, functions


def test_plugin_registration_against_a_tensorrt_plugin_stand_in(monkeypatch):
    import inspect

    pytest.importorskip("triton", reason="the AOT implementation compiles the kernel with Triton")
    from tamdeploy.plugins import trt_plugin

    trt, trtp, functions = fake_tensorrt_plugin()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(trt_plugin, "_build_capability", lambda: (9, 0))
    support = trt_plugin.register_tam_plugin.__wrapped__()
    assert support.aot and support.preferred == "aot" and support.tensorrt_version == "10.13.0"

    # the schemas tensorrt.plugin checks: inputs, attributes in registration order, then its own arguments
    params = {kind: list(inspect.signature(fn).parameters) for kind, fn in functions.items()}
    assert params["register"] == ["x", "kernel", "local", "num_segments", "kernel_size"]
    assert params["autotune"] == ["x", "kernel", "local", "outputs"]
    assert params["impl"] == ["x", "kernel", "local", "outputs", "stream"]
    assert params["aot_impl"] == ["x", "kernel", "local", "num_segments", "kernel_size", "outputs", "tactic"]
    annotations = inspect.signature(functions["register"]).parameters
    assert all(isinstance(p.annotation, type) for p in annotations.values())  # real classes, not strings

    x, kernel, local = FakeDesc(["NT", 64, 56, 56]), FakeDesc(["N", 64, 3]), FakeDesc(["N", 64, 8])
    assert functions["register"](x, kernel, local, num_segments=8, kernel_size=3) is x
    with pytest.raises(TAMPluginError, match="share one type"):
        functions["register"](x, FakeDesc(["N", 64, 3], np.float32), local, num_segments=8, kernel_size=3)
    assert functions["autotune"](x, kernel, local, (x,)) == [(AUTOTUNE_TYPES, "LINEAR")]

    # aot_impl gets the attributes by position, here swapped: T and K still come from the shapes
    name, ptx, launch, extra = functions["aot_impl"](x, kernel, local, 3, 8, (x,), 0)
    assert isinstance(name, bytes) and isinstance(ptx, bytes) and b".target sm_90a" in ptx
    assert launch.grid_x.value == "(64*cdiv(3136,1024))"  # C * blocks per frame
    assert launch.grid_y.value == "N" and launch.grid_z == 1 and launch.block_x == 128 and launch.shared_mem == 0
    assert [e.expr.value for e in extra] == [64, 3136]
