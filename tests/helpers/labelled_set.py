"""A trained model and a labelled mp4 set for predict / eval tests (real accuracy, not random).

ACTION-Net (width 0.25, T=4, 32x32) trained in ~25 s on ``helpers.motion``'s synthetic-motion clips
(the class is which frame holds a flash), exported to ONNX and built to an INT8 graph with tamdeploy's
own CLI; the videos are mp4 files written with PyAV, listed in an mmaction2 video list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from helpers.cli import invoke
from helpers.motion import CLASSES, labels_of, train, write_dataset
from tamdeploy.deploy.inputs.clips import ClipSpec
from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, save_checkpoint
from tamdeploy.models.config import IMAGENET_MEAN, IMAGENET_STD

T, SIZE, CLIPS = 4, 32, 48
SPEC = ClipSpec(T, SIZE, IMAGENET_MEAN, IMAGENET_STD)


def truth(paths: list[str]) -> np.ndarray:
    """Labels of ``write_dataset`` videos, from their names."""
    return labels_of([Path(p).name for p in paths])


def make_labelled_set(root: Path) -> dict[str, Path]:
    """checkpoint, ONNX, INT8 ONNX, the videos folder, a labels file and ``val.txt`` (paths relative to root)."""
    model = create_model("action_r50", width=0.25, num_segments=T, input_size=SIZE, num_classes=len(CLASSES))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # beside another busy process, torch's two threads spin-waiting slowed training 10x
    try:
        train(model, SPEC, steps=60, batch_size=16, lr=3e-3)
        checkpoint = save_checkpoint(model, None, root / "model.pt")
        onnx_path = export_checkpoint(checkpoint, root / "model.onnx", verify=False).export.path
    finally:
        torch.set_num_threads(threads)
    videos = write_dataset(root / "videos", CLIPS, seed=5)
    calib = write_dataset(root / "calib", 16, seed=6)
    int8 = root / "model.int8.onnx"
    built = invoke("build", onnx_path, "--int8", "--calib", calib, "-o", int8, "--json")
    assert built.exit_code == 0, built.stderr
    names = root / "labels.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    video_list = root / "val.txt"
    video_list.write_text("".join(f"videos/{p.name} {truth([p.name])[0]}\n" for p in sorted(videos.glob("*.mp4"))))
    return {"root": root, "ckpt": checkpoint, "onnx": onnx_path, "int8": int8, "videos": videos, "labels": names,
            "list": video_list}
