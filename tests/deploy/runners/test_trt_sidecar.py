"""The engine sidecar: what a build records, and how the runner refuses an engine built elsewhere."""


from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tamdeploy.deploy.build.engine import (
    DEFAULT_BATCH,
    BatchProfile,
    EngineBuildResult,
    layers_path,
    make_sidecar,
    resolve_profile,
)
from tamdeploy.deploy.runners.trt import (
    EngineMismatchError,
    check_plan,
    check_sidecar,
    read_sidecar,
    sidecar_path,
)

# --- sidecar ------------------------------------------------------------------------------------------------


def fake_result(tmp_path: Path, **kw) -> EngineBuildResult:
    engine = tmp_path / "model.plan"
    fields = dict(
        engine_path=engine, sidecar_path=sidecar_path(engine), layers_path=layers_path(engine),
        onnx_path=tmp_path / "model.onnx", onnx_sha256="ab" * 32, precision="fp16", tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
        profile=resolve_profile("video", ["N", 8, 3, 224, 224], None), tam_op="plugin-aot", tam_nodes=16,
        plugin_layers=16, engine_bytes=123, engine_sha256="cd" * 32, num_layers=200, build_seconds=12.3456,
        workspace_gb=4.0, opt_level=3, timing_cache=tmp_path / "timing.cache", timing_cache_loaded=False,
    )
    fields.update(kw)
    return EngineBuildResult(**fields)


def test_engine_artifact_paths():
    assert sidecar_path(Path("out/model.plan")) == Path("out/model.plan.json")
    assert layers_path(Path("out/model.plan")) == Path("out/model.layers.json")


def test_build_result_and_sidecar_are_json(tmp_path):
    result = fake_result(tmp_path)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["engine_path"].endswith("model.plan") and d["profile"]["max"][0] == DEFAULT_BATCH[2]
    assert d["tam_op"] == "plugin-aot" and d["build_seconds"] == 12.346
    sidecar = make_sidecar(result, outputs=["logits"], plugin={"aot": True})
    sidecar_path(result.engine_path).write_text(json.dumps(sidecar))
    read = read_sidecar(result.engine_path)
    assert read["tensorrt_version"] == "10.13.0.35" and read["gpu"]["compute_capability"] == "9.0"
    assert read["onnx"]["sha256"] == "ab" * 32 and read["precision"] == "fp16" and read["outputs"] == ["logits"]
    assert BatchProfile.from_dict(read["profiles"][0]) == result.profile
    assert read["engine"] == {"bytes": 123, "sha256": "cd" * 32}


def test_missing_and_damaged_sidecars(tmp_path):
    engine = tmp_path / "model.plan"
    assert read_sidecar(engine) is None
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineMismatchError, match="damaged"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(EngineMismatchError, match="not a tamdeploy engine sidecar"):
        read_sidecar(engine)


def test_check_sidecar_accepts_the_same_tensorrt_and_gpu(tmp_path):
    sidecar = make_sidecar(fake_result(tmp_path), outputs=["logits"])
    check_sidecar(sidecar, tmp_path / "model.plan", tensorrt_version="10.13.0.35", gpu_name="NVIDIA H100 80GB HBM3",
                  compute_capability="9.0")


@pytest.mark.parametrize(("trt_version", "gpu", "cc", "built", "here"), [
    ("10.14.1", "NVIDIA H100 80GB HBM3", "9.0", "TensorRT 10.13.0.35", "TensorRT 10.14.1"),
    ("10.13.0.35", "NVIDIA A100-SXM4-40GB", "8.0", "NVIDIA H100 80GB HBM3 (sm_90)", "NVIDIA A100-SXM4-40GB (sm_80)"),
    ("11.1.0", "NVIDIA L4", "8.9", "TensorRT 10.13.0.35 on NVIDIA H100 80GB HBM3 (sm_90)",
     "TensorRT 11.1.0 on NVIDIA L4 (sm_89)"),
])
def test_check_sidecar_refuses_another_tensorrt_or_gpu_in_one_line(tmp_path, trt_version, gpu, cc, built, here):
    result = fake_result(tmp_path)
    sidecar = make_sidecar(result, outputs=["logits"])
    with pytest.raises(EngineMismatchError) as raised:
        check_sidecar(sidecar, result.engine_path, tensorrt_version=trt_version, gpu_name=gpu, compute_capability=cc)
    message = str(raised.value)
    assert "\n" not in message
    assert f"model.plan was built for {built}; this machine has {here}" in message
    assert f"tamdeploy build {result.onnx_path}" in message


def test_check_plan_accepts_the_plan_the_sidecar_describes_and_refuses_another(tmp_path):
    plan = b"serialized engine"
    result = fake_result(tmp_path, engine_bytes=len(plan), engine_sha256=hashlib.sha256(plan).hexdigest())
    sidecar = make_sidecar(result, outputs=["logits"])
    check_plan(sidecar, result.engine_path, plan)
    for other in (plan + b"!", b"serialized engin!"):  # another size; the same size with other bytes
        with pytest.raises(EngineMismatchError) as raised:
            check_plan(sidecar, result.engine_path, other)
        message = str(raised.value)
        assert "\n" not in message and f"model.plan ({len(other)} bytes) is not the engine its sidecar" in message
        assert f"not written together (an interrupted build?): rebuild with 'tamdeploy build {result.onnx_path}'" \
            in message
