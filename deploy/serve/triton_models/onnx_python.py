"""An ONNX model run by ONNX Runtime inside Triton's Python backend: how ``tamdeploy serve`` serves an
``onnxruntime``-backend model with the ``tritonserver`` that the nvidia-pytriton wheel bundles, which has
the Python backend and no ONNX Runtime backend. The dynamic batcher's requests run as one batch."""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime

        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_threads", {}).get("string_value", "0") or 0)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        onnx_file = parameters.get("onnx_file", {}).get("string_value") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], onnx_file)
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = config["input"][0]["name"]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # one request: no copy
        results = self.session.run(self.outputs, {self.input: batch})
        responses, offset = [], 0
        for array in arrays:
            n = len(array)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.ascontiguousarray(result[offset:offset + n]))
                for name, result in zip(self.outputs, results, strict=True)]))
            offset += n
        return responses
