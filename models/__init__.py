"""Networks: the SE / ACTION / TAM modules, ResNet backbones, the registry and checkpoint loading.

``config`` holds ``ModelConfig``, the contract between the packages (it travels in checkpoints, ONNX
metadata and engine sidecars); ``modules`` the blocks; ``resnet`` the backbones; ``registry`` the named
networks (``create_model``); ``layouts``, ``safe_load`` and ``checkpoints`` read other projects' files.
"""

from tamdeploy.models.checkpoints import (
    CHECKPOINT_SUFFIXES,
    LoadedCheckpoint,
    is_checkpoint_file,
    load_checkpoint,
    save_checkpoint,
)
from tamdeploy.models.config import ModelConfig
from tamdeploy.models.modules import TAM, Action, SELayer
from tamdeploy.models.registry import (
    build_model,
    create_model,
    default_config,
    list_models,
    randomize_batchnorm_,
    register_model,
)
from tamdeploy.models.resnet import ResNet

__all__ = [
    "TAM", "Action", "SELayer", "ModelConfig", "ResNet",
    "build_model", "create_model", "randomize_batchnorm_", "default_config", "list_models", "register_model",
    "CHECKPOINT_SUFFIXES", "LoadedCheckpoint", "is_checkpoint_file", "load_checkpoint", "save_checkpoint",
]
