"""``verify --bisect``: the first intermediate tensor at which an ONNX model stops computing what its
PyTorch original computes, named by module path (``layer2.1.conv2``) and ONNX node.

How ONNX values are tied to PyTorch modules. In the graphs ``tamdeploy export`` writes (dynamo exporter,
torch 2.14, then onnxslim) node names are generic (``node_Conv_1488``) and onnxslim drops every node's
``metadata_props`` (the exporter's ``pkg.torch.onnx.name_scopes`` / ``namespace`` / ``class_hierarchy``
do not survive). What survives is the *initializer names*: each parameter keeps its state_dict key
(``layer1.0.conv2.weight``), and the exporter's BatchNorm folding writes the folded weight back under the
Conv's (or Linear's) name, adding ``<name>_bias``. So:

- a Conv / ConvTranspose / Gemm / MatMul / BatchNormalization node whose weight (input 1, followed back
  through DequantizeLinear / Cast / Identity, so FP16 and Q/DQ INT8 graphs map too) is an initializer
  named ``P.weight...`` implements module ``P``; its output is compared with ``P``'s output;
- when ``P``'s output feeds a BatchNorm module ``B`` in PyTorch (seen by tensor identity in forward hooks),
  no ONNX node implements ``B``, no initializer carries ``B``'s parameters and the node's weight is not
  ``P``'s original weight, ``B`` was folded into ``P``: the ONNX value is compared with ``B``'s output and
  the probe is reported as ``P`` (where the folded weight lives) "+ B folded";
- a ``tamdeploy::TAMAggregate`` node whose kernel is computed by a TAM module's ``G`` branch is that TAM
  module's output (the custom node is the whole adaptive aggregation).

An initializer shared by several nodes, a module run more than once, a node whose exporter name scope
(when a graph still has one) names another module, or a shape that differs from the module output's is
left out, with the reason, rather than guessed. Everything else (ReLU, Add, reshapes, the inlined TAM body
of ``--tam-op onnx``, ACTION's shift, which has no module output of the same layout in the original) has
no module output to compare; modules with weights that end up without a probe are listed as unmapped.

The reference is the original model, without the export rewrites: the rewrites change only the ops
*between* hooked modules (how TAM pools and aggregates, ACTION's permutes), so every module that runs in
both computes the same tensor with the same shape; the one that does not run under the rewrites
(ACTION's ``action_shift`` Conv1d) has no ONNX counterpart anyway.

The chosen ONNX values become extra graph outputs of an in-memory copy of the model, which runs once in
ONNX Runtime; PyTorch runs once with forward hooks. Probes are compared in graph (topological) order; the
first whose relative L2 error exceeds the precision's limit is the divergence, and the last probe before it
that agrees bounds it from above.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from tamdeploy.exporters.rewrites import is_tam
from tamdeploy.onnx_model import copy_model

_WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization")
_PASS_THROUGH = ("DequantizeLinear", "QuantizeLinear", "Cast", "CastLike", "Identity")
_WEIGHT_NAME = re.compile(r"^(?P<module>.+)\.weight(?:[._].*)?$")
_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)
_PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
              nn.Linear)
_SCOPE_KEY = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class Probe:
    """An ONNX value and the PyTorch module output it should equal."""

    onnx_value: str
    onnx_node: str
    op_type: str
    module: str  # the module the node implements (where its weight lives), e.g. "layer2.1.conv2"
    reference: str  # the module whose output it is compared with: ``module``, or the BatchNorm folded in
    order: int  # the node's index in the (topologically sorted) graph

    @property
    def label(self) -> str:
        return self.module if self.reference == self.module else f"{self.module} (+ {self.reference} folded)"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    shape: tuple[int, ...]
    rel_l2_error: float
    max_abs_error: float
    mean_abs_error: float
    cosine_similarity: float
    diverged: bool

    def to_dict(self) -> dict:
        d = asdict(self.probe)
        d.pop("order")
        d.update(shape=list(self.shape), rel_l2_error=self.rel_l2_error, max_abs_error=self.max_abs_error,
                 mean_abs_error=self.mean_abs_error, cosine_similarity=self.cosine_similarity,
                 diverged=self.diverged)
        return d


@dataclass(frozen=True)
class Unmapped:
    """A module (or ONNX node) that could not be compared, and why."""

    name: str
    reason: str


@dataclass
class BisectReport:
    """``first_divergent`` is None when every probe agrees within ``rel_l2_limit``."""

    precision: str
    rel_l2_limit: float
    inputs: list[str]  # the samples bisected (sources, as in the verify report)
    results: list[ProbeResult] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    first_divergent: ProbeResult | None = None
    last_agreeing: ProbeResult | None = None

    @property
    def summary(self) -> str:
        if not self.results:
            return "no ONNX value could be mapped to a PyTorch module: nothing to compare"
        if self.first_divergent is None:
            return (f"no divergence: all {len(self.results)} compared tensors agree within relative L2 "
                    f"{self.rel_l2_limit:g}")
        first = self.first_divergent
        where = f"first divergence at {first.probe.label}: ONNX node {first.probe.onnx_node} " \
                f"({first.probe.op_type}, value {first.probe.onnx_value}), relative L2 {first.rel_l2_error:.3g}"
        if self.last_agreeing is not None:
            where += f"; last agreeing: {self.last_agreeing.probe.label}"
        return where

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "rel_l2_limit": self.rel_l2_limit,
            "inputs": list(self.inputs),
            "summary": self.summary,
            "diverged": self.first_divergent is not None,
            "first_divergent": self.first_divergent.to_dict() if self.first_divergent else None,
            "last_agreeing": self.last_agreeing.to_dict() if self.last_agreeing else None,
            "compared": [r.to_dict() for r in self.results],
            "unmapped": [asdict(u) for u in self.unmapped],
        }


# --- ONNX side: which node implements which module ---------------------------------------------------


@dataclass(frozen=True)
class _NodeMatch:
    node: onnx.NodeProto
    order: int
    module: str


def _weight_module(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], initializers: set[str],
                   modules: dict[str, nn.Module]) -> str | None:
    """The module whose ``.weight`` initializer is this node's input 1 (through Q/DQ and casts)."""
    if len(node.input) < 2:
        return None
    name = node.input[1]
    for _ in range(4):
        if name in initializers:
            m = _WEIGHT_NAME.match(name)
            return m.group("module") if m and m.group("module") in modules else None
        producer = producers.get(name)
        if producer is None or producer.op_type not in _PASS_THROUGH or not producer.input:
            return None
        name = producer.input[0]
    return None


def _tam_of(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], initializers: set[str],
            modules: dict[str, nn.Module]) -> str | None:
    """The TAM module whose G branch computes this TAMAggregate node's kernel (input 1), if any:
    a breadth-first walk up from the kernel to the nearest weight-carrying node."""
    if len(node.input) < 2:
        return None
    frontier, seen = [node.input[1]], set()
    while frontier:
        value = frontier.pop(0)
        producer = producers.get(value)
        if producer is None or value in seen:
            continue
        seen.add(value)
        if producer.op_type in _WEIGHT_OPS:
            path = _weight_module(producer, producers, initializers, modules)
            owner = _owner_tam(path, modules) if path else None
            return owner if owner and path.startswith(owner + ".G.") else None
        frontier.extend(i for i in producer.input if i and i not in initializers)
    return None


def _owner_tam(path: str, modules: dict[str, nn.Module]) -> str | None:
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in modules and is_tam(modules[prefix]):
            return prefix
    return None


def _name_scope(node: onnx.NodeProto, modules: dict[str, nn.Module]) -> str | None:
    """The deepest module in the exporter's name scopes, where a graph still carries them."""
    for prop in node.metadata_props:
        if prop.key == _SCOPE_KEY:
            scopes = re.findall(r"'([^']*)'", prop.value)
            inside = [s for s in scopes if s and s in modules]
            return inside[-1] if inside else None
    return None


def match_nodes(model: onnx.ModelProto, modules: dict[str, nn.Module]) -> tuple[list[_NodeMatch], list[Unmapped]]:
    """ONNX nodes that implement a module (weight nodes by initializer name, TAMAggregate by its G branch),
    in graph order; ambiguous ones are returned as unmapped with the reason."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output if out}
    uses: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in _WEIGHT_OPS and len(node.input) > 1:
            uses[node.input[1]] = uses.get(node.input[1], 0) + 1
    matches, unmapped, shared = [], [], set()
    for order, node in enumerate(graph.node):
        if node.op_type in _WEIGHT_OPS:
            path = _weight_module(node, producers, initializers, modules)
            if path is None:
                continue
            if uses[node.input[1]] > 1:
                if path not in shared:
                    shared.add(path)
                    unmapped.append(Unmapped(path, f"its weight {node.input[1]} feeds {uses[node.input[1]]} ONNX "
                                                   f"nodes (deduplicated?): cannot tell which is {path}"))
                continue
        elif node.op_type == "TAMAggregate" and node.domain == "tamdeploy":
            path = _tam_of(node, producers, initializers, modules)
            if path is None:
                continue
        else:
            continue
        matches.append(_NodeMatch(node, order, path))
    counts: dict[str, int] = {}
    for m in matches:
        counts[m.module] = counts.get(m.module, 0) + 1
    for module in sorted(p for p, n in counts.items() if n > 1):
        unmapped.append(Unmapped(module, f"{counts[module]} ONNX nodes carry its weight: cannot tell which is "
                                         f"its output"))
    return [m for m in matches if counts[m.module] == 1], unmapped


# --- PyTorch side: module outputs, and which BatchNorm follows which conv ---------------------------


@dataclass
class _Trace:
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    follows: dict[str, str] = field(default_factory=dict)  # producer module -> BatchNorm fed by its output


def trace_modules(model: nn.Module, x: torch.Tensor, wanted: set[str]) -> _Trace:
    """Run ``model`` once with forward hooks: the outputs of the ``wanted`` modules (copied at once, so
    later in-place ReLUs do not change them), call counts, and which BatchNorm consumes which
    conv / linear output (by tensor identity)."""
    trace = _Trace()
    made: dict[int, tuple[weakref.ref, str]] = {}
    handles = []

    def hook(path: str, module: nn.Module):
        def record(_module: nn.Module, inputs: tuple, output: object) -> None:
            trace.calls[path] = trace.calls.get(path, 0) + 1
            if isinstance(module, _BATCH_NORMS) and inputs and isinstance(inputs[0], torch.Tensor):
                entry = made.get(id(inputs[0]))
                if entry is not None and entry[0]() is inputs[0]:
                    trace.follows[entry[1]] = path
            if not isinstance(output, torch.Tensor):
                return
            if isinstance(module, _PRODUCERS):
                made[id(output)] = (weakref.ref(output), path)
            if path in wanted:
                trace.outputs[path] = output.detach().float().cpu().numpy().copy()
        return record

    for path, module in model.named_modules():
        if path and (path in wanted or isinstance(module, (*_PRODUCERS, *_BATCH_NORMS))):
            handles.append(module.register_forward_hook(hook(path, module)))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return trace


# --- both: probes, the instrumented ONNX run, the comparison ---------------------------------------


def _folded(m: _NodeMatch, follower: str, implemented: set[str], initializers: dict[str, onnx.TensorProto],
            modules: dict[str, nn.Module]) -> bool:
    """Whether BatchNorm ``follower`` (fed by ``m.module``'s output in PyTorch) was folded into ``m``'s node:
    no node implements it, none of its parameters is left in the graph, and the node's weight is not
    ``m.module``'s own weight bit for bit (a Q/DQ weight cannot be compared, and does not count against)."""
    if m.node.op_type == "BatchNormalization" or follower in implemented:
        return False
    if any(name.startswith(follower + ".") for name in initializers):
        return False
    weight = initializers.get(m.node.input[1])
    own = getattr(modules[m.module], "weight", None)
    if weight is not None and isinstance(own, torch.Tensor) and weight.data_type == onnx.TensorProto.FLOAT:
        array = numpy_helper.to_array(weight)
        original = own.detach().cpu().numpy()
        if array.shape == original.shape and np.array_equal(array, original):
            return False
    return True


def _probes(matches: list[_NodeMatch], trace: _Trace, modules: dict[str, nn.Module],
            initializers: dict[str, onnx.TensorProto]) -> tuple[list[Probe], list[Unmapped]]:
    implemented = {m.module for m in matches}
    probes, unmapped = [], []
    for m in matches:
        reference = m.module
        follower = trace.follows.get(m.module)
        if follower is not None and _folded(m, follower, implemented, initializers, modules):
            reference = follower
        scope = _name_scope(m.node, modules)
        if scope is not None and scope not in (m.module, reference) and not scope.startswith(m.module + "."):
            unmapped.append(Unmapped(m.module, f"ONNX node {m.node.name} carries name scope {scope}, not "
                                               f"{reference}: mapping is ambiguous"))
            continue
        calls = trace.calls.get(reference, 0)
        if calls != 1:
            why = "did not run" if calls == 0 else f"ran {calls} times"
            unmapped.append(Unmapped(m.module, f"{reference} {why} in the PyTorch forward: no single output"))
            continue
        probes.append(Probe(m.node.output[0], m.node.name or f"#{m.order}", m.node.op_type, m.module,
                            reference, m.order))
    return probes, unmapped


def _unmapped_modules(modules: dict[str, nn.Module], probes: list[Probe], skipped: list[Unmapped],
                      trace: _Trace) -> list[Unmapped]:
    """Modules with their own weights, and TAM modules, that no probe covers and that were not already
    explained."""
    covered = {p.module for p in probes} | {p.reference for p in probes} | {u.name for u in skipped}
    out = []
    for path, module in modules.items():
        if not path or path in covered:
            continue
        if is_tam(module):
            out.append(Unmapped(path, "no TAMAggregate node computes it (with --tam-op onnx its aggregation is "
                                      "inlined into standard ops): its output is not compared"))
            continue
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if trace.calls.get(path, 0) == 0:
            reason = "not called as a module by the original forward"
        elif isinstance(module, _BATCH_NORMS):
            reason = "no ONNX node carries its weight and it does not follow a mapped conv / linear"
        else:
            reason = ("no ONNX node uses its weight as a conv / linear weight: the export rewrites it into other "
                      "ops (ACTION's shift becomes a TAMAggregate kernel)")
        out.append(Unmapped(path, reason))
    return out


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    graph = model.graph
    types = {v.name: v.type for v in (*graph.value_info, *graph.input, *graph.output)}
    return types


def instrument(model: onnx.ModelProto, values: Sequence[str]) -> tuple[bytes, list[str]]:
    """A copy of ``model`` (serialized) that also outputs ``values``; the values whose type could not be
    found (even after shape inference) are returned as left out."""
    copy = copy_model(model)
    types = _value_types(copy)
    if any(v not in types for v in values):
        with contextlib.suppress(onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
            types.update(_value_types(onnx.shape_inference.infer_shapes(copy)))
    present = {o.name for o in copy.graph.output}
    left_out = []
    for value in values:
        if value in present:
            continue
        if value not in types or not types[value].tensor_type.elem_type:
            left_out.append(value)
            continue
        elem = types[value].tensor_type.elem_type
        copy.graph.output.append(onnx.helper.make_tensor_value_info(value, elem, None))
    return copy.SerializeToString(), left_out


def _metrics(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float, float, float]:
    a = candidate.astype(np.float64).ravel()
    b = reference.astype(np.float64).ravel()
    diff = a - b
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    rel = float(np.linalg.norm(diff) / norm_b) if norm_b else float(np.linalg.norm(diff))
    cosine = float(a @ b / (norm_a * norm_b)) if norm_a and norm_b else float(norm_a == norm_b)
    abs_diff = np.abs(diff)
    return rel, float(abs_diff.max()) if a.size else 0.0, float(abs_diff.mean()) if a.size else 0.0, cosine


def bisect(onnx_model: onnx.ModelProto, torch_model: nn.Module, feed: dict[str, np.ndarray], *, precision: str,
           rel_l2_limit: float, providers: Sequence[str] | None = None, threads: int | None = None,
           sources: Sequence[str] = ()) -> BisectReport:
    """Compare every mappable intermediate tensor of ``onnx_model`` (run on ONNX Runtime with
    ``providers``) with ``torch_model``'s (eval, CPU) on one ``feed`` ({the input's name: array of a few
    samples}: the models take one input);
    ``threads``: intra-op threads of both (None: their defaults)."""
    from tamdeploy.deploy.runners import OnnxRuntimeRunner

    torch_model.eval()
    modules = dict(torch_model.named_modules())
    matches, skipped = match_nodes(onnx_model, modules)
    wanted = {m.module for m in matches}
    # a conv / linear may have a BatchNorm folded in: keep every BatchNorm's output too, choose after the run
    wanted |= {p for p, mod in modules.items() if isinstance(mod, _BATCH_NORMS)}
    (x,) = feed.values()
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        trace = trace_modules(torch_model, torch.from_numpy(np.asarray(x, dtype=np.float32)), wanted)
    finally:
        torch.set_num_threads(saved_threads)
    initializers = {i.name: i for i in onnx_model.graph.initializer}
    probes, more_skipped = _probes(matches, trace, modules, initializers)
    skipped += more_skipped
    report = BisectReport(precision, rel_l2_limit, list(sources))
    data, left_out = instrument(onnx_model, [p.onnx_value for p in probes])
    for value in left_out:
        probe = next(p for p in probes if p.onnx_value == value)
        skipped.append(Unmapped(probe.module, f"the type of ONNX value {value} is unknown: cannot expose it"))
    probes = [p for p in probes if p.onnx_value not in left_out]
    with OnnxRuntimeRunner(data, providers=providers, threads=threads) as runner:
        got = runner.infer(feed)
    for probe in sorted(probes, key=lambda p: p.order):
        value, ref = got[probe.onnx_value], trace.outputs[probe.reference]
        if value.shape != ref.shape:
            skipped.append(Unmapped(probe.module, f"ONNX value {probe.onnx_value} is {list(value.shape)} but "
                                                  f"{probe.reference} outputs {list(ref.shape)}"))
            continue
        rel, max_abs, mean_abs, cosine = _metrics(value, ref)
        diverged = not np.isfinite(rel) or rel > rel_l2_limit
        result = ProbeResult(probe, tuple(value.shape), rel, max_abs, mean_abs, cosine, diverged)
        report.results.append(result)
        if report.first_divergent is None:
            if diverged:
                report.first_divergent = result
            else:
                report.last_agreeing = result
    if report.first_divergent is None:
        report.last_agreeing = None  # "last agreeing" bounds a divergence; without one it says nothing
    report.unmapped = skipped + _unmapped_modules(modules, probes, skipped, trace)
    return report
