"""The facts an exported model carries in ONNX ``metadata_props`` (DESIGN.md, Artifacts)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import onnx

from tamdeploy import __version__
from tamdeploy.errors import TamdeployError
from tamdeploy.models.config import ModelConfig

PREFIX = "tamdeploy."


@dataclass(frozen=True)
class ModelMetadata:
    config: ModelConfig
    input_name: str
    input_layout: str  # "NTCHW" for video, "NCHW" for image
    precision: str  # "fp32" | "fp16" | "int8"
    checkpoint_sha256: str
    tam_op: str  # "plugin" (custom node + function) | "onnx" (inlined standard ops) | "none"
    version: str = __version__

    def to_metadata_props(self) -> dict[str, str]:
        """The entries as they stand in ``metadata_props`` (prefixed keys)."""
        return {PREFIX + key: value for key, value in self.to_props().items()}

    def to_props(self) -> dict[str, str]:
        cfg = self.config
        return {
            "version": self.version,
            "arch": cfg.arch,
            "num_segments": str(cfg.num_segments or 0),
            "num_classes": str(cfg.num_classes),
            "input_size": str(cfg.input_size),
            "mean": json.dumps(list(cfg.mean)),
            "std": json.dumps(list(cfg.std)),
            "input_name": self.input_name,
            "input_layout": self.input_layout,
            "precision": self.precision,
            "checkpoint_sha256": self.checkpoint_sha256,
            "tam_op": self.tam_op,
            "config": json.dumps(cfg.to_dict(), sort_keys=True),
        }


def write_metadata(model: onnx.ModelProto, meta: ModelMetadata) -> None:
    """Replace tamdeploy's entries (others' entries stay), in a fixed order for byte-identical files."""
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in meta.to_metadata_props().items():
        model.metadata_props.add(key=key, value=value)


def read_metadata(model: onnx.ModelProto) -> ModelMetadata | None:
    """The metadata, or None for an ONNX file not made by tamdeploy."""
    return metadata_from_props({p.key: p.value for p in model.metadata_props})


def metadata_from_props(all_props: Mapping[str, str]) -> ModelMetadata | None:
    """The metadata from ``metadata_props`` as a mapping (an ONNX Runtime session's
    ``custom_metadata_map``, an OpenVINO sidecar's copy), or None without tamdeploy's entries."""
    props = {key[len(PREFIX):]: value for key, value in all_props.items() if key.startswith(PREFIX)}
    if "config" not in props:
        return None
    try:
        return ModelMetadata(
            config=ModelConfig.from_dict(json.loads(props["config"])),
            input_name=props["input_name"],
            input_layout=props["input_layout"],
            precision=props["precision"],
            checkpoint_sha256=props["checkpoint_sha256"],
            tam_op=props.get("tam_op", "none"),
            version=props["version"],
        )
    except (KeyError, ValueError, TypeError) as e:
        raise TamdeployError(f"tamdeploy metadata in this ONNX file is damaged ({e}); re-export it") from e


def require_metadata(model: onnx.ModelProto, path: str, needed_for: str) -> ModelMetadata:
    meta = read_metadata(model)
    if meta is None:
        raise TamdeployError(f"{path} was not exported by tamdeploy (no tamdeploy metadata); {needed_for} "
                             f"needs it: export the checkpoint with 'tamdeploy export'")
    return meta
