"""predict and eval on real mp4 data sets and a trained model (real accuracy, not random): the
``data`` fixture (``helpers.labelled_set``) trains ACTION-Net on the synthetic-motion clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import invoke
from helpers.labelled_set import CLIPS, SIZE, SPEC, truth
from helpers.motion import CLASSES, render_clip
from helpers.video import coded_frames, write_frame_folder, write_garbage

from tamdeploy.deploy.predict.predictor import Predictor
from tamdeploy.onnx_runtime import create_session


def eval_json(*args) -> dict:
    result = invoke("eval", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return result.json()


def test_eval_top1_is_the_share_of_predict_top1_that_match_the_labels(data):
    predicted = invoke("predict", data["onnx"], data["videos"], "--labels", data["labels"], "--json", "--workers", "0")
    assert predicted.exit_code == 0, predicted.stderr
    records = predicted.json()["predictions"]
    assert len(records) == CLIPS and all(r["error"] is None for r in records)
    hits = np.mean([CLASSES.index(r["top_k"][0]["label"]) == label
                    for r, label in zip(records, truth([r["video"] for r in records]), strict=True)])
    report = eval_json(data["onnx"], "--ann", data["list"], "--workers", "0")
    (model,) = report["models"]
    assert report["evaluated"] == CLIPS and report["format"] == "mmaction2-video" and not report["failed"]
    assert model["top1"] == pytest.approx(hits) and hits >= 0.9  # a trained model, not chance (25 %)
    assert model["top5"] == 1.0  # 4 classes
    per_class = [model["per_class_accuracy"][str(c)] for c in range(len(CLASSES))]
    assert model["mean_class_accuracy"] == pytest.approx(np.mean(per_class))
    assert np.sum(model["confusion_matrix"]) == CLIPS


def test_fp32_vs_int8_in_one_table(data, tmp_path):
    report = eval_json(data["onnx"], data["int8"], "--ann", data["list"], "--labels", data["labels"],
                       "--out", tmp_path / "report")
    fp32, int8 = report["models"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert int8["top1"] >= fp32["top1"] - 0.05 and report["top1_agreement"]["matrix"][0][1] >= 0.95
    assert int8["top1_delta_vs_first"] == pytest.approx(int8["top1"] - fp32["top1"])
    assert set(fp32["per_class_accuracy"]) == set(CLASSES)
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert written == ["confusion-0-model.onnx.png", "confusion-1-model.int8.onnx.png", "predictions.jsonl",
                       "report.json"]
    assert (tmp_path / "report" / "confusion-0-model.onnx.png").read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(line) for line in (tmp_path / "report" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == CLIPS and set(rows[0]["predicted"]) == {data["onnx"].name, data["int8"].name}
    table = invoke("eval", data["onnx"], data["int8"], "--ann", data["list"])
    assert table.exit_code == 0 and " pt " in table.stdout and "int8" in table.stdout


def test_every_annotation_format_gives_the_same_accuracy(data, tmp_path):
    reference = eval_json(data["onnx"], "--ann", data["list"], "--workers", "0")["models"][0]["top1"]
    files = sorted(data["videos"].glob("*.mp4"))
    # CSV with path,label (class names)
    plain = tmp_path / "val.csv"
    with plain.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([[str(p), CLASSES[truth([p.name])[0]]] for p in files])
    # Kinetics style: youtube_id,time_start,time_end,label with videos under DATA_ROOT/<label>/
    kinetics_root = tmp_path / "k400"
    kinetics = tmp_path / "kinetics.csv"
    rows = []
    for i, p in enumerate(files):
        label = CLASSES[truth([p.name])[0]]
        (kinetics_root / label).mkdir(parents=True, exist_ok=True)
        (kinetics_root / label / f"vid{i:04d}_000010_000020.mp4").symlink_to(p)
        rows.append([label, f"vid{i:04d}", 10, 20, "val"])
    with kinetics.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows(rows)
    for ann, extra, fmt in [(plain, [], "csv"), (kinetics, ["--data-root", kinetics_root], "kinetics-csv")]:
        report = eval_json(data["onnx"], "--ann", ann, "--labels", data["labels"], *extra, "--workers", "0")
        assert report["format"] == fmt and report["evaluated"] == CLIPS
        assert report["models"][0]["top1"] == reference


def test_rawframes_list_of_frame_folders(data, tmp_path):
    """mmaction2's rawframes layout: img_00001.png ... per clip (lossless), beside flow images to ignore."""
    rng = np.random.default_rng(9)
    lines = []
    for i in range(16):
        label = i % len(CLASSES)
        folder = write_frame_folder(tmp_path / f"clip{i:02d}", render_clip(label, rng))
        write_frame_folder(folder, np.zeros((4, 36, 36, 3), np.uint8), pattern="x_{:05d}.png")  # flow: not RGB
        lines.append(f"clip{i:02d} {len(CLASSES)} {label}\n")
    (tmp_path / "rawframes.txt").write_text("".join(lines))
    report = eval_json(data["onnx"], "--ann", tmp_path / "rawframes.txt", "--workers", "0")
    assert report["format"] == "mmaction2-rawframes" and report["evaluated"] == 16
    assert report["models"][0]["top1"] >= 0.9


def test_views_average_the_scores_of_hand_made_views(data, tmp_path):
    """--views 2x3 on a frame folder of known (lossless) frames 48 wide and 32 (= S) tall: no resize is
    needed, so each view is plain slicing, done here by hand, and run through ONNX Runtime directly."""
    frames = coded_frames(8, SIZE, 48)
    folder = write_frame_folder(tmp_path / "known", frames)
    with Predictor(data["onnx"], views="2x3", workers=0) as predictor:
        got = predictor.predict(folder)
    clips = [[0, 2, 4, 6], [1, 3, 5, 7]]  # floor(8 (4i + 2k + 1) / 16): T = 4 segments, 2 clips
    views = [frames[idx][:, :, x:x + SIZE] for idx in clips for x in (0, 8, 16)]  # left, centre, right
    x = np.stack([SPEC.normalise(v) for v in views])
    session = create_session(data["onnx"], threads=1)
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got.logits, logits.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_workers_on_and_off_give_identical_results(data):
    runs = [invoke("predict", data["onnx"], data["videos"], "--json", "--workers", str(w), "--batch", "5")
            for w in (0, 2)]
    assert all(r.exit_code == 0 for r in runs), [r.stderr for r in runs]
    assert runs[0].json()["predictions"] == runs[1].json()["predictions"]


def test_undecodable_and_missing_videos_are_named_counted_and_left_out(data, tmp_path):
    write_garbage(tmp_path / "broken.mp4")
    ann = tmp_path / "val.txt"
    good = data["list"].read_text().splitlines()[:8]
    ann.write_text("\n".join([f"{data['root']}/{line}" for line in good[:4]] + ["broken.mp4 1", "gone.mp4 2"]
                             + [f"{data['root']}/{line}" for line in good[4:]]) + "\n")
    report = eval_json(data["onnx"], "--ann", ann, "--workers", "1")
    assert report["videos"] == 10 and report["evaluated"] == 8
    failed = {Path(f["video"]).name: f for f in report["failed"]}
    assert set(failed) == {"broken.mp4", "gone.mp4"} and failed["broken.mp4"]["line"] == 5
    assert "does not exist" in failed["gone.mp4"]["reason"]
    text = invoke("eval", data["onnx"], "--ann", ann, "--workers", "0")
    assert text.exit_code == 0 and "2 could not be decoded" in text.stdout and "broken.mp4" in text.stderr


@pytest.mark.parametrize("case,message", [
    ("views", "views '3by3' do not parse"),
    ("label_file", "holds 3 names but the model has 4 classes"),
    ("bad_line", "line 2"),
    ("label_range", "line 1"),
])
def test_bad_input_is_one_line_and_exit_2(data, tmp_path, case, message):
    args = [data["onnx"], "--ann", data["list"]]
    if case == "views":
        args += ["--views", "3by3"]
    elif case == "label_file":
        (tmp_path / "three.txt").write_text("a\nb\nc\n")
        args += ["--labels", tmp_path / "three.txt"]
    elif case == "bad_line":
        (tmp_path / "bad.txt").write_text(f"{data['videos']}/00000_first.mp4 0\nnot-a-line\n")
        args = [data["onnx"], "--ann", tmp_path / "bad.txt"]
    else:
        (tmp_path / "range.txt").write_text(f"{data['videos']}/00000_first.mp4 7\n")
        args = [data["onnx"], "--ann", tmp_path / "range.txt"]
    result = invoke("eval", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_out_folder_describes_this_run_only_and_a_failed_run_leaves_none(data, tmp_path):
    out = tmp_path / "report"
    eval_json(data["onnx"], data["int8"], "--ann", data["list"], "--out", out)
    eval_json(data["int8"], "--ann", data["list"], "--out", out)
    assert sorted(p.name for p in out.glob("confusion-*.png")) == ["confusion-0-model.int8.onnx.png"]
    failed = invoke("eval", data["onnx"], "--ann", tmp_path / "missing.txt", "--out", tmp_path / "new")
    assert failed.exit_code == 2 and not (tmp_path / "new").exists()


def test_top_k_beyond_the_classes_shows_them_all_and_says_so(data, tmp_path):
    video = sorted(data["videos"].glob("*.mp4"))[0]
    result = invoke("predict", data["onnx"], video, "--top-k", "9", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.stderr
    assert f"--top-k 9 is more than the model's {len(CLASSES)} classes" in " ".join(result.stderr.split())
    header = next(csv.reader((tmp_path / "p.csv").open()))
    assert header[-3:] == [f"label_{len(CLASSES)}", f"score_{len(CLASSES)}", "error"]
