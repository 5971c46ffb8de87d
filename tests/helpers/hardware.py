"""What this machine has, and the skip markers that follow from it."""

import importlib.util

import pytest
import torch

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()
SKIP_REASON = ("TensorRT is not installed (pip install 'tamdeploy[tensorrt]')" if not HAS_TENSORRT
               else "needs an NVIDIA GPU (torch.cuda.is_available() is False)")
tensorrt_and_gpu = pytest.mark.skipif(not (HAS_TENSORRT and HAS_CUDA), reason=SKIP_REASON)
