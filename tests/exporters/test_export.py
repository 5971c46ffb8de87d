"""``tamdeploy export``: every architecture and checkpoint layout to ONNX, parity on ONNX Runtime,
both TAM modes, determinism, user networks, and the bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import REPO_ROOT
from helpers.checkpoints import randomize_, save_layout, save_mmaction2
from helpers.cli import invoke

from tamdeploy.exporters.metadata import read_metadata
from tamdeploy.models import create_model, load_checkpoint, save_checkpoint
from tamdeploy.onnx_runtime import create_session

T = 4
SIZE = 64
USER_NET = REPO_ROOT / "tests" / "helpers" / "user_networks" / "official_tam_net.py"

# (arch, checkpoint layout, --tam-op): every architecture, every layout, both TAM modes
CASES = [
    ("tsn_r50", "tsn-official", "plugin"),
    ("tanet_r50", "mmaction2", "plugin"),
    ("tanet_r50", "tanet-official", "onnx"),
    ("action_r50", "action-net-official", "plugin"),
    ("action_r50", "tamdeploy", "onnx"),
    ("se_resnet50", "torchvision", "plugin"),
    ("tsn_r101", "tamdeploy", "plugin"),
    ("tanet_r101", "tamdeploy", "plugin"),
    ("action_r101", "tamdeploy", "plugin"),
    ("se_resnet101", "tamdeploy", "onnx"),
]


def small_model(arch: str):
    kw = {"width": 0.25, "num_classes": 7, "input_size": SIZE}
    if not arch.startswith("se_"):
        kw["num_segments"] = T
    return randomize_(create_model(arch, **kw), seed=3).eval()


def write_checkpoint(model, layout: str, path: Path) -> Path:
    if layout == "tamdeploy":
        return save_checkpoint(model, None, path)
    if layout == "mmaction2":
        return save_mmaction2(model.state_dict(), path)
    return save_layout(model.state_dict(), layout, path)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Each case exported once through the CLI; tests below read the results."""
    root = tmp_path_factory.mktemp("exports")
    done = {}
    for arch, layout, mode in CASES:
        model = small_model(arch)
        ckpt = write_checkpoint(model, layout, root / f"{arch}-{layout}.pth")
        out = root / f"{arch}-{layout}-{mode}.onnx"
        extra = ["--num-segments", T] if layout in ("action-net-official", "tsn-official") else []
        result = invoke("export", ckpt, "-o", out, "--tam-op", mode, "--input-size", SIZE, *extra, "--json")
        done[(arch, layout, mode)] = (model, ckpt, out, result)
    return done


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_export_passes_parity_at_batch_1_and_3(exports, case):
    model, _, out, result = exports[case]
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["parity"]["passed"] is True
    for batch in ("1", "3"):
        stats = report["parity"]["per_batch"][batch]
        assert stats["rel_l2_error"] <= 1e-5 and stats["top5_agreement"] == 1.0
        assert stats["cosine_similarity"] > 0.999999
    assert out.is_file() and report["output"] == str(out)


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_exported_graph_has_dynamic_batch_metadata_and_passes_checks(exports, case):
    arch, _, mode = case
    model, _, out, _ = exports[case]
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] >= 18
    # the least IR version the opsets need (8 for opset 18): ONNX Runtime 1.20 stops at IR 10
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import, ignore_unknown=True)
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    video = not arch.startswith("se_")
    assert inp.name == ("video" if video else "image")
    assert dims == (["batch", T, 3, SIZE, SIZE] if video else ["batch", 3, SIZE, SIZE])
    assert [o.name for o in proto.graph.output] == ["logits"]
    meta = read_metadata(proto)
    assert meta.config.arch == arch and meta.config.num_classes == 7 and meta.precision == "fp32"
    assert meta.config.num_segments == (T if video else None) and meta.config.input_size == SIZE
    custom = [n for n in proto.graph.node if n.domain == "tamdeploy"]
    if mode == "onnx" or arch.startswith(("tsn", "se_")):
        assert not custom and not proto.functions
    else:
        assert custom and all(n.op_type == "TAMAggregate" for n in custom)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in custom[0].attribute}
        assert attrs["num_segments"] == T and attrs["kernel_size"] == 3
        assert attrs["plugin_namespace"] == b"tamdeploy"
        (function,) = proto.functions
        assert (function.domain, function.name) == ("tamdeploy", "TAMAggregate")
        assert all(n.domain == "" for n in function.node)


def test_exported_model_runs_at_a_batch_it_was_not_traced_with(exports):
    model, _, out, _ = exports[("tanet_r50", "mmaction2", "plugin")]
    x = torch.randn(5, T, 3, SIZE, SIZE)
    got = create_session(out).run(None, {"video": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-5


def test_same_checkpoint_and_flags_give_a_byte_identical_file(exports, tmp_path):
    _, ckpt, first, _ = exports[("tanet_r50", "mmaction2", "plugin")]
    again = tmp_path / "again.onnx"
    result = invoke("export", ckpt, "-o", again, "--input-size", SIZE, "--no-verify", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["parity"] is None
    assert again.read_bytes() == first.read_bytes()


def test_checkpoint_sha256_travels_in_metadata(exports):
    _, ckpt, out, _ = exports[("se_resnet50", "torchvision", "plugin")]
    assert read_metadata(onnx.load(out)).checkpoint_sha256 == load_checkpoint(ckpt).sha256


def test_user_network_with_its_own_tam_class_exports(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_net", USER_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = randomize_(module.build(), seed=5)
    ckpt = tmp_path / "user.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    out = tmp_path / "user.onnx"
    result = invoke("export", ckpt, "--model", f"{USER_NET}:build", "-o", out, "--input-size", 32, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["parity"]["passed"] and report["rewritten_modules"] == 1 and report["custom_nodes"] == 1
    node = next(n for n in onnx.load(out).graph.node if n.domain == "tamdeploy")
    assert {a.name: a.i for a in node.attribute if a.name != "plugin_namespace"} == {
        "num_segments": 4, "kernel_size": 5}


def test_failed_parity_exits_1_and_says_so(tmp_path):
    ckpt = tmp_path / "drift.pth"
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_net_drift", USER_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.build_drifting().state_dict(), ckpt)
    result = invoke("export", ckpt, "--model", f"{USER_NET}:build_drifting", "-o", tmp_path / "d.onnx",
                    "--input-size", 32)
    assert result.exit_code == 1
    assert "parity FAILED" in result.stderr and "FAIL" in result.stdout


@pytest.fixture(scope="module")
def tanet_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "tanet.pth"
    return save_checkpoint(small_model("tanet_r50"), None, path)


def no_onnx_left(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if ".onnx" in p.name]


@pytest.mark.parametrize("args,message", [
    (["--arch", "resnet9000"], "unknown architecture"),
    (["--arch", "se_resnet50"], "se_resnet50"),
    (["--num-segments", "8"], "contradicts"),
    (["--input-size", "16"], "too small"),
    (["--tam-op", "magic"], "--tam-op"),
    (["--opset", "13"], "--opset"),
    (["--opset", "99"], "--opset must be 18-"),
    (["--model", "does_not_exist.py:build"], "does not exist"),
    (["--model", f"{USER_NET}:build_raising"], "build_raising() raised RuntimeError: boom"),
    (["--model", f"{USER_NET}:build"], "does not fit"),  # the TANet checkpoint's weights on the user's net
    (["-o", "blocker/x.onnx"], "blocker is a file, not a directory"),
    (["-o", "model.txt"], "--output model.txt must name an .onnx file"),
    (["--model", f"{USER_NET}:no_such_factory"], "no_such_factory"),
    (["--model", "no-colon-here"], "path/to/file.py:factory"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(tanet_ckpt, tmp_path, args, message, monkeypatch):
    (tmp_path / "blocker").write_text("a file where -o wants a folder")
    monkeypatch.chdir(tmp_path)
    result = invoke("export", tanet_ckpt, "-o", tmp_path / "out.onnx", "--input-size", SIZE, *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert no_onnx_left(tmp_path)


def test_a_video_network_without_temporal_modules_needs_its_t(tmp_path):
    ckpt = tmp_path / "plain.pth"
    torch.save(_user_module().build_plain_video().state_dict(), ckpt)
    result = invoke("export", ckpt, "--model", f"{USER_NET}:build_plain_video", "--input-size", 32, "--no-verify")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "failed on an input of shape [1, 3, 32, 32]" in result.stderr and "--num-segments" in result.stderr
    ok = invoke("export", ckpt, "--model", f"{USER_NET}:build_plain_video", "--input-size", 32, "--num-segments",
                3, "-o", tmp_path / "plain.onnx", "--json")
    assert ok.exit_code == 0 and ok.json()["input"]["shape"] == ["N", 3, 3, 32, 32], ok.stderr


def test_export_never_writes_over_its_checkpoint(tanet_ckpt, tmp_path):
    before = tanet_ckpt.read_bytes()
    result = invoke("export", tanet_ckpt, "-o", tanet_ckpt, "--no-verify", "--input-size", SIZE)
    assert result.exit_code == 2 and "must name an .onnx file" in result.stderr, result.stderr
    assert tanet_ckpt.read_bytes() == before


def _user_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_net_plain", USER_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unwritable_output_is_exit_2(tanet_ckpt, tmp_path, monkeypatch):
    missing_dir = tmp_path / "no" / "such" / "dir" / "m.onnx"
    result = invoke("export", tanet_ckpt, "-o", missing_dir, "--input-size", SIZE, "--no-verify")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    # root (as in CI) writes anywhere: the permission check answers as it would for a user
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (Path(path) != locked or not mode & os.W_OK)
                        and real_access(path, mode, **kw))
    result = invoke("export", tanet_ckpt, "-o", locked / "m.onnx", "--input-size", SIZE, "--no-verify")
    assert result.exit_code == 2 and f"directory {locked} is not writable" in result.stderr
    assert not list(locked.iterdir())


def test_missing_and_non_checkpoint_files_are_exit_2(tmp_path):
    assert invoke("export", tmp_path / "nope.pth").exit_code == 2
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    result = invoke("export", junk, "-o", tmp_path / "junk.onnx")
    assert result.exit_code == 2 and no_onnx_left(tmp_path)


def test_export_parity_judges_fp32_rounding_as_verify_does(tanet_ckpt, tmp_path, monkeypatch):
    """With the limit below what FP32 rounding does here (as large logits do at 1e-5), the export's check
    measures PyTorch FP32 against float64 and judges at 3x that, saying so, like verify."""
    from dataclasses import replace

    import tamdeploy.exporters.parity as parity

    monkeypatch.setattr(parity, "FP32", replace(parity.FP32, rel_l2_max=1e-12))
    result = invoke("export", tanet_ckpt, "-o", tmp_path / "m.onnx", "--input-size", SIZE, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()["parity"]
    assert report["passed"] and "from the same network in float64" in report["note"]
    limit = float(report["criterion"].split("<= ")[1].split(" ")[0])
    assert 1e-12 < limit < 1e-5 and report["overall"]["rel_l2_error"] <= limit
