"""Deployable artifacts from an FP32 ONNX model; precision lives in the graph.

``build(model.onnx, BuildOptions(...))`` (``pipeline``) writes an FP16 graph (``fp16``), an INT8 Q/DQ
graph calibrated on real clips (``int8`` with ``calibration``), or a TensorRT engine from either
(``engine``). ``graph`` holds the helpers they share: reading a model, the precision a graph computes
in, ordering and checking a rewritten graph, finding the gate branches that stay in float.
"""

from tamdeploy.deploy.build.pipeline import BuildOptions, BuildReport, EngineOptions, build

__all__ = ["BuildOptions", "BuildReport", "EngineOptions", "build"]
