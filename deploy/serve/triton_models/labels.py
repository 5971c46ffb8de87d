"""Logits -> the top-k class names (``labels.txt`` beside this file) and their softmax scores."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.k = int(parameters["top_k"]["string_value"])
        self.input = parameters["input_name"]["string_value"]
        folder = Path(args["model_repository"]) / args["model_version"]
        self.names = np.array((folder / "labels.txt").read_text().splitlines(), dtype=object)

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy().astype(np.float64)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = shifted / shifted.sum(axis=1, keepdims=True)
            top = np.argsort(-logits, axis=1, kind="stable")[:, : self.k]
            labels = np.array([[self.names[i].encode() for i in row] for row in top], dtype=object)
            best = np.take_along_axis(scores, top, axis=1).astype(np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("labels", labels), pb_utils.Tensor("scores", best)]))
        return responses
