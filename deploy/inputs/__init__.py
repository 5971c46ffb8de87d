"""Model inputs: what one clip looks like (``ClipSpec``), reading clips from videos, frame folders,
images and ``.npy`` arrays (``clips``), the decoding and TSN-style sampling underneath (``video``:
T segments, the centre frame of each, resize, centre crop), and synthetic videos (``synthetic``).

Files that cannot be decoded are named, skipped and counted (``DataSummary``), never silently dropped.
"""

from tamdeploy.deploy.inputs.clips import (
    Batch,
    Clip,
    ClipSpec,
    DataSummary,
    SkippedFile,
    iter_clips,
    load_batch,
    random_clips,
    read_views,
)
from tamdeploy.deploy.inputs.video import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FrameTransform,
    UndecodableError,
    Views,
)

__all__ = [
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "Batch", "Clip", "ClipSpec", "DataSummary", "FrameTransform",
    "SkippedFile", "UndecodableError", "Views", "iter_clips", "load_batch", "random_clips", "read_views",
]
