"""Helpers the tests share (imported as ``helpers``: pyproject puts tests/ on the path).

- ``cli``: run the CLI in-process and read its JSON;
- ``checkpoints``: checkpoints in every layout tamdeploy reads, written independently of its loader;
- ``video``: mp4 files and frame folders written with PyAV;
- ``motion``: the synthetic-motion dataset and the tiny models trained on it;
- ``hardware``: what this machine has (TensorRT, CUDA) and the skip markers that follow;
- ``user_networks/``: a user's own network file, for ``export --model file.py:factory``.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
