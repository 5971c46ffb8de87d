"""Networks: the SE / ACTION / TAM modules, ResNet backbones, the registry and checkpoint loading.

``config`` holds ``ModelConfig``, the contract between the packages (it travels in checkpoints, ONNX
metadata and engine sidecars); ``modules`` the blocks; ``resnet`` the backbones; ``registry`` the named
networks (``create_model``); ``layouts``, ``safe_load`` and ``checkpoints`` read other projects' files.
"""

from tamdeploy.lazy import lazy_attributes

# name -> module, imported on first use: ``config`` (and what reads only configs: clip specs, ONNX
# metadata, decode workers, the serving path) must not pay for torch
_PUBLIC = {
    "TAM": "modules", "Action": "modules", "SELayer": "modules", "ModelConfig": "config", "ResNet": "resnet",
    "build_model": "registry", "create_model": "registry", "randomize_batchnorm_": "registry",
    "default_config": "registry", "list_models": "registry", "register_model": "registry",
    "CHECKPOINT_SUFFIXES": "checkpoint_files", "is_checkpoint_file": "checkpoint_files",
    "LoadedCheckpoint": "checkpoints", "load_checkpoint": "checkpoints", "save_checkpoint": "checkpoints",
}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_attributes(__name__, _PUBLIC)
