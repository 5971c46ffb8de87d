"""A small exported TANet (width 0.25, T=4, 32x32, 5 classes) for the serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, randomize_batchnorm_, save_checkpoint


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    model = randomize_batchnorm_(create_model("tanet_r50", width=0.25, num_segments=4, input_size=32, num_classes=5),
                                 seed=1)
    return export_checkpoint(save_checkpoint(model, None, root / "tiny.pt"), root / "tiny.onnx").export.path
