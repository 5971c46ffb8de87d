"""The batched stream, the metrics and predict's edge cases, with stand-in runners (no trained model)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import invoke
from helpers.video import write_garbage

from tamdeploy.deploy.inputs.clips import ClipSpec
from tamdeploy.deploy.inputs.video import Views
from tamdeploy.deploy.predict.decoding import Decoded, decode_one
from tamdeploy.deploy.predict.metrics import confusion_matrix, mean_class_accuracy, top1, top_k_accuracy
from tamdeploy.deploy.predict.predictor import predict_stream
from tamdeploy.models.config import IMAGENET_MEAN, IMAGENET_STD


class RecordingRunner:
    """Logits = the mean of each input, per class offset: a model whose answer a test can compute."""

    input_name, output_names = "video", ["logits"]

    def __init__(self) -> None:
        self.batches: list[int] = []

    def infer(self, feed):
        x = feed["video"]
        self.batches.append(len(x))
        return {"logits": x.reshape(len(x), -1).mean(axis=1, keepdims=True) + np.arange(3, dtype=np.float32)}


def test_batches_never_exceed_the_batch_and_views_average_across_batches():
    rng = np.random.default_rng(0)
    videos = [rng.standard_normal((3, 2, 3, 4, 4)).astype(np.float32) for _ in range(5)]
    items = [Decoded(i, f"v{i}", v) for i, v in enumerate(videos)]
    items.insert(2, Decoded(99, "broken", None, "cannot open it"))
    runner = RecordingRunner()
    results = list(predict_stream(items, [runner], batch=4))
    assert runner.batches == [4, 4, 4, 3]  # 15 views in batches of 4: a video's views may straddle two
    assert [item.source for item, _ in results] == ["v0", "v1", "broken", "v2", "v3", "v4"]
    assert results[2][1] is None
    for (_, logits), video in zip([r for r in results if r[1] is not None], videos, strict=True):
        expected = (video.reshape(3, -1).mean(axis=1)[:, None] + np.arange(3)).mean(axis=0)
        np.testing.assert_allclose(logits[0], expected, rtol=1e-6)


def test_mean_class_accuracy_is_mmaction2s():
    """mmaction2 averages over classes in the labels or the predictions; one only predicted counts 0."""
    labels, predicted = np.array([0, 0, 1]), np.array([0, 0, 2])
    assert mean_class_accuracy(confusion_matrix(labels, predicted, 4)) == pytest.approx((1.0 + 0.0 + 0.0) / 3)


def test_non_finite_logits_are_misses_everywhere():
    scores = np.array([[0.1, np.nan, 0.9, 0.2], [np.nan] * 4, [0.0, 1.0, 0.0, 0.0]])
    labels = np.array([1, 0, 1])
    assert top1(scores).tolist() == [-1, -1, 1]
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, labels, 4) == pytest.approx(1 / 3)
    assert confusion_matrix(labels, top1(scores), 4).sum() == 1


def test_a_path_the_file_system_refuses_is_a_failed_video_not_a_crash(tmp_path):
    spec = ClipSpec(2, 16, IMAGENET_MEAN, IMAGENET_STD)
    views, error = decode_one(str(tmp_path / ("x" * 300 + ".mp4")), spec, Views())
    assert views is None and "too long" in error.lower()


def test_predict_edge_cases(tmp_path):
    from tamdeploy.exporters.pipeline import export_checkpoint
    from tamdeploy.models import create_model, save_checkpoint

    model = create_model("tsn_r50", width=0.25, num_segments=2, input_size=32, num_classes=3)
    onnx_path = export_checkpoint(save_checkpoint(model, None, tmp_path / "m.pt"), tmp_path / "m.onnx").export.path
    broken = write_garbage(tmp_path / "broken.mp4")
    # every video fails: one JSON document, the error, exit 2
    result = invoke("predict", onnx_path, broken, "--json", "--workers", "0")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["exit_code"] == 2
    # an unwritable --out fails before any work
    result = invoke("predict", onnx_path, broken, "--out", tmp_path / "missing" / "p.jsonl")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    # an mmaction2 list given to predict: its paths are used
    from tamdeploy.deploy.inputs.synthetic import write_motion_clips

    (video, _), = write_motion_clips(tmp_path / "clips", 1, frames=4, size=40)
    (tmp_path / "val.txt").write_text(f"clips/{Path(video).name} 2\nbroken.mp4 1\n")
    result = invoke("predict", onnx_path, tmp_path / "val.txt", "--json", "--workers", "0")
    assert result.exit_code == 0, result.stderr
    records = result.json()["predictions"]
    assert records[0]["error"] is None and records[1]["error"] and result.json()["failed"] == 1


def test_eval_with_nothing_decodable_is_exit_2(tmp_path):
    from tamdeploy.exporters.pipeline import export_checkpoint
    from tamdeploy.models import create_model, save_checkpoint

    model = create_model("tsn_r50", width=0.25, num_segments=2, input_size=32, num_classes=3)
    onnx_path = export_checkpoint(save_checkpoint(model, None, tmp_path / "m.pt"), tmp_path / "m.onnx").export.path
    write_garbage(tmp_path / "broken.mp4")
    (tmp_path / "val.txt").write_text("broken.mp4 1\n")
    result = invoke("eval", onnx_path, "--ann", tmp_path / "val.txt", "--json", "--workers", "0")
    assert result.exit_code == 2 and "none of the 1 video(s)" in result.stderr
    json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH, which keeps the folder off, is Python 3.11+")
def test_decode_workers_start_in_a_folder_that_holds_a_folder_named_tamdeploy(tmp_path):
    """The workers' forkserver runs as `python -c`, which puts the current folder first on its path: an
    empty `tamdeploy` folder there (a clone's parent) shadowed the editable install and killed the workers."""
    from tamdeploy.deploy.inputs.synthetic import write_motion_clips
    from tamdeploy.exporters.pipeline import export_checkpoint
    from tamdeploy.models import create_model, save_checkpoint

    model = create_model("tsn_r50", width=0.25, num_segments=2, input_size=32, num_classes=3)
    onnx_path = export_checkpoint(save_checkpoint(model, None, tmp_path / "m.pt"), tmp_path / "m.onnx",
                                  verify=False).export.path
    (video, _), = write_motion_clips(tmp_path / "clips", 1, frames=4, size=40)
    work = tmp_path / "work"
    (work / "tamdeploy").mkdir(parents=True)
    exe = Path(sys.executable).with_name("tamdeploy")
    result = subprocess.run([str(exe), "predict", str(onnx_path), str(video), "--workers", "1", "--json"], cwd=work,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["error"] is None


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(p) for p in task.read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc (Linux)")
def test_sigterm_stops_predict_like_ctrl_c_with_its_workers(tmp_path):
    """`kill PID` (SIGTERM, what job schedulers send) used to end predict with no word and leave its
    decode workers and their forkserver running under init."""
    from tamdeploy.deploy.inputs.synthetic import write_motion_clips
    from tamdeploy.exporters.pipeline import export_checkpoint
    from tamdeploy.models import create_model, save_checkpoint

    model = create_model("tsn_r50", width=0.25, num_segments=2, input_size=32, num_classes=3)
    onnx_path = export_checkpoint(save_checkpoint(model, None, tmp_path / "m.pt"), tmp_path / "m.onnx",
                                  verify=False).export.path
    (video, _), = write_motion_clips(tmp_path / "clips", 1, frames=16, size=64)
    exe = Path(sys.executable).with_name("tamdeploy")
    process = subprocess.Popen([str(exe), "predict", str(onnx_path), *[str(video)] * 3000, "--views", "10x3",
                                "--workers", "1", "--out", str(tmp_path / "p.jsonl")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _children(process.pid) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        time.sleep(1.0)  # the workers are decoding
        children = _children(process.pid)
        grandchildren = set().union(*(_children(c) for c in children)) if children else set()
        assert children and process.poll() is None, "predict finished before it could be stopped"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "error: terminated; nothing written"
    assert not (tmp_path / "p.jsonl").exists()
    deadline = time.monotonic() + 20
    while any(map(_alive, children | grandchildren)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, children | grandchildren))
