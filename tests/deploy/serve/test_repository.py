"""tamdeploy package --triton: repositories whose configs Triton's own protobuf reads, for ONNX and
TensorRT plans, the video ensemble, atomic writes, bad input; the serving path imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from helpers.cli import invoke

from tamdeploy.deploy.serve import repository
from tamdeploy.deploy.serve.repository import PackageOptions, model_config_pb2, package_triton, validate
from tamdeploy.errors import TamdeployError

pb = model_config_pb2()


def parse(path: Path):
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def test_onnx_repository_with_video_ensemble(tiny_onnx, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    result = invoke("package", tiny_onnx, "--triton", tmp_path / "repo", "--preprocess", "--labels", labels,
                    "--max-batch", "16", "--instances", "2", "--queue-delay-us", "500", "--top-k", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["models"] == ["tiny", "tiny_preprocess", "tiny_labels", "tiny_video"]
    repo = tmp_path / "repo"
    model = parse(repo / "tiny" / "config.pbtxt")
    assert (model.backend, model.max_batch_size, model.default_model_filename) == ("onnxruntime", 16, "model.onnx")
    assert [(t.name, list(t.dims), t.data_type) for t in model.input] == [("video", [4, 3, 32, 32], pb.TYPE_FP32)]
    assert [(t.name, list(t.dims)) for t in model.output] == [("logits", [5])]
    assert list(model.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    assert model.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.kind, g.count) for g in model.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 2)]
    assert model.parameters["num_segments"].string_value == "4"
    assert (repo / "tiny" / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()

    pre = parse(repo / "tiny_preprocess" / "config.pbtxt")
    assert pre.backend == "python" and pre.input[0].data_type == pb.TYPE_STRING
    assert json.loads(pre.parameters["model_config"].string_value)["num_segments"] == 4
    assert (repo / "tiny_preprocess" / "1" / "model.py").read_text().count("read_views") >= 1
    top = parse(repo / "tiny_labels" / "config.pbtxt")
    assert [list(o.dims) for o in top.output] == [[3], [3]]
    assert (repo / "tiny_labels" / "1" / "labels.txt").read_text() == "a\nb\nc\nd\ne\n"
    ensemble = parse(repo / "tiny_video" / "config.pbtxt")
    assert ensemble.platform == "ensemble"
    chain = [(s.model_name, dict(s.input_map), dict(s.output_map)) for s in ensemble.ensemble_scheduling.step]
    assert chain == [("tiny_preprocess", {"video_bytes": "video_bytes"}, {"video": "clip"}),
                     ("tiny", {"video": "clip"}, {"logits": "logits"}),
                     ("tiny_labels", {"logits": "logits"}, {"labels": "labels", "scores": "scores"})]
    assert "tiny_video" in (repo / "README.md").read_text()
    assert not list(tmp_path.glob(".repo-*"))  # no staging folder left beside it


def test_tensorrt_plan_repository_records_version_and_plugin(tiny_onnx, tmp_path):
    import onnx

    from tamdeploy.exporters.metadata import read_metadata

    config = read_metadata(onnx.load(str(tiny_onnx))).config.to_dict()
    plan = tmp_path / "tiny.plan"
    plan.write_bytes(b"not a real engine: packaging never opens it")
    plugin = {"namespace": "tamdeploy", "kind": "aot"}
    (tmp_path / "tiny.plan.json").write_text(json.dumps({
        "format": "tamdeploy-tensorrt-engine", "tensorrt_version": "10.13.0", "precision": "fp16", "tam_op": "plugin",
        "plugin": plugin, "config": config, "outputs": ["logits"],
        "profiles": [{"input": "video", "min": [1, 4, 3, 32, 32], "opt": [4, 4, 3, 32, 32],
                      "max": [8, 4, 3, 32, 32]}]}))
    package_triton(plan, tmp_path / "repo")
    model = parse(tmp_path / "repo" / "tiny" / "config.pbtxt")
    assert model.backend == "tensorrt" and model.default_model_filename == "model.plan"
    assert model.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert model.parameters["tensorrt_version"].string_value == "10.13.0"
    assert json.loads(model.parameters["tam_plugin"].string_value) == plugin
    assert "TensorRT 10.13.0" in (tmp_path / "repo" / "README.md").read_text()


def test_models_already_there_are_refused_and_a_failure_leaves_the_repository_as_it_was(tiny_onnx, tmp_path,
                                                                                         monkeypatch):
    package_triton(tiny_onnx, tmp_path / "repo")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = invoke("package", tiny_onnx, "--triton", tmp_path / "repo")
    assert result.exit_code == 2 and "already holds tiny" in result.stderr
    calls = []

    def failing(folder, *args):
        calls.append(folder)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(folder, *args)

    real = repository._model_folder
    monkeypatch.setattr(repository, "_model_folder", failing)
    with pytest.raises(OSError):
        package_triton(tiny_onnx, tmp_path / "repo", PackageOptions(name="other", preprocess=True))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("args,message", [
    ([], "--triton REPO"),
    (["--name", "no/slashes"], "model name"),
    (["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
    (["--instances", "0"], "--instances must be at least 1, got 0"),
    (["--preprocess", "--labels", "LABELS3"], "holds 3 names but the model has 5 classes"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_onnx, tmp_path, args, message):
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    args = [str(tmp_path / "three.txt") if a == "LABELS3" else a for a in args]
    triton = [] if not args and message == "--triton REPO" else ["--triton", tmp_path / "repo"]
    result = invoke("package", tiny_onnx, *triton, *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "repo" / "tiny").exists()


def test_a_top_k_above_the_class_count_is_said(tiny_onnx, tmp_path):
    result = invoke("package", tiny_onnx, "--triton", tmp_path / "repo", "--preprocess", "--top-k", "50")
    assert result.exit_code == 0, result.stderr
    assert "--top-k 50 is more than the model's 5 classes: the video ensemble returns all 5" in " ".join(
        result.stderr.split())


def test_foreign_onnx_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from tamdeploy.onnx_model import make_model

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    onnx.save(make_model(graph), str(tmp_path / "foreign.onnx"))
    result = invoke("package", tmp_path / "foreign.onnx", "--triton", tmp_path / "repo")
    assert result.exit_code == 2 and "no tamdeploy metadata" in result.stderr


def test_validation_catches_what_the_schema_cannot(tiny_onnx):
    io = repository.artifact_io(tiny_onnx)
    config = repository.model_config(io, "tiny", PackageOptions(max_batch=4))
    config.dynamic_batching.preferred_batch_size.append(8)
    with pytest.raises(TamdeployError, match="exceed max_batch_size 4"):
        validate(config)
    config = repository.model_config(io, "tiny", PackageOptions())
    config.input[0].dims[0] = 0
    with pytest.raises(TamdeployError, match="every dim must be >= 1"):
        validate(config)


def test_local_repository_runs_onnx_through_the_python_backend(tiny_onnx, tmp_path):
    from tamdeploy.deploy.serve.server import local_repository

    package_triton(tiny_onnx, tmp_path / "repo", PackageOptions(preprocess=True))
    local = local_repository(tmp_path / "repo", tmp_path / "work")
    model = parse(local / "tiny" / "config.pbtxt")
    assert model.backend == "python" and model.default_model_filename == "model.py"
    assert model.parameters["onnx_file"].string_value == "model.onnx"
    assert "onnxruntime" in (local / "tiny" / "1" / "model.py").read_text()
    assert parse(tmp_path / "repo" / "tiny" / "config.pbtxt").backend == "onnxruntime"  # the original is untouched


def test_a_repository_that_does_not_validate_is_one_line(tiny_onnx, tmp_path):
    from tamdeploy.deploy.serve.server import local_repository
    from tamdeploy.errors import DataError

    package_triton(tiny_onnx, tmp_path / "repo")
    config = tmp_path / "repo" / "tiny" / "config.pbtxt"
    config.write_text(config.read_text().replace("KIND_CPU", "KIND_TPU"))
    with pytest.raises(DataError, match="does not validate against Triton's model config"):
        local_repository(tmp_path / "repo", tmp_path / "work")
    with pytest.raises(DataError, match="holds no models"):
        local_repository(tmp_path / "work" / "repository" / "tiny" / "1", tmp_path / "other")


def test_serving_path_imports_no_torch(tiny_onnx, tmp_path):
    """package (from an ONNX file), the server's launcher, the client and the load generator, with torch
    made unimportable; the Python-backend models compile (they run in Triton's stub, not here)."""
    code = f"""
import sys, py_compile
sys.modules["torch"] = None
from importlib import resources
from tamdeploy.deploy.serve.repository import package_triton, PackageOptions
from tamdeploy.deploy.serve import server, client, load
from tamdeploy.deploy.inputs.clips import read_views
package_triton({str(tiny_onnx)!r}, {str(tmp_path / "repo")!r}, PackageOptions(preprocess=True))
for name in ("preprocess.py", "labels.py", "onnx_python.py"):
    source = resources.files("tamdeploy.deploy.serve.triton_models").joinpath(name)
    py_compile.compile(str(source), doraise=True)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
"""
    subprocess.run([sys.executable, "-c", code], check=True)
