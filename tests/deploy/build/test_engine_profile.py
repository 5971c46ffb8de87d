"""TensorRT engine builds, the parts that need no TensorRT: batch profiles and the ONNX side of a build."""


from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from tamdeploy.deploy.build.engine import (
    DEFAULT_BATCH,
    BatchProfile,
    check_batch_range,
    onnx_input_dims,
    parse_batch_range,
    resolve_profile,
)
from tamdeploy.deploy.build.graph import graph_precision
from tamdeploy.errors import TamdeployError
from tamdeploy.onnx_model import make_model
from tamdeploy.plugins.contract import tam_nodes
from tamdeploy.plugins.tam_onnx import TAM_OP_TYPE, TAM_PLUGIN_NAMESPACE, make_tam_model
from tamdeploy.plugins.trt_plugin import (
    PLUGIN_ID,
    PLUGIN_NAME,
    PLUGIN_NAMESPACE,
)

# --- batch profile --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("8", (8, 8, 8)), ("1,16", (1, 1, 16)), ("1, 4, 16", (1, 4, 16)), ("2,2,2", (2, 2, 2)),
])
def test_parse_batch_range(text, expected):
    assert parse_batch_range(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("a", "must be B, MIN,MAX or MIN,OPT,MAX"), ("1,2,3,4", "must be B, MIN,MAX or MIN,OPT,MAX"),
    ("0,1,2", "smallest batch must be >= 1"), ("4,2,8", "min <= opt <= max"), ("1,9,8", "min <= opt <= max"),
])
def test_bad_batch_ranges_say_what_is_wrong(text, message):
    with pytest.raises(TamdeployError, match=message):
        parse_batch_range(text)


def test_check_batch_range_wants_three_integers():
    with pytest.raises(TamdeployError, match="three integers"):
        check_batch_range((1, 2))
    with pytest.raises(TamdeployError, match="three integers"):
        check_batch_range((1, 2.0, 3))


def test_default_profile_covers_the_bench_default_batches():
    from tamdeploy.deploy.bench.measure import DEFAULT_BATCHES

    lo, opt, hi = DEFAULT_BATCH
    assert lo == opt == 1 and hi >= max(DEFAULT_BATCHES) and hi >= 8


def test_video_profile_replaces_the_batch_and_keeps_the_clip_shape():
    profile = resolve_profile("video", ["N", 8, 3, 224, 224], (1, 4, 16))
    assert profile == BatchProfile("video", (1, 8, 3, 224, 224), (4, 8, 3, 224, 224), (16, 8, 3, 224, 224))
    assert profile.batch == (1, 4, 16)
    assert BatchProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    assert resolve_profile("image", [None, 3, 64, 64], None).batch == DEFAULT_BATCH


def test_profile_fills_symbolic_dims_from_the_metadata_and_checks_static_ones():
    profile = resolve_profile("video", ["N", "T", 3, "S", "S"], None, fallback_shape=(4, 3, 64, 64))
    assert profile.max == (16, 4, 3, 64, 64)
    with pytest.raises(TamdeployError, match="metadata says"):
        resolve_profile("video", ["N", 8, 3, 64, 64], None, fallback_shape=(4, 3, 64, 64))
    with pytest.raises(TamdeployError, match="only the batch may be dynamic"):
        resolve_profile("video", ["N", "T", 3, 64, 64], None)


def test_static_batch_allows_only_itself():
    assert resolve_profile("image", [2, 3, 8, 8], None).batch == (2, 2, 2)
    assert resolve_profile("image", [2, 3, 8, 8], (2, 2, 2)).batch == (2, 2, 2)
    with pytest.raises(TamdeployError, match="fixed batch of 2"):
        resolve_profile("image", [2, 3, 8, 8], (1, 2, 4))


# --- the ONNX side of a build -----------------------------------------------------------------------------


def tiny_graph(nodes, initializers=(), elem=TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, ["N", 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    return make_model(graph)


def test_onnx_input_dims_skips_initializers_and_keeps_symbols():
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    model = tiny_graph([helper.make_node("Mul", ["x", "w"], ["y"])], [w])
    model.graph.input.insert(0, helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
    assert onnx_input_dims(model) == ("x", ["N", 3, 4, 4])


def test_tam_nodes_are_counted_by_op_type_and_domain():
    assert (PLUGIN_NAME, PLUGIN_NAMESPACE) == (TAM_OP_TYPE, TAM_PLUGIN_NAMESPACE)  # what the parser matches
    assert PLUGIN_ID == "tamdeploy::TAMAggregate"
    assert len(tam_nodes(make_tam_model(8, 3, 4, 5, 5))) == 1
    assert len(tam_nodes(make_tam_model(8, 3, 4, 5, 5, inline=True))) == 0


def test_graph_precision():
    assert graph_precision(tiny_graph([helper.make_node("Relu", ["x"], ["y"])])) == "fp32"
    cast = helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16)
    back = helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)
    assert graph_precision(tiny_graph([cast, back])) == "fp16"
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zp = helper.make_tensor("z", TensorProto.INT8, [], [0])
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])
    assert graph_precision(tiny_graph([q, dq], [s, zp])) == "int8"
