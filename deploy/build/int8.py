"""INT8 graphs with explicit Q/DQ that TensorRT's parser takes and ONNX Runtime runs.

- Activations and weights symmetric INT8 (zero point 0), weights per output channel: TensorRT takes
  ``DequantizeLinear`` of INT8 only with zero point 0.
- Biases stay float (``QuantizeBias: False``): ONNX Runtime's default INT32 bias DQ is refused by
  TensorRT's parser, and TensorRT fuses the float bias into the INT8 convolution anyway.
- Only the inputs of Conv, Gemm and MatMul are quantized (``QUANT_OP_TYPES``): TensorRT's explicit
  quantization places Q/DQ in front of the weighted layers and propagates them through the rest
  (ReLU, pooling, reshapes, residual adds); ONNX Runtime's default set would also quantize Reshape,
  Transpose, MaxPool and Relu outputs, which costs accuracy and gains neither runtime anything.
- The TAMAggregate node is never quantized (no runtime has an INT8 TAM kernel; TensorRT plugin
  inputs are FP32/FP16) and the quantizer never enters its model-local function: its inputs stay
  float; a Q/DQ pair after its output feeds the following Conv (measured: ``tests/test_precision.py``).
  The graph for OpenVINO also quantizes its X and its output (``quantize_tam_tensors``).
- Calibration runs the model on ONNX Runtime's CPU provider over the calibration clips, a few at a time
  (progress shown); methods minmax, entropy (KL divergence, TensorRT's classic choice) and percentile
  (99.999 %).

``default_exclusions``, the layers left in float unless ``--sensitivity`` adds more, chosen by
measurement on the models tests/test_precision.py trains (minmax, 32 calibration clips, 256 held-out
mp4 clips; top-1 agreement with FP32 / accuracy, FP32 accuracy TANet 99.2 %, ACTION-Net 100 %)::

    kept in float                          TANet             ACTION-Net
    nothing                                96.5 / 97.3 %     98.0 / 98.0 %
    TAM kernel branch (Linear -> Softmax)  98.8 / 99.6 %     -
    all gate branches (``gate_branches``)  99.2 / 100 %      98.8 / 98.8 %
    gate branches + stem conv              99.2 / 100 %      99.6 / 99.6 %

Quantized one at a time, the worst TANet layers were the kernel branch's last Linear in each stage
(logits rel L2 0.128, 0.078, 0.054 vs a median layer's ~1e-3): an error in the Softmax's input moves
the temporal kernel of every channel of the clip. TAM's branches and SE hold a fraction of a percent of
the weights, so keeping them in float costs no size; ACTION-Net's excitations hold 15 % of ACTION-Net-R50's
(its INT8 file is 42 MB instead of 29 MB with them quantized); they run on pooled features, so no slower
(ONNX Runtime INT8 ACTION-Net-R50 534 -> 487 ms with them and its statistics in float). ACTION-Net's
statistics are MatMuls against pooling constants (``pooling_matmuls``): poolings,
never quantized (a quantized input would cost a quantize pass over the block input for a sum). The stem
conv (3 input channels, 147 MACs an output) stays float too. Entropy calibration
clipped the rare large activations that carried the class (64.8 % agreement on TANet): minmax is the
default, percentile 99.999 % scored like it.

The defaults are not always enough on these tiny models: over TANets trained with other seeds or
step counts, INT8 agreement with the defaults ranged from 93 % to 100 %, with no structural culprit
(the worst single layers were early convs, each 4x the median error). ``--sensitivity`` handles
that per model: ``layer_sensitivity`` measures the output error of quantizing one layer at a time, and
``pick_fallback`` the fewest worst layers to leave in float for the INT8 graph to keep 99 % top-1
agreement with FP32 on the calibration clips.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from inspect import signature
from pathlib import Path

import numpy as np
import onnx

from tamdeploy.console import progress_bar, status
from tamdeploy.deploy.build.graph import (
    PrecisionError,
    check_precision_graph,
    gate_branches,
    pooling_matmuls,
    set_precision_metadata,
    tam_nodes,
    topological_sort,
)
from tamdeploy.onnx_model import copy_model
from tamdeploy.onnx_runtime import create_session
from tamdeploy.plugins.contract import TAM_OP_TYPE

QUANT_OP_TYPES = ("Conv", "Gemm", "MatMul")
CALIB_METHODS = ("minmax", "entropy", "percentile")
CALIB_CHUNK = 4  # clips per calibration run: bounds the memory the calibrator holds at once
PERCENTILE = 99.999
SENSITIVITY_SAMPLES = 32  # calibration clips the per-layer errors are measured on
FALLBACK_TARGET = 0.99  # top-1 agreement with FP32 that --sensitivity's fallback set restores (at least
# all clips but one of a probe smaller than 100: 32 calibration clips allow one flip, 96.9 %)
_LAYOUT_OPS = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Identity")
_QDQ_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": ["Gemm"]}


@dataclass(frozen=True)
class LayerError:
    """Output error when only ``node`` is quantized: relative L2 of the logits vs FP32, top-1 agreement."""

    node: str
    op_type: str
    rel_l2_error: float
    top1_agreement: float

    def to_dict(self) -> dict:
        return {"node": self.node, "op_type": self.op_type, "rel_l2_error": self.rel_l2_error,
                "top1_agreement": self.top1_agreement}


@dataclass
class Int8Result:
    model: onnx.ModelProto
    method: str
    quantized_nodes: list[str]
    excluded_nodes: list[str]
    calibration_samples: int
    calibration_seconds: float
    sensitivity: list[LayerError] = field(default_factory=list)

    def to_dict(self) -> dict:
        report = {"method": self.method, "quantized_nodes": len(self.quantized_nodes),
                  "excluded_nodes": list(self.excluded_nodes), "calibration_samples": self.calibration_samples,
                  "calibration_seconds": round(self.calibration_seconds, 3)}
        if self.sensitivity:
            report["sensitivity"] = [e.to_dict() for e in self.sensitivity]
        return report


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise PrecisionError(f"`calib_method` must be one of {', '.join(CALIB_METHODS)}, got {method!r}")
    return methods[method]


def _input_name(model: onnx.ModelProto) -> str:
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    if len(names) != 1:
        raise PrecisionError(f"INT8 calibration feeds models with one input; this one has {len(names)}")
    return names[0]


class _Chunk:
    """ONNX Runtime's CalibrationDataReader protocol over one chunk of clips."""

    def __init__(self, name: str, array: np.ndarray) -> None:
        self._feeds = iter([{name: array}])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def calibrate(model: onnx.ModelProto, data: np.ndarray, method: str = "minmax", progress: bool = True,
              tam_tensors: bool = False):
    """Activation ranges (``onnxruntime.quantization.TensorsData``) of the inputs and outputs of the
    nodes in ``QUANT_OP_TYPES`` (and with ``tam_tensors`` of TAMAggregate, for ``quantize_tam_tensors``), over
    ``data`` [N, *sample] run in chunks of ``CALIB_CHUNK``."""
    from onnxruntime.quantization import create_calibrator

    calib_method = _calibration_method(method)
    options = {"symmetric": True}
    if method == "entropy":
        # ONNX Runtime's KL search loops in Python over half the bins for every tensor: 2048 bins (TensorRT's)
        # took 215 s on a 4-frame 32x32 TANet with 32 clips, 512 a few seconds
        options |= {"num_bins": 512, "num_quantized_bins": 128}
    elif method == "percentile":
        options |= {"num_bins": 2048, "percentile": PERCENTILE}
    name = _input_name(model)
    op_types = [*QUANT_OP_TYPES, TAM_OP_TYPE] if tam_tensors else list(QUANT_OP_TYPES)
    with tempfile.TemporaryDirectory(prefix="tamdeploy-calib-") as tmp:
        source = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(source))
        # the histogram collector prints to stdout, which may carry --json
        # CPU even where onnxruntime-gpu is installed; ONNX Runtime 1.20 has no `providers` and always uses it
        cpu = {"providers": ["CPUExecutionProvider"]} if "providers" in signature(create_calibrator).parameters else {}
        with contextlib.redirect_stdout(io.StringIO()):
            calibrator = create_calibrator(
                source, op_types, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                calibrate_method=calib_method, extra_options=options, **cpu)
            with progress_bar(progress) as bar:
                task = bar.add_task(f"calibrating ({method})", total=len(data))
                for start in range(0, len(data), CALIB_CHUNK):
                    chunk = np.ascontiguousarray(data[start:start + CALIB_CHUNK], dtype=np.float32)
                    calibrator.collect_data(_Chunk(name, chunk))
                    bar.advance(task, len(chunk))
            return calibrator.compute_data()


def quantizable_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes the INT8 pass would quantize: Conv, Gemm, MatMul of the main graph with a float weight
    initializer (a MatMul of two activations stays float), except the MatMuls that pool
    (``pooling_matmuls``: quantizing a sum of pixels gains nothing and adds a quantize pass over its input)."""
    initializers = {i.name for i in model.graph.initializer}
    poolings = pooling_matmuls(model)
    return [n for n in model.graph.node
            if n.domain in ("", "ai.onnx") and n.op_type in QUANT_OP_TYPES and len(n.input) > 1
            and n.input[1] in initializers and n.name not in poolings]


def stem_layers(model: onnx.ModelProto) -> list[str]:
    """Quantizable nodes that read the graph input itself (through reshapes only): the stem conv."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inputs = {i.name for i in model.graph.input}

    def from_input(name: str) -> bool:
        while name not in inputs:
            node = producer.get(name)
            if node is None or node.op_type not in _LAYOUT_OPS:
                return False
            name = node.input[0]
        return True

    return [n.name for n in quantizable_nodes(model) if from_input(n.input[0])]


def default_exclusions(model: onnx.ModelProto) -> list[str]:
    """Nodes kept in float by default, by measurement (module doc): the gate branches' layers
    (``gate_branches``) and the stem conv (``stem_layers``)."""
    keep = set(gate_branches(model)) | set(stem_layers(model))
    return [n.name for n in quantizable_nodes(model) if n.name in keep]


def quantize_qdq(model: onnx.ModelProto, ranges, exclude: Sequence[str] = (),
                 only: Sequence[str] | None = None, tam_tensors: bool = False) -> onnx.ModelProto:
    """The Q/DQ graph of ``model`` with ``ranges`` from ``calibrate``: every node of ``quantizable_nodes``
    (or just ``only``) except ``exclude``, and with ``tam_tensors`` the X input and output of each TAMAggregate
    (``quantize_tam_tensors``); sorted, checked, metadata precision "int8"."""
    from onnxruntime.quantization import QDQQuantizer, QuantType
    from onnxruntime.quantization.quant_utils import save_and_reload_model_with_shape_infer

    names = [n.name for n in quantizable_nodes(model)]
    if any(not name for name in names):
        raise PrecisionError("the graph has unnamed Conv/Gemm/MatMul nodes; give every node a name (onnxslim or "
                             "'tamdeploy export' do) so that layers can be chosen")
    chosen = [name for name in (names if only is None else only) if name not in set(exclude)]
    if not chosen:
        raise PrecisionError("no layer left to quantize: every Conv/Gemm/MatMul is excluded")
    # a copy: ONNX Runtime 1.20 saves the model it is given with external data, which turns the caller's
    # initializers into references to a file it then deletes
    inferred = save_and_reload_model_with_shape_infer(copy_model(model))
    quantizer = QDQQuantizer(inferred, True, False, QuantType.QInt8, QuantType.QInt8, ranges, chosen, [],
                             list(QUANT_OP_TYPES), dict(_QDQ_OPTIONS))
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = quantizer.quantize_model()
    if tam_tensors:
        quantize_tam_tensors(quantized, ranges)
    _restore_metadata(quantized, model)
    topological_sort(quantized.graph)
    set_precision_metadata(quantized, "int8")
    return quantized


def quantize_tam_tensors(model: onnx.ModelProto, ranges) -> list[str]:
    """Symmetric INT8 Q/DQ around each TAMAggregate node, in place, for OpenVINO only (``build_int8``);
    returns the nodes' names. Its X, unless dequantized already (through ReLUs), and its output, unless a
    graph output: one Q/DQ pair per tensor, which every float reader of the tensor then reads
    (``_quantize_tensor``).

    Measured on ACTION-Net-R50, OpenVINO 2026.4 on an AMX CPU (interleaved rounds): with X quantized the
    frame shifts copy INT8 instead of float (192 -> 167 ms); with the block input's residual Add reading
    the same dequantized X, as a plain ResNet's Q/DQ graph has it, OpenVINO adds the INT8 identity inside
    the next block's last conv instead of two float passes (-14 %); with the shifted output quantized, the
    channel mean and the tap-sum poolings read INT8 (-3 %). TANet's X is a ReLU of a dequantized conv and
    its output feeds a quantized conv already: nothing changes there. ONNX Runtime runs such pairs as extra
    passes (ACTION-Net-R50 INT8 487 -> 582 ms), so the ONNX Runtime and TensorRT graphs go without."""
    producer = {out: n for n in model.graph.node for out in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    pairs: list[onnx.NodeProto] = []
    quantized: list[str] = []
    for node in tam_nodes(model):
        source = producer.get(node.input[0])
        while source is not None and source.op_type == "Relu":
            source = producer.get(source.input[0])
        tensors = [(node.output[0], f"{node.name}_Y")]
        if source is None or source.op_type != "DequantizeLinear":
            tensors.insert(0, (node.input[0], f"{node.name}_X"))
        new = [q for tensor, tag in tensors if tensor not in outputs
               for q in _quantize_tensor(model, tensor, tag, ranges, readers)]
        producer.update({out: n for n in new for out in n.output})
        pairs += new
        quantized.append(node.name)
    model.graph.node.extend(pairs)  # the caller sorts the graph
    return quantized


def _quantize_tensor(model: onnx.ModelProto, tensor: str, tag: str, ranges,
                     readers: dict[str, list[onnx.NodeProto]]) -> list[onnx.NodeProto]:
    """Make every float reader of ``tensor`` read it through one symmetric INT8 Q/DQ pair: the pair the
    quantizer put there already, or a new one from the calibrated range (returned, to add to the graph)."""
    from onnxruntime.quantization.quant_utils import QuantType, compute_scale_zp, get_qmin_qmax_for_qType

    new: list[onnx.NodeProto] = []
    dequantized = _dequantized(tensor, readers)
    if dequantized is None:
        if tensor not in ranges:
            raise PrecisionError(f"no calibrated range for {tensor} ({tag})")
        low, high = (np.asarray(v, np.float32) for v in ranges[tensor].range_value)
        qmin, qmax = get_qmin_qmax_for_qType(QuantType.QInt8.tensor_type, symmetric=True)
        zero, scale = compute_scale_zp(low.min(), high.max(), qmin, qmax, symmetric=True)
        model.graph.initializer.extend([onnx.numpy_helper.from_array(np.asarray(scale, np.float32), f"{tag}_scale"),
                                        onnx.numpy_helper.from_array(np.asarray(zero, np.int8), f"{tag}_zero_point")])
        dequantized = f"{tag}_dq"
        new = [onnx.helper.make_node("QuantizeLinear", [tensor, f"{tag}_scale", f"{tag}_zero_point"], [f"{tag}_q"],
                                     name=f"{tag}_QuantizeLinear"),
               onnx.helper.make_node("DequantizeLinear", [f"{tag}_q", f"{tag}_scale", f"{tag}_zero_point"],
                                     [dequantized], name=f"{tag}_DequantizeLinear")]
        readers.setdefault(tensor, []).append(new[0])  # a second TAMAggregate reading it finds this pair
        readers[f"{tag}_q"] = [new[1]]
    for reader in readers.get(tensor, []):
        if reader.op_type != "QuantizeLinear":
            reader.input[:] = [dequantized if name == tensor else name for name in reader.input]
    return new


def _dequantized(tensor: str, readers: dict[str, list[onnx.NodeProto]]) -> str | None:
    """The output of a DequantizeLinear of a QuantizeLinear of ``tensor`` in the graph, if there is one."""
    for q in readers.get(tensor, []):
        if q.op_type == "QuantizeLinear":
            for dq in readers.get(q.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    return dq.output[0]
    return None


def _restore_metadata(quantized: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """The quantizer rewrites producer fields; keep the source's metadata_props and producer."""
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(source.metadata_props)
    quantized.producer_name, quantized.producer_version = source.producer_name, source.producer_version


def check_tensorrt_qdq(model: onnx.ModelProto) -> None:
    """What TensorRT's parser needs from a Q/DQ graph: INT8 with zero point 0 everywhere, no quantized
    bias (INT32 DequantizeLinear), TAMAggregate fed by float tensors, no Q/DQ inside functions."""
    initializers = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or node.input[2] not in initializers:
            raise PrecisionError(f"{node.name}: Q/DQ without an INT8 zero point initializer")
        zp = onnx.numpy_helper.to_array(initializers[node.input[2]])
        if zp.dtype != np.int8 or np.any(zp != 0):
            raise PrecisionError(f"{node.name}: zero point {zp.dtype} {zp.ravel()[:4]}; TensorRT takes INT8 with "
                                 "zero point 0 only")
    for function in model.functions:
        if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in function.node):
            raise PrecisionError(f"the {function.name} function was quantized; it must stay float")


def check_int8_graph(model: onnx.ModelProto) -> None:
    check_tensorrt_qdq(model)
    check_precision_graph(model, "INT8")


# --- sensitivity ---------------------------------------------------------------------------------


def _run(model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    session = create_session(model)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[i:i + 16]})[0] for i in range(0, len(inputs), 16)])


def _single_layer(fp32: onnx.ModelProto, full: onnx.ModelProto, node_name: str) -> onnx.ModelProto:
    """``fp32`` with only ``node_name`` quantized: its Q/DQ nodes and initializers copied from ``full``
    (a graph quantized everywhere with the same ranges), much cheaper than quantizing again."""
    producer = {o: n for n in full.graph.node for o in n.output}
    initializers = {i.name: i for i in full.graph.initializer}
    target = next(n for n in full.graph.node if n.name == node_name)
    variant = copy_model(fp32)
    have = {i.name for i in variant.graph.initializer}
    added: list[onnx.NodeProto] = []
    new_inputs = list(target.input)
    for i, name in enumerate(target.input):
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        chain = [dq]
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            chain.insert(0, q)
        for n in chain:
            for inp in n.input:
                if inp in initializers and inp not in have:
                    variant.graph.initializer.append(initializers[inp])
                    have.add(inp)
        added.extend(chain)
        new_inputs[i] = name
    node = next(n for n in variant.graph.node if n.name == node_name)
    del node.input[:]
    node.input.extend(new_inputs)
    variant.graph.node.extend(added)
    topological_sort(variant.graph)
    return variant


def layer_sensitivity(model: onnx.ModelProto, ranges, inputs: np.ndarray, exclude: Sequence[str] = (),
                      progress: bool = True) -> list[LayerError]:
    """For each quantizable node, the logits' error vs FP32 on ``inputs`` with only that node quantized,
    worst first."""
    reference = _run(model, inputs)
    full = quantize_qdq(model, ranges, exclude=exclude)
    quantized = {n.name for n in full.graph.node}
    nodes = [n for n in quantizable_nodes(model) if n.name in quantized and n.name not in set(exclude)]
    errors = []
    with progress_bar(progress) as bar:
        task = bar.add_task("sensitivity (one layer at a time)", total=len(nodes))
        for node in nodes:
            out = _run(_single_layer(model, full, node.name), inputs)
            errors.append(LayerError(node.name, node.op_type, _rel_l2(out, reference), _top1(out, reference)))
            bar.advance(task)
    return sorted(errors, key=lambda e: e.rel_l2_error, reverse=True)


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _top1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, 1) == np.argmax(b, 1)))


def pick_fallback(errors: Sequence[LayerError], agreement_of: Callable[[list[str]], float],
                  target: float = FALLBACK_TARGET, max_fraction: float = 0.25) -> list[str]:
    """The layers to leave in float: the shortest head of ``errors`` (worst first) with which the INT8
    graph keeps ``target`` top-1 agreement with FP32 (``agreement_of(excluded)`` measures it), found
    by bisection and capped at ``max_fraction`` of the layers (then that cap, best effort)."""
    ranked = [e.node for e in errors]
    seen: dict[int, float] = {}

    def ok(k: int) -> bool:
        if k not in seen:
            seen[k] = agreement_of(ranked[:k])
        return seen[k] >= target

    if not ranked or ok(0):
        return []
    low, high = 0, max(1, math.ceil(len(ranked) * max_fraction))
    if not ok(high):
        return ranked[:high]
    while high - low > 1:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid
    return ranked[:high]


# --- the pass --------------------------------------------------------------------------------------


def build_int8(model: onnx.ModelProto, data: np.ndarray, *, method: str = "minmax",
               exclude: Sequence[str] | None = None, sensitivity: bool = False, progress: bool = True,
               on_sensitivity: Callable[[list[LayerError], list[str]], None] | None = None,
               tam_tensors: bool = False) -> Int8Result:
    """Calibrate on ``data`` and quantize. ``exclude``: node names kept in float (None: ``default_exclusions``).
    ``sensitivity``: measure each layer alone on the calibration clips and add ``pick_fallback``'s choice
    to the exclusions (``on_sensitivity`` sees the errors and that choice). ``tam_tensors``: the graph is
    for OpenVINO, whose TAMAggregate X and output are quantized too (``quantize_tam_tensors``)."""
    started = time.perf_counter()
    ranges = calibrate(model, data, method, progress, tam_tensors=tam_tensors)
    seconds = time.perf_counter() - started
    excluded = list(default_exclusions(model) if exclude is None else exclude)
    known = {n.name for n in quantizable_nodes(model)}
    unknown = [name for name in excluded if name not in known]
    if unknown:
        raise PrecisionError(f"cannot exclude {', '.join(unknown[:3])}: not a Conv/Gemm/MatMul with weights in "
                             "this graph (see --sensitivity for the layer names)")
    errors: list[LayerError] = []
    if sensitivity:
        probe = data[: min(len(data), SENSITIVITY_SAMPLES)]
        errors = layer_sensitivity(model, ranges, probe, excluded, progress)
        reference = _run(model, probe)

        def agreement_of(fallback: list[str]) -> float:
            candidate = quantize_qdq(model, ranges, exclude=[*excluded, *fallback], tam_tensors=tam_tensors)
            return _top1(_run(candidate, probe), reference)

        target = min(FALLBACK_TARGET, 1.0 - 1.0 / len(probe))
        with status("choosing the layers to keep in float", enabled=progress):
            fallback = pick_fallback(errors, agreement_of, target)
        if on_sensitivity is not None:
            on_sensitivity(errors, fallback)
        excluded += [name for name in fallback if name not in excluded]
    quantized = quantize_qdq(model, ranges, exclude=excluded, tam_tensors=tam_tensors)
    check_int8_graph(quantized)
    q_nodes = [n.name for n in quantizable_nodes(model) if n.name not in set(excluded)]
    return Int8Result(model=quantized, method=method, quantized_nodes=q_nodes, excluded_nodes=excluded,
                      calibration_samples=len(data), calibration_seconds=seconds, sensitivity=errors)
