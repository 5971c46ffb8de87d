"""``ModelConfig``: everything needed to rebuild a network, and the contract between the packages.

It is written into checkpoints (``save_checkpoint``), into the ONNX metadata (``exporters.metadata``)
and into engine sidecars, and read back by every runner; it depends on nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BLOCK_KINDS = ("plain", "se", "tam", "action")


def sample_shape(num_segments: int | None, input_size: int) -> tuple[int, ...]:
    """One sample's shape (no batch axis): [T, 3, S, S] for a video model, [3, S, S] for an image model."""
    s = input_size
    return (num_segments, 3, s, s) if num_segments is not None else (3, s, s)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; it travels in checkpoints and ONNX metadata."""

    arch: str
    block: str  # one of BLOCK_KINDS
    depth: int
    num_classes: int
    num_segments: int | None  # None for image models
    width: float = 1.0
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    tam_kernel_size: int = 3
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_video(self) -> bool:
        return self.num_segments is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (no batch axis)."""
        return sample_shape(self.num_segments, self.input_size)

    def to_dict(self) -> dict:
        return {
            "arch": self.arch, "block": self.block, "depth": self.depth, "num_classes": self.num_classes,
            "num_segments": self.num_segments, "width": self.width, "input_size": self.input_size,
            "mean": list(self.mean), "std": list(self.std), "tam_kernel_size": self.tam_kernel_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["mean"] = tuple(d["mean"])
        d["std"] = tuple(d["std"])
        return cls(**d)
