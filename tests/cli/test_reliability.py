"""Issue 16: what a careless user, a full disk and Ctrl-C found, each through the CLI on real files.

Disk-full and read-only file systems are simulated by making the file system calls fail with the
errno the kernel gives (tests run as root, where permission bits do not stop a write); the interrupt
is a real SIGINT sent to a child process in the middle of the export's parity check.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.checkpoints import randomize_, save_mmaction2
from helpers.cli import invoke
from torch import nn

import tamdeploy.files
from tamdeploy.deploy.bench import run_benchmark
from tamdeploy.deploy.bench.report import LatencyStats, noise_warning
from tamdeploy.deploy.runners import Runner, TensorSpec
from tamdeploy.errors import TamdeployError
from tamdeploy.exporters.pipeline import export_checkpoint
from tamdeploy.models import create_model, is_checkpoint_file, save_checkpoint

SIZE, T = 32, 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, its parity-checked export): a width-0.25 TANet at 32x32, T=4."""
    root = tmp_path_factory.mktemp("reliability")
    model = randomize_(create_model("tanet_r50", width=0.25, num_segments=T, num_classes=5, input_size=SIZE))
    ckpt = save_checkpoint(model, None, root / "tiny.pth")
    result = invoke("export", ckpt, "--json")
    assert result.exit_code == 0, result.stderr
    return ckpt, Path(result.json()["output"])


def one_line(result, code: int = 2) -> str:
    assert result.exit_code == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr.strip()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


# --- 1. disk full, read-only, a folder that is a file; unexpected errors ------------------------------


def failing(errno_code: int):
    def fail(*args, **kwargs):
        raise OSError(errno_code, os.strerror(errno_code))
    return fail


def test_disk_full_during_export_is_one_line_exit_2_and_leaves_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(tamdeploy.files.os, "replace", failing(errno.ENOSPC))
    message = one_line(invoke("export", tiny[0], "-o", tmp_path / "m.onnx", "--no-verify"))
    assert f"cannot write {tmp_path / 'm.onnx'}" in message and "no space left on the device" in message
    assert list(tmp_path.iterdir()) == []


def test_disk_full_under_json_prints_json_on_stdout(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(tamdeploy.files.os, "replace", failing(errno.ENOSPC))
    result = invoke("export", tiny[0], "-o", tmp_path / "m.onnx", "--no-verify", "--json")
    assert result.exit_code == 2
    assert result.json()["exit_code"] == 2 and "no space left" in result.json()["error"]


def test_demo_into_a_read_only_file_system_or_onto_a_file(tmp_path, monkeypatch):
    existing = tmp_path / "a_file"
    existing.write_text("not a folder")
    assert "it is a file" in one_line(invoke("demo", "-d", existing))
    monkeypatch.setattr(Path, "mkdir", failing(errno.EROFS))
    message = one_line(invoke("demo", "-d", tmp_path / "new"))
    assert "read-only file system" in message and "create the folder" in message


def test_an_unexpected_error_is_one_line_and_exit_3_and_the_traceback_under_debug(tiny, monkeypatch):
    import tamdeploy.models.checkpoints as checkpoints

    def bug(*args, **kwargs):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(checkpoints, "load_torch_file", bug)
    message = one_line(invoke("inspect", tiny[0]), code=3)
    assert "internal error: RuntimeError: something nobody planned for" in message and "--debug" in message
    debug = invoke("--debug", "inspect", tiny[0])
    assert debug.exit_code == 3 and "Traceback" in debug.stderr and "RuntimeError" in debug.stderr


# --- 2. permissions ---------------------------------------------------------------------------------


def test_outputs_get_the_permissions_open_would_give(tiny, tmp_path):
    old = os.umask(0o022)
    try:
        result = invoke("export", tiny[0], "-o", tmp_path / "m.onnx", "--no-verify")
        assert result.exit_code == 0, result.stderr
        model = create_model("tsn_r50", width=0.25, num_segments=T, num_classes=5, input_size=SIZE)
        save_checkpoint(model, None, tmp_path / "c.pth")
    finally:
        os.umask(old)
    for name in ("m.onnx", "c.pth"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


# --- 3. Ctrl-C ---------------------------------------------------------------------------------------


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import tamdeploy.exporters.pipeline as pipeline

    marker = Path(sys.argv[1])

    def slow_parity(*args, **kwargs):
        marker.write_text("parity started")
        time.sleep(60)

    pipeline.check_export_parity = slow_parity
    from tamdeploy.cli.app import run
    sys.argv = ["tamdeploy", *sys.argv[2:]]
    run()
""")


def test_ctrl_c_during_parity_leaves_no_model_and_says_so(tiny, tmp_path):
    marker, out = tmp_path / "started", tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), "export", str(tiny[0]), "-o", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), child.communicate(timeout=10)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert "interrupted; nothing written" in stderr and "Traceback" not in stderr
    assert list(out.parent.iterdir()) == []  # neither the unverified model nor its temp file


# --- 4. verify of a file against itself ---------------------------------------------------------------


def test_verify_refuses_to_compare_a_checkpoint_with_itself(tiny, tmp_path):
    ckpt = tiny[0]
    assert "same file" in one_line(invoke("verify", ckpt, "--ckpt", ckpt))
    copy = tmp_path / "copy.pth"
    copy.write_bytes(ckpt.read_bytes())
    assert "same file (same sha256)" in one_line(invoke("verify", copy, "--ckpt", ckpt))


# --- 5. (JSON errors: above and in test_disk_full_under_json...) 6-7. bench --------------------------------


class Erratic(Runner):
    """Every third call takes 8x as long: the spread a busy machine gives."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls = 0

    def activate_impl(self) -> None:
        pass

    def input_specs_impl(self):
        return [TensorSpec("video", (None, T, 3, 8, 8), np.dtype(np.float32))]

    def output_names_impl(self):
        return ["logits"]

    def infer_impl(self, feed):
        self.calls += 1
        time.sleep(0.016 if self.calls % 3 == 0 else 0.002)
        return {"logits": np.zeros((feed["video"].shape[0], 2), np.float32)}

    def deactivate_impl(self) -> None:
        pass


def test_bench_warns_when_the_spread_says_the_machine_was_busy_and_shows_the_input():
    report = run_benchmark([("erratic", Erratic("erratic"))], [2], warmup=1, iters=12, settle=0, progress=False)
    markdown = report.to_markdown()
    assert "input: video [N, 4, 3, 8, 8] (T=4, 8x8), batch 2" in markdown
    assert "1 warm-up round," in markdown and "12 iterations" in markdown
    assert any("the machine was busy" in w for w in report.warnings) and "**warning**" in markdown
    assert report.to_dict()["warnings"] == report.warnings
    assert "memory growth MB" in markdown and "memory_growth_mb" in report.to_dict()["runners"][0]


def test_noise_limits():
    quiet = LatencyStats(10, 11, 11, 14, 15, 16, 18, 1)
    assert noise_warning(quiet) is None
    assert "p90 is 2.5x" in noise_warning(LatencyStats(10, 15, 12, 25, 26, 30, 31, 5))
    assert "median is 1.6x" in noise_warning(LatencyStats(10, 16, 16, 19, 20, 20, 20, 3))


# --- 8. export progress ----------------------------------------------------------------------------------


def test_export_names_each_stage_as_it_starts(tiny, tmp_path):
    seen: list[str] = []
    export_checkpoint(tiny[0], tmp_path / "a.onnx", stage=seen.append)
    assert [s.split(" ")[0] for s in seen] == ["loading", "exporting", "checking"]
    seen.clear()
    export_checkpoint(tiny[0], tmp_path / "b.onnx", stage=seen.append, verify=False)
    assert [s.split(" ")[0] for s in seen] == ["loading", "exporting"]


# --- 10. small slips ---------------------------------------------------------------------------------------


def test_the_pass_criteria_read_as_people_say_them(tiny):
    result = invoke("verify", tiny[1], "--ckpt", tiny[0], "--samples", "2")
    assert result.exit_code == 0, result.stderr
    assert "identical top-5 for every sample" in result.stdout and ">= 1" not in result.stdout


def test_errors_after_a_progress_bar_have_no_blank_line(tiny, tmp_path):
    (tmp_path / "broken.mp4").write_text("not a video")
    result = invoke("verify", tiny[1], "--ckpt", tiny[0], "--data", tmp_path)
    assert result.exit_code == 2 and "\n\n" not in result.stderr and result.stderr.count("skipped") == 1


def test_inspect_says_when_the_input_size_is_a_default(tmp_path):
    model = randomize_(create_model("tanet_r50", width=0.25, num_segments=T, num_classes=6, input_size=SIZE))
    ckpt = save_mmaction2(model.state_dict(), tmp_path / "mm.pth")
    report = invoke("inspect", ckpt, "--json").json()
    assert report["input_size"] == 224 and report["input_size_source"] == "default"
    assert "224 (default: the weights do not record it" in invoke("inspect", ckpt).stdout


# --- 11. a network tamdeploy does not build ---------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)


def resnet18_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ResNet-18 key names and shapes (stem, 2 BasicBlocks per stage, fc)."""
    net = nn.Module()
    net.conv1, net.bn1 = nn.Conv2d(3, 64, 7, bias=False), nn.BatchNorm2d(64)
    for i, width in enumerate((64, 128, 256, 512), start=1):
        setattr(net, f"layer{i}", nn.Sequential(BasicBlock(width, width), BasicBlock(width, width)))
    net.fc = nn.Linear(512, 1000)
    return net.state_dict()


def test_a_torchvision_resnet18_is_refused_with_the_way_forward(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state_dict(), path)
    message = one_line(invoke("inspect", path))
    assert "BasicBlocks (ResNet-18/34)" in message and "--model path/to/file.py:factory" in message
    assert "--model path/to/file.py:factory" in one_line(invoke("export", path))


# --- 12. one rule for what a checkpoint is --------------------------------------------------------------


def test_a_pth_tar_checkpoint_works_in_every_command(tiny, tmp_path):
    tar = tmp_path / "tanet.pth.tar"
    tar.write_bytes(tiny[0].read_bytes())
    assert invoke("inspect", tar).exit_code == 0
    verdict = invoke("verify", tiny[1], "--ckpt", tar, "--samples", "2")
    assert verdict.exit_code == 0, verdict.stderr
    bench = invoke("bench", tar, tiny[1], "--batch", "1", "--iters", "2", "--warmup", "0", "--settle-ms", "0",
                   "--json")
    assert bench.exit_code == 0, bench.stderr
    assert [r["backend"] for r in bench.json()["runners"]][0].startswith("pytorch")
    exported = invoke("export", tar, "--no-verify", "--json")
    assert exported.exit_code == 0 and exported.json()["output"] == str(tmp_path / "tanet.onnx")  # not tanet.pth.onnx


def test_checkpoints_are_told_by_content_when_the_suffix_says_nothing(tiny, tmp_path):
    odd = tmp_path / "weights.model"
    odd.write_bytes(tiny[0].read_bytes())
    assert is_checkpoint_file(odd) and is_checkpoint_file(tmp_path / "x.pth.tar")
    assert not is_checkpoint_file(tiny[1]) and not is_checkpoint_file(tmp_path / "missing.model")
    legacy = tmp_path / "legacy.weights"
    torch.save({"w": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    assert is_checkpoint_file(legacy)


@pytest.mark.parametrize(("args", "needle"), [
    (("verify", "model.xml", "--json"), "Missing option '--ckpt'"),
    (("bench", "model.xml", "--streams", "abc", "--json"), "Invalid value for '--streams'"),
    (("build", "model.onnx", "--precision", "fp16", "--json"), "No such option: --precision"),
    (("export", "--bogus"), "No such option: --bogus (see `tamdeploy export --help`)"),
])
def test_a_usage_mistake_is_one_line_and_under_json_one_line_of_json_on_stdout(args, needle):
    """What the option parser refuses is an error like any other: one line on stderr (not a box of help),
    and with --json, a script reads JSON."""
    exe = Path(sys.executable).with_name("tamdeploy")
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    (message,) = result.stderr.strip().splitlines()
    assert message.startswith("error: ") and needle in message
    if "--json" in args:
        (line,) = result.stdout.splitlines()
        assert json.loads(line)["exit_code"] == 2 and f"error: {json.loads(line)['error']}" == message
    else:
        assert result.stdout == ""


def test_an_error_of_several_lines_is_printed_as_one(tiny, monkeypatch):
    """Runtimes raise multi-line texts (OpenVINO: a source location, then the reason)."""
    import tamdeploy.deploy.bench.setup as setup

    def raise_multiline(*args, **kwargs):
        raise TamdeployError("Exception from src/core/src/model.cpp:758:\nInput for tensor name 'x' is not found.\n")

    monkeypatch.setattr(setup, "build_runners", raise_multiline)
    result = invoke("bench", tiny[1], "--json")
    assert result.exit_code == 2
    assert result.stdout.count("\n") == 1 and len(result.stderr.strip().splitlines()) == 1
    expected = "Exception from src/core/src/model.cpp:758: Input for tensor name 'x' is not found."
    assert result.json()["error"] == expected


def test_serving_commands_refuse_what_they_would_ignore_or_misread(tiny, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    client = invoke("client", "http://127.0.0.1:1", folder)
    assert client.exit_code == 2 and "is a folder; the client sends video files" in client.stderr
    server = invoke("bench", "--server", "http://127.0.0.1:1", "--duration", "4", "--batch", "4")
    assert server.exit_code == 2 and "--batch and --duration do not apply with --server" in server.stderr
    package = invoke("package", tiny[1], "--triton", tmp_path / "repo", "--labels", tmp_path / "labels.txt")
    assert package.exit_code == 2 and "add --preprocess" in package.stderr and not (tmp_path / "repo").exists()
    top_k = invoke("package", tiny[1], "--triton", tmp_path / "repo", "--top-k", "3")
    assert top_k.exit_code == 2 and "--top-k shape what the video ensemble returns: add --preprocess" in top_k.stderr
    no_requests = invoke("bench", "--server", "http://127.0.0.1:1", "--iters", "0")
    assert no_requests.exit_code == 2 and "--iters (requests per client) must be at least 1" in no_requests.stderr
    (tmp_path / "labels.txt").write_text("a\nb\n")
    text = invoke("package", tmp_path / "labels.txt", "--triton", tmp_path / "repo")
    assert text.exit_code == 2 and "labels.txt is not a model to serve: give a tamdeploy .onnx" in text.stderr


# --- a second newcomer's run (session 6): outputs over inputs, flags checked before the work ------------


def test_bench_never_plots_over_an_artifact_and_writes_the_format_its_suffix_names(tiny, tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(tiny[1].read_bytes())
    over = invoke("bench", onnx_file, "--iters", 1, "--batch", 1, "--plot", onnx_file)
    assert one_line(over).endswith("which writing would destroy; choose another output path")
    assert onnx_file.read_bytes() == tiny[1].read_bytes()
    assert "name it .png, .svg or .pdf" in one_line(invoke("bench", onnx_file, "--plot", tmp_path / "p.txt"))
    svg = invoke("bench", onnx_file, "--iters", 2, "--warmup", 0, "--batch", 1, "--plot", tmp_path / "p.svg")
    assert svg.exit_code == 0, svg.stderr
    assert b"<svg" in (tmp_path / "p.svg").read_bytes()[:1000]


@pytest.mark.parametrize(("args", "needle"), [
    (("bench", "{onnx}@foo"), "unknown backend 'foo' in "),
    (("bench", "{onnx}", "--settle-ms", "-5"), "--settle-ms must be 0-10000 (ms), got -5"),
    (("inspect", "{ckpt}", "--system"), "--system describes this machine: give it alone"),
    (("inspect", "{onnx}", "--num-segments", "8"), "--num-segments apply to checkpoints; tiny.onnx records"),
    (("demo", "--seconds", "0", "--dir", "{tmp}/demo"), "--seconds must be > 0, got 0"),
    (("verify", "{onnx}", "--ckpt", "{ckpt}", "--ov-precision", "bf16"),
     "--ov-precision only apply to OpenVINO: add --backend openvino to run tiny.onnx there"),
    (("inspect", "{tmp}/m.xml"), "m.xml is an OpenVINO IR: inspect reads checkpoints and .onnx exports"),
    (("predict", "{onnx}", "{onnx}", "--threads", "0"), "--threads must be at least 1, got 0"),
    (("bench", "{onnx}@tensorrt"), "build a TensorRT engine from it first (tamdeploy build tiny.onnx --target "
                                   "tensorrt)"),
])
def test_flags_are_checked_before_the_work_and_named_as_typed(tiny, tmp_path, args, needle):
    names = {"onnx": tiny[1], "ckpt": tiny[0], "tmp": tmp_path}
    result = invoke(*(a.format(**names) for a in args))
    assert needle in one_line(result)
    assert not (tmp_path / "demo").exists()


def test_bench_keeps_the_t_a_checkpoints_tam_weights_fix_and_says_the_inputs_differ(tiny, tmp_path):
    """The ONNX model's T is only a default for checkpoints: TAM weights trained for T=8 run at T=8."""
    t8 = save_checkpoint(create_model("tanet_r50", width=0.25, num_segments=8, num_classes=5, input_size=SIZE),
                         None, tmp_path / "t8.pth")
    result = invoke("bench", tiny[1], t8, "--iters", 2, "--warmup", 0, "--batch", 1, "--settle-ms", 0, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["input"].startswith("differs per runner: tiny.onnx: video [N, 4, 3, 32, 32] (T=4, 32x32); "
                                      "t8.pth: video [N, 8, 3, 32, 32] (T=8, 32x32)")
    assert report["warnings"][0].startswith("the runners take different inputs")


def test_a_reader_that_goes_away_is_exit_141_without_a_word():
    """`tamdeploy inspect --system | head -1`: rich used to exit 1 ("parity failed") on the closed pipe."""
    exe = Path(sys.executable).with_name("tamdeploy")
    process = subprocess.Popen([str(exe), "inspect", "--system"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before it writes: its first write meets a closed pipe
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141, stderr
    assert stderr == ""
