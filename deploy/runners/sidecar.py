"""The JSON sidecar that travels beside a built artifact (``model.plan.json`` beside a TensorRT plan,
``model.xml.json`` beside an OpenVINO IR): where it lives, and reading it with one-line errors. What each
sidecar holds and checks is its backend's business (``trt``, ``openvino_ir``)."""

from __future__ import annotations

import json
from pathlib import Path

from tamdeploy.errors import TamdeployError


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def read_sidecar_file(artifact: str | Path, fmt: str, what: str, error: type[TamdeployError]) -> dict | None:
    """The sidecar of ``artifact`` whose ``format`` is ``fmt``, or None when there is none (an artifact
    tamdeploy did not build); a damaged or foreign file raises ``error`` saying to rebuild the ``what``."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise error(f"{path} is damaged ({e}); rebuild the {what} with 'tamdeploy build'") from e
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path} is not a tamdeploy {what} sidecar; rebuild the {what} with 'tamdeploy build'")
    return data
