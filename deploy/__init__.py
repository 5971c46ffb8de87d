"""Everything after export: run, check, measure and convert deployed models.

The wings, from the ground up (each imports only those above it in this list):

- ``runners``  one interface over PyTorch, ONNX Runtime and TensorRT (``open_runner(path)`` picks by
               file type); ``trt`` holds the TensorRT plumbing the runner and the engine builder share.
- ``inputs``   model inputs: clips from videos, frame folders, images and ``.npy`` (``ClipSpec``,
               ``iter_clips``), the video decoding underneath, synthetic videos for demos and tests.
- ``build``    FP16 / INT8 graphs (precision lives in the ONNX graph) and TensorRT engines:
               ``build(model.onnx, BuildOptions(...))``; ``graph`` holds the shared graph helpers.
- ``check``    ``verify`` (artifact vs the PyTorch original, judged by ``tamdeploy.compare``'s table)
               and ``bisect`` (the first layer that diverges).
- ``bench``    latency and throughput of several runners measured interleaved (``run_benchmark``),
               the report and its plot.
- ``predict``  labels for videos and accuracy on a labelled set (``Predictor``, ``evaluate``): decode
               workers ahead of the model, multi-view testing, annotation formats, Ray Data (``--ray``).
- ``demo``     the README's built-in example, end to end.

Data flows model.onnx -> build -> artifact -> runners -> check / bench / predict.
"""
