"""The JSON sidecar that travels beside a built artifact (``model.plan.json`` beside a TensorRT plan,
``model.xml.json`` beside an OpenVINO IR): where it lives, and reading it with one-line errors. What each
sidecar holds and checks is its backend's business (``trt``, ``openvino_ir``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from tamdeploy.errors import TamdeployError


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def read_sidecar_file(artifact: str | Path, fmt: str, what: str, error: type[TamdeployError],
                      fields: Mapping[str, type | tuple[type, ...]] | None = None) -> dict | None:
    """The sidecar of ``artifact`` whose ``format`` is ``fmt``, or None when there is none (an artifact
    tamdeploy did not build); a damaged or foreign file, or one whose ``fields`` (name -> JSON type, null
    always allowed) have another type, raises ``error`` saying to rebuild the ``what``."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise error(f"{path} is damaged ({e}); rebuild the {what} with 'tamdeploy build'") from e
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path} is not a tamdeploy {what} sidecar; rebuild the {what} with 'tamdeploy build'")
    for name, kind in (fields or {}).items():
        if data.get(name) is not None and not isinstance(data[name], kind):
            raise error(f"{path} is damaged (its {name!r} is {type(data[name]).__name__}, not "
                        f"{_json_name(kind)}); rebuild the {what} with 'tamdeploy build'")
    return data


def _json_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", str: "a string", list: "a list", int: "a number", float: "a number", bool: "true/false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))
