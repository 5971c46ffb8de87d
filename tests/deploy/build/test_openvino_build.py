"""``tamdeploy build --target openvino`` and the OpenVINO runner, through the CLI on small real networks
(TANet, ACTION-Net, SE-ResNet, TSN at width 0.25): the default export loads with no re-export, every
precision builds, runs and passes ``verify``; the runner's options; bad IRs and sidecars refused in one
line; OpenVINO missing says how to install it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.checkpoints import randomize_
from helpers.cli import invoke

from tamdeploy.deploy.runners import OnnxRuntimeRunner, OpenVINORunner, open_runner
from tamdeploy.deploy.runners.openvino_ir import IRMismatchError, sidecar_path
from tamdeploy.errors import BackendUnavailableError, TamdeployError
from tamdeploy.models import create_model, save_checkpoint
from tamdeploy.system import system_info

ARCHS = ("tanet_r50", "action_r50", "se_resnet50", "tsn_r50")
SIZE = 64
# OpenVINO f32 against ONNX Runtime / PyTorch: every network agrees to ~2e-7 (FP32's 1e-5 holds). ACTION-Net
# differed by 1e-3..1e-2 until the reader kept OpenVINO from fusing its motion excitation's offset into a
# last-axis ReduceSum (``deploy/runners/openvino_graph.py``): it is held to the same limit as the others.


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """arch -> (checkpoint, default ONNX export): TAMAggregate nodes with their function, as users have."""
    root = tmp_path_factory.mktemp("ov")
    out = {}
    for arch in ARCHS:
        video = arch != "se_resnet50"
        model = create_model(arch, width=0.25, num_classes=7, input_size=SIZE, **({"num_segments": 4} if video else {}))
        ckpt = save_checkpoint(randomize_(model, seed=3), None, root / f"{arch}.pth")
        result = invoke("export", ckpt, "--no-verify", "--json")
        assert result.exit_code == 0, result.stderr
        out[arch] = (ckpt, Path(result.json()["output"]))
    return out


def feed_for(runner, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    shape = (batch, *runner.input_shape[1:])
    return {runner.input_name: np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)}


def verify_json(artifact: Path, ckpt: Path, *extra: str) -> dict:
    """verify's report; exit 0 on PASS, 1 on FAIL (checked against the report's verdict)."""
    result = invoke("verify", artifact, "--ckpt", ckpt, "--samples", "8", "--threads", "1", *extra, "--json")
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    report = result.json()
    assert report["passed"] == (result.exit_code == 0)
    return report


@pytest.mark.parametrize("arch", ARCHS)
def test_the_default_export_runs_on_openvino_as_it_is(exported, arch):
    """No re-export: TAMAggregate nodes are converted while OpenVINO reads the file; FP32 parity with ONNX
    Runtime at batch 1 and 3 (the batch stays dynamic)."""
    _, onnx_path = exported[arch]
    assert arch not in ("tanet_r50", "action_r50") or any(
        n.op_type == "TAMAggregate" for n in onnx.load(str(onnx_path)).graph.node)
    with OpenVINORunner(onnx_path, threads=1) as ov, OnnxRuntimeRunner(onnx_path, threads=1) as ort:
        assert ov.precision == "fp32" and ov.inference_precision == "fp32"
        for batch in (1, 3):
            feed = feed_for(ov, batch, seed=batch)
            got, want = ov.infer(feed)["logits"], ort.infer(feed)["logits"]
            assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_build_run_and_verify_every_precision(exported, tmp_path, arch, precision):
    ckpt, onnx_path = exported[arch]
    flags = {"fp32": [], "bf16": ["--bf16"], "int8": ["--int8", "--calib", "random", "--calib-samples", "4"]}
    xml = tmp_path / f"model.{precision}.xml"
    result = invoke("build", onnx_path, "--target", "openvino", *flags[precision], "-o", xml, "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["target"] == "openvino" and report["openvino"]["xml_path"] == str(xml)
    sidecar = json.loads(sidecar_path(xml).read_text())
    assert sidecar["precision"] == precision and sidecar["config"]["arch"] == arch
    assert sidecar["weights"] == ("int8" if precision == "int8" else "fp32")
    if precision == "int8":
        assert sidecar["calibration"]["random"] and "random pixels" in result.stderr
    verdict = verify_json(xml, ckpt)
    expected = "fp32" if precision == "bf16" and not system_info().has_bf16 else precision
    assert verdict["precision"] == expected
    logits = verdict["outputs"]["logits"]
    if precision == "fp32":
        assert verdict["passed"] and logits["rel_l2_error"] < 1e-5
    elif precision == "bf16":
        # Random weights: ACTION-Net's bf16 cosine measured 0.9931-0.997 across runs of this same test (it failed
        # 1 in 3 at verify's 0.995), so the pipeline is checked here and the bf16 criterion itself on the trained
        # models (test_precision.py::test_openvino_bf16_agrees_with_fp32); top-1 likewise, random weights tie.
        assert logits["cosine_similarity"] >= 0.99
    else:  # random weights and random calibration: INT8 accuracy is the trained tests' business
        assert logits["cosine_similarity"] > 0.9


def dequantized_tam_inputs(graph_path: Path) -> tuple[int, int]:
    """(TAMAggregate nodes whose X comes from a DequantizeLinear, through ReLUs; all TAMAggregate nodes)."""
    graph = onnx.load(str(graph_path))
    producer = {out: n for n in graph.graph.node for out in n.output}
    tams = [n for n in graph.graph.node if n.op_type == "TAMAggregate"]
    fed = 0
    for node in tams:
        source = producer.get(node.input[0])
        while source is not None and source.op_type == "Relu":
            source = producer.get(source.input[0])
        fed += source is not None and source.op_type == "DequantizeLinear"
    return fed, len(tams)


def only_quantizers_read_tam_tensors(graph_path: Path) -> bool:
    """Whether the float tensors around each TAMAggregate, its output and the tensor its X dequantizes, are
    read by QuantizeLinear nodes only: the residual Add and the excitations read them dequantized."""
    graph = onnx.load(str(graph_path))
    producer = {out: n for n in graph.graph.node for out in n.output}
    readers: dict[str, list[str]] = {}
    for node in graph.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    tensors = []
    for node in (n for n in graph.graph.node if n.op_type == "TAMAggregate"):
        dequantize = producer[node.input[0]]
        assert dequantize.op_type == "DequantizeLinear"
        tensors += [node.output[0], producer[dequantize.input[0]].input[0]]
    return all(set(readers[t]) == {"QuantizeLinear"} for t in tensors)


def test_the_openvino_int8_graph_quantizes_action_nets_shift_input_and_output_and_the_onnx_runtime_one_does_not(
        exported, tmp_path):
    """OpenVINO then shifts, pools and adds the residual in INT8 (faster there); ONNX Runtime would pay two
    passes for each pair."""
    _, onnx_path = exported["action_r50"]
    calib = ["--int8", "--calib", "random", "--calib-samples", "4", "--json"]
    for_openvino = invoke("build", onnx_path, "--target", "openvino", "-o", tmp_path / "a.int8.xml", *calib)
    for_ort = invoke("build", onnx_path, "-o", tmp_path / "a.int8.onnx", *calib)
    assert for_openvino.exit_code == 0 and for_ort.exit_code == 0, for_openvino.stderr + for_ort.stderr
    ov_graph = Path(for_openvino.json()["onnx"])
    assert ov_graph == tmp_path / "a.int8.openvino.onnx"  # beside the IR, not the ONNX Runtime graph's name
    assert dequantized_tam_inputs(ov_graph) == (16, 16)
    assert only_quantizers_read_tam_tensors(ov_graph)
    fed, total = dequantized_tam_inputs(tmp_path / "a.int8.onnx")
    assert total == 16 and fed == 4  # only the first block of each stage, whose input a quantized conv shares


def test_openvino_backend_on_an_onnx_file_passes_verify_at_fp32(exported):
    ckpt, onnx_path = exported["tanet_r50"]
    verdict = verify_json(onnx_path, ckpt, "--backend", "openvino")
    assert verdict["passed"] and verdict["runner"].startswith("openvino")


def test_throughput_mode_splits_the_batch_and_returns_the_same_logits(exported, tmp_path):
    _, onnx_path = exported["tanet_r50"]
    with OpenVINORunner(onnx_path, threads=1) as latency:
        feed = feed_for(latency, 5)
        want = latency.infer(feed)["logits"]
    with OpenVINORunner(onnx_path, performance="throughput", streams=2) as throughput:
        assert throughput._requests == 2  # two streams: the batch of 5 goes out as 3 + 2
        got = throughput.infer(feed)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cache_dir_holds_the_compiled_model_and_serves_the_second_load(exported, tmp_path):
    _, onnx_path = exported["tsn_r50"]
    cache = tmp_path / "cache"
    with OpenVINORunner(onnx_path, cache_dir=cache) as first:
        want = first.infer(feed_for(first, 2))["logits"]
    blobs = sorted(cache.glob("*.blob"))
    assert blobs, "no compiled blob in the cache"
    with OpenVINORunner(onnx_path, cache_dir=cache) as second:
        got = second.infer(feed_for(second, 2))["logits"]
    assert sorted(cache.glob("*.blob")) == blobs  # read, not compiled and written again
    np.testing.assert_array_equal(got, want)


def test_runner_options_are_checked():
    with pytest.raises(TamdeployError, match="`precision` for OpenVINO must be one of fp32, bf16, fp16"):
        OpenVINORunner("m.onnx", precision="int4")
    with pytest.raises(TamdeployError, match="`performance` must be one of latency, throughput"):
        OpenVINORunner("m.onnx", performance="fast")
    with pytest.raises(TamdeployError, match="`streams` must be at least 1"):
        OpenVINORunner("m.onnx", streams=0)


def test_open_runner_routes_ir_and_onnx(exported, tmp_path):
    _, onnx_path = exported["tsn_r50"]
    assert isinstance(open_runner(onnx_path, "openvino", precision="bf16"), OpenVINORunner)
    assert isinstance(open_runner(onnx_path), OnnxRuntimeRunner)
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    assert isinstance(open_runner(xml), OpenVINORunner)
    with pytest.raises(TamdeployError, match="is an OpenVINO IR, which runs only on openvino"):
        open_runner(xml, "onnxruntime")
    with pytest.raises(TamdeployError, match="do not apply to the onnxruntime runner"):
        open_runner(onnx_path, precision="bf16")


# --- bad input ---------------------------------------------------------------------------------------


@pytest.fixture
def tsn_ir(exported, tmp_path) -> Path:
    xml = tmp_path / "tsn.xml"
    result = invoke("build", exported["tsn_r50"][1], "--target", "openvino", "-o", xml)
    assert result.exit_code == 0, result.stderr
    return xml


def one_line_error(*args) -> str:
    result = invoke(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().startswith("error:")
    return " ".join(result.stderr.split())


def test_an_ir_without_its_weights_is_refused(exported, tsn_ir):
    tsn_ir.with_suffix(".bin").unlink()
    message = one_line_error("verify", tsn_ir, "--ckpt", exported["tsn_r50"][0])
    assert "has no weights file tsn.bin beside it" in message


def test_a_sidecar_of_another_build_is_refused(exported, tsn_ir, tmp_path):
    other = tmp_path / "other.xml"
    assert invoke("build", exported["tanet_r50"][1], "--target", "openvino", "-o", other).exit_code == 0
    sidecar_path(tsn_ir).write_text(sidecar_path(other).read_text())
    message = one_line_error("verify", tsn_ir, "--ckpt", exported["tsn_r50"][0])
    assert "describes another build than tsn.xml" in message


def test_an_ir_from_a_newer_openvino_is_refused(exported, tsn_ir):
    sidecar = json.loads(sidecar_path(tsn_ir).read_text())
    sidecar["openvino_version"] = "2099.1.0"
    sidecar_path(tsn_ir).write_text(json.dumps(sidecar))
    with pytest.raises(IRMismatchError, match="written by OpenVINO 2099.1.0, newer than"), OpenVINORunner(tsn_ir):
        pass


def test_bf16_needs_the_openvino_target(exported):
    message = one_line_error("build", exported["tsn_r50"][1], "--bf16")
    assert "--bf16 is for --target openvino" in message


def test_interrupted_build_leaves_nothing_half_written(exported, tmp_path, monkeypatch):
    import openvino

    def broken_save(model, path, compress_to_fp16=True):
        Path(path).write_text("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(openvino, "save_model", broken_save)
    xml = tmp_path / "out.xml"
    with pytest.raises(KeyboardInterrupt):
        from tamdeploy.deploy.build.openvino import build_ir

        build_ir(exported["tsn_r50"][1], xml, precision="fp32")
    assert list(tmp_path.iterdir()) == []


def test_without_openvino_the_target_says_how_to_install_it(exported, tmp_path):
    code = ("import sys; sys.modules['openvino'] = None\n"
            "from tamdeploy.deploy.build import BuildOptions, build\n"
            "from tamdeploy.errors import BackendUnavailableError\n"
            f"try:\n    build({str(exported['tsn_r50'][1])!r}, BuildOptions(None, target='openvino'))\n"
            "except BackendUnavailableError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'OpenVINO is not installed: pip install "tamdeploy[openvino]"'
    assert not list(tmp_path.iterdir())


def test_the_runner_without_openvino_says_how_to_install_it(monkeypatch, exported):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "tamdeploy\[openvino\]"'):
        OpenVINORunner(exported["tsn_r50"][1]).activate()


def test_bench_measures_one_file_on_two_runtimes_and_names_the_cpu(exported):
    _, onnx_path = exported["tsn_r50"]
    result = invoke("bench", onnx_path, f"{onnx_path}@openvino", "--batch", "1", "--iters", "2", "--warmup", "1",
                    "--settle-ms", "0", "--ov-precision", "fp32", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [(r["label"], r["backend"]) for r in report["runners"]] == [
        ("tsn_r50.onnx", "onnxruntime-cpu"), ("tsn_r50.onnx@openvino", "openvino-cpu")]
    assert "memory_growth_mb" in report["runners"][0] and report["warnings"] is not None
    assert report["runners"][1]["precision"] == "fp32"
    assert report["environment"]["cpu_isa"] and report["environment"]["openvino"]


def test_the_openvino_path_never_imports_torch(exported, tmp_path):
    """Reading the default export (TAMAggregate converted on read), building an IR and benching it load
    OpenVINO and ONNX Runtime only: torch (1.5 s to import, 5 GB) is not needed on a CPU serving box."""
    xml = tmp_path / "tanet.xml"
    code = ("import sys\nfrom tamdeploy.cli.app import run\n"
            f"for argv in ([{str(exported['tanet_r50'][1])!r}, '--target', 'openvino', '-o', {str(xml)!r}],\n"
            f"             [{str(xml)!r}, '--backend', 'openvino', '--iters', '2', '--warmup', '1',\n"
            "              '--settle-ms', '0']):\n"
            "    sys.argv = ['tamdeploy', 'build' if len(argv) == 5 else 'bench', *argv]\n"
            "    try:\n        run()\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


# --- what a newcomer's first session found (each was an exit 3, a silent mistake or a lost file) ------------


def test_an_fp16_ir_builds_with_its_table_and_an_fp16_onnx_graph_runs_on_openvino(exported, tmp_path):
    """The FP16 IR's table has no FP16-graph rows; the FP16 ONNX graph (its input feeds a Cast, which OpenVINO
    names too) runs on OpenVINO by its input's own name."""
    ckpt, onnx_path = exported["tsn_r50"]
    result = invoke("build", onnx_path, "--target", "openvino", "--fp16", "-o", tmp_path / "m.fp16.xml")
    assert result.exit_code == 0, result.stderr
    assert "OpenVINO IR" in result.stdout and "kept in FP32" not in result.stdout
    graph = tmp_path / "m.fp16.onnx"
    assert invoke("build", onnx_path, "--fp16", "-o", graph).exit_code == 0
    verdict = verify_json(graph, ckpt, "--backend", "openvino")
    assert verdict["runner"] == "openvino-cpu" and verdict["precision"] == "fp16" and verdict["passed"]


def test_the_graph_of_an_ir_built_with_o_goes_beside_it(exported, tmp_path):
    """Two INT8 builds of one model with different -o must not share (and overwrite) one graph file."""
    _, onnx_path = exported["tsn_r50"]
    before = set(onnx_path.parent.iterdir())
    for name in ("a", "b"):
        result = invoke("build", onnx_path, "--target", "openvino", "--int8", "--calib", "random",
                        "--calib-samples", "2", "-o", tmp_path / f"{name}.xml", "--json")
        assert result.exit_code == 0, result.stderr
        assert result.json()["onnx"] == str(tmp_path / f"{name}.openvino.onnx")
        sidecar = json.loads(sidecar_path(tmp_path / f"{name}.xml").read_text())
        assert sidecar["onnx"]["path"] == str((tmp_path / f"{name}.openvino.onnx").resolve())
    assert set(onnx_path.parent.iterdir()) == before


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_an_ir_copied_without_its_sidecar_still_runs_as_what_it_was_built(exported, tmp_path, precision):
    """The IR carries its precision and tamdeploy's metadata itself: judged by the right criterion, the
    checkpoint's sha256 compared, not taken for FP32."""
    ckpt, onnx_path = exported["tanet_r50"]
    flags = ["--fp16"] if precision == "fp16" else ["--int8", "--calib", "random", "--calib-samples", "4"]
    built = tmp_path / "built" / "m.xml"
    built.parent.mkdir()
    assert invoke("build", onnx_path, "--target", "openvino", *flags, "-o", built).exit_code == 0
    copy = tmp_path / "m.xml"
    for suffix in (".xml", ".bin"):
        copy.with_suffix(suffix).write_bytes(built.with_suffix(suffix).read_bytes())
    with OpenVINORunner(copy) as runner, OpenVINORunner(built) as with_sidecar:
        assert runner.sidecar is None and with_sidecar.sidecar is not None and runner.config.arch == "tanet_r50"
        assert (runner.precision, runner.inference_precision) == (precision, with_sidecar.inference_precision)
    verdict = verify_json(copy, ckpt)
    assert verdict["precision"] == precision and verdict["precision_source"] == "metadata"
    assert verdict["checkpoint_matches_export"] is True


def test_files_openvino_cannot_read_are_one_line_with_the_reason(exported, tmp_path):
    ckpt, onnx_path = exported["tsn_r50"]
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    message = one_line_error("verify", text, "--ckpt", ckpt, "--backend", "openvino")
    assert "OpenVINO cannot read" in message and "notes.onnx" in message
    xml = tmp_path / "m.xml"
    assert invoke("build", onnx_path, "--target", "openvino", "-o", xml).exit_code == 0
    sidecar_path(xml).unlink()  # the sidecar's sha256 would refuse the damaged weights before OpenVINO reads them
    weights = xml.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    message = one_line_error("verify", xml, "--ckpt", ckpt)
    assert message == f"error: OpenVINO cannot read {xml}: Incorrect weights in bin file!"  # the reason, not the
    # source location that OpenVINO's text starts with


@pytest.mark.parametrize(("field", "value", "kind"), [
    ("files", "x", "an object"), ("openvino_version", 5, "a string"), ("calibration", "x", "an object"),
    ("metadata", [1], "an object"), ("format_version", "2", "a number")])
def test_a_hand_edited_sidecar_with_a_wrong_type_is_damaged(exported, tsn_ir, field, value, kind):
    sidecar = json.loads(sidecar_path(tsn_ir).read_text())
    sidecar[field] = value
    sidecar_path(tsn_ir).write_text(json.dumps(sidecar))
    message = one_line_error("verify", tsn_ir, "--ckpt", exported["tsn_r50"][0])
    assert f"is damaged (its '{field}' is" in message and f"not {kind})" in message


def test_openvino_options_are_checked_by_their_flag_names_and_ignored_ones_are_said(exported):
    _, onnx_path = exported["tsn_r50"]
    message = one_line_error("bench", f"{onnx_path}@openvino", "--ov-precision", "int8")
    assert "--ov-precision must be one of fp32, bf16, fp16, got 'int8'" in message and "--int8" in message
    result = invoke("bench", onnx_path, "--ov-precision", "bf16", "--batch", "1", "--iters", "1", "--warmup", "0")
    assert result.exit_code == 0 and "--ov-precision only apply to OpenVINO runners" in " ".join(result.stderr.split())


# --- a newcomer's second run (session 6) -------------------------------------------------------------


@pytest.mark.parametrize(("edit", "needle"), [
    ({"precision": "int8"}, "says tamdeploy.precision is 'int8', but tsn.xml itself says 'fp32'"),
    ({"inference_precision": "int4"}, "is damaged (its 'inference_precision' is 'int4')"),
    ({"format_version": 99}, "is of a newer tamdeploy (sidecar format 99"),
    ({"files": None}, "is damaged (no sha256 of the .xml and .bin"),
])
def test_an_edited_sidecar_cannot_change_how_the_ir_is_judged(exported, tsn_ir, edit, needle):
    sidecar = json.loads(sidecar_path(tsn_ir).read_text())
    sidecar.update(edit)
    sidecar_path(tsn_ir).write_text(json.dumps(sidecar))
    assert needle in one_line_error("verify", tsn_ir, "--ckpt", exported["tsn_r50"][0])


def test_an_edited_sidecar_cannot_change_how_videos_are_fed(exported, tsn_ir):
    sidecar = json.loads(sidecar_path(tsn_ir).read_text())
    config = json.loads(sidecar["metadata"]["tamdeploy.config"])
    config["mean"] = [0.0, 0.0, 0.0]
    sidecar["metadata"]["tamdeploy.config"] = json.dumps(config)
    sidecar_path(tsn_ir).write_text(json.dumps(sidecar))
    message = one_line_error("verify", tsn_ir, "--ckpt", exported["tsn_r50"][0])
    assert "says tamdeploy.config is" in message and "the sidecar was edited or is of another build" in message


@pytest.mark.parametrize(("args", "needle"), [
    (("--fp16", "-o", "{tmp}/m.pth"), "-o {tmp}/m.pth: target onnxruntime writes .onnx (got .pth)"),
    (("--target", "openvino", "-o", "{tmp}/F.XML"), "target openvino writes .xml (got .XML)"),
    (("--fp16", "--opt-level", "3", "--no-plugin"), "--opt-level, --no-plugin are TensorRT builder options"),
    (("--target", "openvino", "--int8", "--calib", "random", "-o", "{tmp}/K.xml"), "cannot write {tmp}/K.xml.json: "
                                                                                   "it is a directory"),
    (("--target", "openvino", "--int8", "--calib", "random", "-o", "{tmp}/nodir/x.xml"), "directory {tmp}/nodir "
                                                                                         "does not exist"),
])
def test_build_outputs_are_checked_before_calibrating(exported, tmp_path, monkeypatch, args, needle):
    import tamdeploy.deploy.build.pipeline as pipeline

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated before checking the output")

    monkeypatch.setattr(pipeline, "load_calibration", no_calibration)
    (tmp_path / "K.xml.json").mkdir()
    message = one_line_error("build", exported["tsn_r50"][1], *(a.format(tmp=tmp_path) for a in args))
    assert needle.format(tmp=tmp_path) in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["K.xml.json"]


def test_a_failed_ir_build_leaves_neither_ir_nor_its_int8_graph(exported, tmp_path, monkeypatch):
    import openvino

    def full_disk(*args, **kwargs):
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:1: No space left on device")

    monkeypatch.setattr(openvino, "save_model", full_disk)
    result = invoke("build", exported["tsn_r50"][1], "--target", "openvino", "--int8", "--calib", "random",
                    "-o", tmp_path / "m.xml")
    assert result.exit_code == 2  # after the warning that the calibration is random
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot write {tmp_path / 'm.xml'}")
    assert list(tmp_path.iterdir()) == []
