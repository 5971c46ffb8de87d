"""A client of a served model (KServe v2 over http or grpc, with ``tritonclient``): clips as binary
tensors, or encoded videos to the ``NAME_video`` ensemble. No torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tamdeploy.errors import BackendUnavailableError, DataError, TamdeployError

INSTALL_HINT = 'talking to a Triton server needs tritonclient: pip install "tamdeploy[serve]"'


@dataclass(frozen=True)
class ServerAddress:
    protocol: str  # "http" | "grpc"
    hostport: str

    @classmethod
    def parse(cls, url: str) -> ServerAddress:
        """``http://host:8000``, ``grpc://host:8001`` or ``host:port`` (http)."""
        protocol, sep, rest = url.partition("://")
        if not sep:
            protocol, rest = "http", url
        rest = rest.rstrip("/")
        host, _, port = rest.rpartition(":")
        if protocol not in ("http", "grpc") or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise DataError(f"server {url!r}: give http://HOST:PORT or grpc://HOST:PORT, PORT 1-65535")
        return cls(protocol, rest)


class ServerClient:
    """One connection; ``infer`` sends named numpy arrays and returns the named outputs."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.address = ServerAddress.parse(url)
        try:
            if self.address.protocol == "http":
                import tritonclient.http as module
            else:
                import tritonclient.grpc as module
        except ImportError as e:
            raise BackendUnavailableError(INSTALL_HINT) from e
        self.module = module
        self.timeout = timeout
        kwargs = {"network_timeout": timeout, "connection_timeout": timeout} if self.address.protocol == "http" else {}
        self.client = module.InferenceServerClient(self.address.hostport, **kwargs)
        self._metadata: dict[str, dict[str, Any]] = {}  # a model's I/O does not change while it is served

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_ready(self) -> None:
        try:
            ready = self.client.is_server_ready()
        except Exception as e:  # noqa: BLE001  (tritonclient raises its own and socket errors)
            raise TamdeployError(f"no Triton server answers at {self.address.protocol}://{self.address.hostport}: "
                                 f"{_first_line(e)}") from None
        if not ready:
            raise TamdeployError(f"the Triton server at {self.address.hostport} is not ready")

    def models(self) -> list[str]:
        index = self.client.get_model_repository_index()
        entries = index if isinstance(index, list) else [{"name": m.name} for m in index.models]
        return [entry["name"] for entry in entries]

    def metadata(self, model: str) -> dict[str, Any]:
        """Inputs and outputs with their shapes (-1 for the batch axis) and datatypes (asked once per model)."""
        if model not in self._metadata:
            self._metadata[model] = self._fetch_metadata(model)
        return self._metadata[model]

    def _fetch_metadata(self, model: str) -> dict[str, Any]:
        meta = self.client.get_model_metadata(model)
        if isinstance(meta, dict):
            return meta
        return {"inputs": [{"name": t.name, "shape": list(t.shape), "datatype": t.datatype} for t in meta.inputs],
                "outputs": [{"name": t.name, "shape": list(t.shape), "datatype": t.datatype} for t in meta.outputs]}

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """One request; a server-side error (bad shape, undecodable video) is a TamdeployError with its text."""
        tensors = []
        for name, array in inputs.items():
            datatype = "BYTES" if array.dtype == object else self.module.np_to_triton_dtype(array.dtype)
            tensor = self.module.InferInput(name, list(array.shape), datatype)
            if self.address.protocol == "http":
                tensor.set_data_from_numpy(array, binary_data=True)
            else:
                tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        wanted = [self.module.InferRequestedOutput(name, **({"binary_data": True}
                                                          if self.address.protocol == "http" else {}))
                  for name in outputs]
        try:
            result = self.client.infer(model, tensors, outputs=wanted)
        except Exception as e:  # noqa: BLE001
            raise TamdeployError(f"{model}: {_first_line(e)}") from None
        return {name: result.as_numpy(name) for name in outputs}

    def classify_video(self, model: str, path: str | Path) -> dict[str, np.ndarray]:
        """An encoded video file to ``model`` (a ``NAME_video`` ensemble): labels, scores, logits."""
        data = Path(path).read_bytes()
        meta = self.metadata(model)
        outputs = [o["name"] for o in meta["outputs"]]
        return self.infer(model, {meta["inputs"][0]["name"]: np.array([[data]], dtype=object)}, outputs)


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
