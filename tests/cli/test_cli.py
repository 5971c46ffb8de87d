"""The command line: version, help, inspect, bench, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.checkpoints import RunsCommand, randomize_, save_mmaction2
from helpers.cli import invoke

from tamdeploy import __version__
from tamdeploy.models import create_model, save_checkpoint


@pytest.fixture(scope="module")
def tanet_ckpt(tmp_path_factory) -> Path:
    model = randomize_(create_model("tanet_r50", width=0.25, num_segments=4, num_classes=6, input_size=32))
    return save_mmaction2(model.state_dict(), tmp_path_factory.mktemp("cli") / "tanet_mm.pth")


def test_version_and_help_explain_every_command():
    assert invoke("--version").stdout.strip() == f"tamdeploy {__version__}"
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("inspect", "export", "bench", "demo"):
        assert command in result.stdout
        sub = invoke(command, "--help")
        assert sub.exit_code == 0 and "--json" in sub.stdout


def test_console_script_is_installed_and_runs():
    exe = Path(sys.executable).with_name("tamdeploy")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and __version__ in result.stdout


def test_inspect_reports_layout_arch_t_classes_parameters_and_input(tanet_ckpt):
    result = invoke("inspect", tanet_ckpt, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    expected_params = sum(p.numel() for p in create_model(
        "tanet_r50", width=0.25, num_segments=4, num_classes=6).parameters())
    assert report["layout"] == "mmaction2" and report["arch"] == "tanet_r50"
    assert report["num_segments"] == 4 and report["num_classes"] == 6
    assert report["parameters"] == expected_params
    assert report["input_shape"] == ["N", 4, 3, 224, 224]


def test_inspect_human_output_is_a_table(tanet_ckpt):
    result = invoke("inspect", tanet_ckpt)
    assert result.exit_code == 0 and "tanet_r50" in result.stdout and "mmaction2" in result.stdout


def _one_line_exit_2(result, needle: str) -> None:
    assert result.exit_code == 2, result.stdout + result.stderr
    assert needle in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_inspect_bad_inputs(tmp_path, tanet_ckpt):
    _one_line_exit_2(invoke("inspect", tmp_path / "missing.pth"), "does not exist")
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    _one_line_exit_2(invoke("inspect", text), "notes.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tanet_ckpt.read_bytes()[: 5000])
    _one_line_exit_2(invoke("inspect", truncated), "truncated.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, wrong)
    _one_line_exit_2(invoke("inspect", wrong), "wrong.pth")
    _one_line_exit_2(invoke("inspect", tanet_ckpt, "--num-segments", "8"), "contradicts")


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "created-by-pickle"
    evil = tmp_path / "evil.pth"
    sd = create_model("se_resnet50", width=0.25, num_classes=3).state_dict()
    torch.save({"state_dict": sd, "meta": RunsCommand(marker)}, evil)
    for command in (["inspect", evil], ["export", evil, "-o", tmp_path / "evil.onnx"]):
        _one_line_exit_2(invoke(*command), "--trust-checkpoint")
    assert not marker.exists()
    assert not (tmp_path / "evil.onnx").exists()


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path):
    result = invoke("--debug", "inspect", tmp_path / "missing.pth")
    assert result.exit_code == 2  # a mistake the user can fix, --debug or not (it was 1: "parity failed")
    assert "Traceback" in result.stderr and "CheckpointError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: checkpoint")


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    from tamdeploy.exporters.onnx_export import export_model

    root = tmp_path_factory.mktemp("bench")
    model = create_model("tsn_r50", width=0.25, num_segments=2, num_classes=5, input_size=32)
    ckpt = save_checkpoint(model, None, root / "tsn.pth")
    onnx_path = export_model(model, model.config, root / "tsn.onnx", checkpoint_sha256="0" * 64).path
    return ckpt, onnx_path


def test_bench_two_artifacts_interleaved_with_json_and_plot(small_onnx, tmp_path):
    ckpt, onnx_path = small_onnx
    plot = tmp_path / "bench.png"
    result = invoke("bench", ckpt, onnx_path, "--batch", "1,2", "--iters", "4", "--warmup", "1",
                    "--threads", "1", "--plot", plot, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [r["label"] for r in report["runners"]] == ["tsn.pth", "tsn.onnx"]
    assert report["reference"] == "tsn.pth" and report["batches"] == [1, 2]
    for runner in report["runners"]:
        assert runner["input_shape"][1:] == [2, 3, 32, 32]  # the checkpoint took the ONNX's size
        for b in runner["batches"]:
            s = b["latency"]
            assert 0 < s["min_ms"] <= s["median_ms"] <= s["p90_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
            assert b["iterations"] == 4
    assert report["runners"][0]["batches"][0]["time_ratio"] == 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_markdown_on_the_terminal(small_onnx):
    _, onnx_path = small_onnx
    result = invoke("bench", onnx_path, "--batch", "1", "--iters", "2", "--warmup", "0")
    assert result.exit_code == 0 and "| tsn.onnx |" in result.stdout and "median" in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["--batch", "1,x"], "--batch"),
    (["--batch", "0"], "--batch"),
    (["--iters", "3", "--duration", "1"], "not both"),
    (["--backend", "tensorrt"], "tensorrt"),
])
def test_bench_bad_options(small_onnx, args, needle):
    _, onnx_path = small_onnx
    _one_line_exit_2(invoke("bench", onnx_path, *args), needle)


def test_bench_missing_artifact(tmp_path):
    _one_line_exit_2(invoke("bench", tmp_path / "none.onnx"), "does not exist")


def test_inspect_describes_an_exported_onnx_and_refuses_one_that_is_not(tanet_ckpt, tmp_path):
    onnx_path = tmp_path / "tanet.onnx"
    assert invoke("export", tanet_ckpt, "-o", onnx_path, "--input-size", "32", "--no-verify").exit_code == 0
    report = invoke("inspect", onnx_path, "--json").json()
    assert report["exported_by_tamdeploy"] and report["arch"] == "tanet_r50" and report["num_segments"] == 4
    assert report["num_classes"] == 6 and report["precision"] == "fp32" and report["tam_nodes"] > 0
    assert report["inputs"] == {"video": ["batch", 4, 3, 32, 32]} and report["outputs"] == {"logits": ["batch", 6]}
    table = invoke("inspect", onnx_path)
    assert table.exit_code == 0 and "video (batch, 4, 3, 32, 32)" in table.stdout and "tam_nodes" in table.stdout
    (tmp_path / "notes.onnx").write_text("not a model")
    bad = invoke("inspect", tmp_path / "notes.onnx")
    assert bad.exit_code == 2 and "notes.onnx is not an ONNX model" in bad.stderr
