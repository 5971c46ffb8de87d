"""Networks: the SE / ACTION / TAM modules, ResNet backbones, the registry and checkpoint loading."""

from tamdeploy.models.checkpoints import LoadedCheckpoint, load_checkpoint, save_checkpoint
from tamdeploy.models.modules import TAM, Action, SELayer
from tamdeploy.models.registry import (
    build_model,
    create_model,
    default_config,
    list_models,
    randomize_batchnorm_,
    register_model,
)
from tamdeploy.models.resnet import ModelConfig, ResNet

__all__ = [
    "TAM", "Action", "SELayer", "ModelConfig", "ResNet",
    "build_model", "create_model", "randomize_batchnorm_", "default_config", "list_models", "register_model",
    "LoadedCheckpoint", "load_checkpoint", "save_checkpoint",
]
