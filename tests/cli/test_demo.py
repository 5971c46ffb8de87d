"""``tamdeploy demo``, the README's first command, end to end."""

from __future__ import annotations

import json

from helpers.cli import invoke


def test_demo_runs_end_to_end_and_writes_its_files(tmp_path):
    directory = tmp_path / "demo"
    result = invoke("demo", "--dir", directory, "--seconds", "0.5", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["passed"] is True and report["directory"] == str(directory)
    for key in ("checkpoint", "onnx", "plot", "bench", "summary"):
        assert (directory / report["files"][key].split("/")[-1]).is_file(), key
    assert len(list((directory / "clips").glob("*.mp4"))) == 6
    assert report["export"]["tam_nodes"] == 16 and report["export"]["parity"]["passed"]
    assert report["verify"]["inputs"]["source"] == "data" and report["verify"]["inputs"]["samples"] == 6
    assert report["verify"]["passed"]
    labels = [r["label"] for r in report["bench"]["runners"]]
    assert labels == ["pytorch", "onnxruntime"] and report["bench"]["batches"] == [1, 4]
    assert json.loads((directory / "summary.json").read_text())["passed"] is True
    assert (directory / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_on_openvino_verifies_there_and_benches_all_three(tmp_path):
    result = invoke("demo", "--dir", tmp_path / "demo", "--seconds", "0.3", "--backend", "openvino", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["passed"] and report["verify"]["runner"] == "openvino-cpu" and report["verify"]["passed"]
    assert report["verify"]["runner_settings"]["performance"] == "latency"
    runners = report["bench"]["runners"]
    assert [(r["label"], r["backend"]) for r in runners] == [
        ("pytorch", "pytorch"), ("onnxruntime", "onnxruntime-cpu"), ("openvino", "openvino-cpu")]
    assert runners[2]["settings"]["streams"] >= 1 and not runners[0]["settings"]


def test_demo_backend_is_checked_before_anything_is_written(tmp_path):
    result = invoke("demo", "--dir", tmp_path / "demo", "--backend", "tensorrt")
    assert result.exit_code == 2 and "--backend for the demo must be one of onnxruntime, openvino" in result.stderr
    assert not (tmp_path / "demo").exists()
