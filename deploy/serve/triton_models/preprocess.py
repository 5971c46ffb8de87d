"""Encoded video bytes -> the model's input, decoded and sampled by tamdeploy's own ``read_views`` (the
code ``tamdeploy predict`` runs), one request at a time: a video that cannot be decoded is an error for
that request only."""

import json
import tempfile

import numpy as np
import triton_python_backend_utils as pb_utils

from tamdeploy.deploy.inputs.clips import ClipSpec, read_views
from tamdeploy.deploy.inputs.video import UndecodableError
from tamdeploy.errors import TamdeployError
from tamdeploy.models.config import ModelConfig


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"])["parameters"]
        self.spec = ClipSpec.from_config(ModelConfig.from_dict(json.loads(parameters["model_config"]["string_value"])))
        self.output = parameters["output_name"]["string_value"]

    def _decode(self, data: bytes) -> np.ndarray:
        # PyAV reads files; a named temporary file keeps the container's own seeking (faster than a stream)
        with tempfile.NamedTemporaryFile(suffix=".video") as f:
            f.write(data)
            f.flush()
            return read_views(f.name, self.spec)

    def execute(self, requests):
        responses = []
        for request in requests:
            videos = pb_utils.get_input_tensor_by_name(request, "video_bytes").as_numpy().reshape(-1)
            try:
                clips = np.concatenate([self._decode(bytes(v)) for v in videos])
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, clips)]))
            except (UndecodableError, TamdeployError, OSError) as e:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"cannot decode the video: {e}")))
        return responses

