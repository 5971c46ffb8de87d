"""The TAM aggregation op: fused PyTorch op vs TANet's formulation, validation, ONNX export and ORT."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import onnxslim
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tamdeploy.errors import TamdeployError
from tamdeploy.onnx_model import make_model, with_min_ir_version
from tamdeploy.onnx_runtime import create_session
from tamdeploy.plugins.contract import TAMInputError
from tamdeploy.plugins.tam_onnx import (
    TAM_DOMAIN,
    TAM_OP_TYPE,
    TAM_PLUGIN_NAMESPACE,
    add_tam_function,
    inline_tam_functions,
    make_tam_model,
    tam_translation_table,
)
from tamdeploy.plugins.tam_reference import tam_aggregate_reference

tam_op = torch.ops.tamdeploy.tam_aggregate


def ort_load_error(opset: int) -> str | None:
    """Why the installed ONNX Runtime cannot load an opset-``opset`` model (None: it can)."""
    io = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in "xy"]
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:])
    try:
        create_session(make_model(graph, opset=opset))
    except TamdeployError as e:
        return f"onnxruntime {ort.__version__} cannot load opset {opset}: {str(e)[-80:]}"
    return None


# every opset the exporter accepts from 18 on; the newer ones only where this ONNX Runtime loads them
STANDALONE_OPSETS = [
    pytest.param(o, marks=pytest.mark.skipif(why is not None, reason=str(why)))
    for o, why in ((o, ort_load_error(o)) for o in (18, 23))
]


def tam_inputs(
    n: int, t: int, k: int, c: int, h: int, w: int, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n * t, c, h, w, generator=gen)
    kernel = torch.softmax(torch.randn(n, c, k, generator=gen), dim=-1)
    local = torch.sigmoid(torch.randn(n, c, t, generator=gen))
    return x.to(dtype), kernel.to(dtype), local.to(dtype)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    t=st.integers(1, 8),
    k=st.sampled_from([1, 3, 5]),
    c=st.integers(1, 6),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_fused_op_matches_tanet_formulation(n: int, t: int, k: int, c: int, h: int, w: int, seed: int) -> None:
    x, kernel, local = tam_inputs(n, t, k, c, h, w, seed=seed)
    torch.testing.assert_close(
        tam_op(x, kernel, local), tam_aggregate_reference(x, kernel, local), atol=1e-5, rtol=1e-5
    )


def test_fp16_accumulates_in_fp32_and_keeps_dtype() -> None:
    x, kernel, local = tam_inputs(2, 8, 3, 16, 7, 7, dtype=torch.float16)
    y = tam_op(x, kernel, local)
    assert y.dtype == torch.float16
    expected = tam_aggregate_reference(x.float(), kernel.float(), local.float())
    # One rounding of the fp32 result: within half an fp16 ulp.
    torch.testing.assert_close(y.float(), expected, atol=1e-3, rtol=2**-11)


def test_centre_tap_and_unit_local_is_identity() -> None:
    x, _, _ = tam_inputs(2, 5, 3, 4, 3, 3)
    kernel = torch.zeros(2, 4, 3)
    kernel[..., 1] = 1
    assert torch.equal(tam_op(x, kernel, torch.ones(2, 4, 5)), x)


def test_non_contiguous_input() -> None:
    x, kernel, local = tam_inputs(2, 4, 3, 5, 6, 6)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(tam_op(x_cl, kernel, local), tam_aggregate_reference(x, kernel, local))


@pytest.mark.parametrize(
    ("x_shape", "kernel_shape", "local_shape", "dtype", "message"),
    [
        ((8, 4, 3), (1, 4, 3), (1, 4, 8), torch.float32, "x must be"),
        ((8, 4, 3, 3), (1, 4, 3, 1), (1, 4, 8), torch.float32, "kernel must be"),
        ((8, 4, 3, 3), (1, 4, 3), (4, 8), torch.float32, "local must be"),
        ((8, 4, 3, 3), (2, 4, 3), (1, 4, 8), torch.float32, "disagree on N or C"),
        ((8, 4, 3, 3), (1, 4, 3), (1, 5, 8), torch.float32, "disagree on N or C"),
        ((8, 5, 3, 3), (1, 4, 3), (1, 4, 8), torch.float32, r"\[1\*8, 4, H, W\]"),
        ((8, 4, 3, 3), (1, 4, 3), (1, 4, 4), torch.float32, r"\[1\*4, 4, H, W\]"),
        ((8, 4, 3, 3), (1, 4, 2), (1, 4, 8), torch.float32, "must be odd, got K=2"),
        ((8, 4, 3, 3), (1, 4, 3), (1, 4, 8), torch.int32, "floating dtype"),
    ],
)
def test_invalid_inputs_raise_clear_errors(
    x_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    local_shape: tuple[int, ...],
    dtype: torch.dtype,
    message: str,
) -> None:
    x, kernel, local = (torch.ones(shape).to(dtype) for shape in (x_shape, kernel_shape, local_shape))
    with pytest.raises(TAMInputError, match=message) as info:
        tam_op(x, kernel, local)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TamdeployError)


def test_mixed_dtypes_are_rejected() -> None:
    x, kernel, local = tam_inputs(1, 4, 3, 2, 2, 2)
    with pytest.raises(TAMInputError, match="one floating dtype"):
        tam_op(x.half(), kernel, local)


def test_import_registers_op_without_loading_onnx() -> None:
    code = (
        "import sys, torch, tamdeploy.plugins.tam_op; torch.ops.tamdeploy.tam_aggregate.default; "
        "assert not {'onnx', 'onnxscript'} & set(sys.modules), 'onnx imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_root_needs_no_torch() -> None:
    """Decode workers and the serving path import tamdeploy where torch is absent (or too slow to load)."""
    code = "import sys; sys.modules['torch'] = None; import tamdeploy; assert 'torch' not in dir(tamdeploy)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_default_implementation_runs_on_cuda() -> None:
    x, kernel, local = (tensor.cuda() for tensor in tam_inputs(2, 8, 3, 16, 14, 14))
    expected = tam_aggregate_reference(x, kernel, local)
    torch.testing.assert_close(tam_op(x, kernel, local), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tam_op(x.half(), kernel.half(), local.half()).float(), expected, atol=2e-3, rtol=2e-3)


class TwoTAMs(torch.nn.Module):
    """Kernel and local computed from x; two TAMs with different (T, K) share one ONNX function."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # video [N, 8, C, H, W]
        n, t, c, h, w = video.shape
        x = video.reshape(n * t, c, h, w)
        x = torch.ops.tamdeploy.tam_aggregate(x, *self._kernel_local(x, n, t, 3))
        # The same frames as 2N clips of 4 segments, with a 5-tap kernel.
        return torch.ops.tamdeploy.tam_aggregate(x, *self._kernel_local(x, 2 * n, t // 2, 5))

    @staticmethod
    def _kernel_local(x: torch.Tensor, n: int, t: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = x.mean(dim=(2, 3)).view(n, t, -1).transpose(1, 2)  # [N, C, T]
        kernel = torch.softmax(torch.stack([pooled.roll(s, dims=-1).mean(-1) for s in range(k)], -1), -1)
        return kernel, torch.sigmoid(pooled)


@pytest.fixture(scope="module")
def exported() -> onnx.ModelProto:
    video = torch.randn(2, 8, 4, 5, 5)
    program = torch.onnx.export(
        TwoTAMs().eval(),
        (video,),
        dynamo=True,
        dynamic_shapes={"video": {0: torch.export.Dim("n")}},
        custom_translation_table=tam_translation_table(),
        verbose=False,
    )
    return program.model_proto


def tam_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if (node.domain, node.op_type) == (TAM_DOMAIN, TAM_OP_TYPE)]


def test_export_emits_one_custom_node_per_call_with_attributes(exported: onnx.ModelProto) -> None:
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} for node in tam_nodes(exported)]
    namespace = TAM_PLUGIN_NAMESPACE.encode()
    assert attrs == [
        {"num_segments": 8, "kernel_size": 3, "plugin_namespace": namespace},
        {"num_segments": 4, "kernel_size": 5, "plugin_namespace": namespace},
    ]
    assert {(o.domain, o.version) for o in exported.opset_import} >= {(TAM_DOMAIN, 1)}


@pytest.fixture(scope="module")
def models(exported: onnx.ModelProto) -> dict[str, onnx.ModelProto]:
    with_function = add_tam_function(onnx.ModelProto.FromString(exported.SerializeToString()))
    return {"function": with_function, "inline": inline_tam_functions(exported)}


def test_function_is_valid_and_uses_standard_ops(models: dict[str, onnx.ModelProto]) -> None:
    model = models["function"]
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert inferred.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    (function,) = model.functions
    assert (function.domain, function.name) == (TAM_DOMAIN, TAM_OP_TYPE)
    assert {node.domain for node in function.node} == {""}
    # No float constant or Cast: an FP16 conversion of the graph leaves the body consistent.
    assert "Cast" not in {node.op_type for node in function.node}
    for node in function.node:
        for attr in node.attribute:
            assert attr.type != onnx.AttributeProto.TENSOR or attr.t.data_type == onnx.TensorProto.INT64


def test_inline_mode_has_no_custom_node(models: dict[str, onnx.ModelProto]) -> None:
    model = models["inline"]
    onnx.checker.check_model(model, full_check=True)
    assert not model.functions
    assert {node.domain for node in model.graph.node} == {""}
    assert TAM_DOMAIN not in {o.domain for o in model.opset_import}


@pytest.mark.parametrize("mode", ["function", "inline"])
@pytest.mark.parametrize("slim", [False, True], ids=["plain", "onnxslim"])
@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(models: dict[str, onnx.ModelProto], mode: str, slim: bool, batch: int) -> None:
    model = onnxslim.slim(models[mode]) if slim else models[mode]
    if mode == "function":
        assert len(tam_nodes(model)) == 2 and len(model.functions) == 1
    session = create_session(model)
    video = torch.randn(batch, 8, 4, 5, 5)
    (y,) = session.run(None, {session.get_inputs()[0].name: video.numpy()})
    np.testing.assert_allclose(y, TwoTAMs()(video).numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("inline", [False, True], ids=["function", "inline"])
@pytest.mark.parametrize(
    ("t", "k", "elem_type", "dtype", "tol"),
    [
        (8, 3, onnx.TensorProto.FLOAT, torch.float32, 1e-5),
        (3, 5, onnx.TensorProto.FLOAT, torch.float32, 1e-5),
        (1, 1, onnx.TensorProto.FLOAT, torch.float32, 1e-5),
        (8, 3, onnx.TensorProto.FLOAT16, torch.float16, 3e-3),
    ],
)
@pytest.mark.parametrize("opset", STANDALONE_OPSETS)
def test_standalone_model(
    inline: bool, t: int, k: int, elem_type: int, dtype: torch.dtype, tol: float, opset: int
) -> None:
    model = make_tam_model(t, k, 6, 4, 5, elem_type=elem_type, opset_version=opset, inline=inline)
    onnx.checker.check_model(model, full_check=True)
    if onnx.defs.onnx_opset_version() >= opset:  # what the opset needs, not what onnx writes by default
        assert model.ir_version == {18: 8, 23: 11}[opset]
    session = create_session(model)
    for n in (1, 2):
        x, kernel, local = tam_inputs(n, t, k, 6, 4, 5, dtype=dtype, seed=n)
        (y,) = session.run(None, {"x": x.numpy(), "kernel": kernel.numpy(), "local": local.numpy()})
        expected = tam_aggregate_reference(x.float(), kernel.float(), local.float())
        np.testing.assert_allclose(y.astype(np.float32), expected.numpy(), atol=tol, rtol=tol)


def test_min_ir_version_lowers_to_what_the_opsets_need_and_never_raises() -> None:
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    newest = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    assert newest.ir_version == onnx.IR_VERSION
    assert with_min_ir_version(newest).ir_version == 8
    old = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=7)
    assert with_min_ir_version(old).ir_version == 7
    if onnx.defs.onnx_opset_version() >= 23:
        assert make_model(graph, opset=23).ir_version == 11
    else:  # an opset this onnx does not know: its table cannot say, so nothing is lowered
        assert make_model(graph, opset=23).ir_version == onnx.IR_VERSION
