"""OpenVINO IR (``model.xml`` + ``model.bin`` + ``model.xml.json``) from a tamdeploy ONNX graph.

The ONNX graph is read with the TAMAggregate conversion extension (``plugins.tam_openvino``), so the
default export goes in as it is; the INT8 IR comes from tamdeploy's own symmetric Q/DQ graph, which
OpenVINO's CPU plugin runs with its INT8 kernels (VNNI / AMX-INT8 where the CPU has them). Float
precision on OpenVINO is a property of the compiled model, not of the graph: BF16 and FP16 are
inference precision hints that the sidecar records and the runner applies; FP16 also stores the
weights in FP16 (half the file), while FP32 and BF16 IRs keep FP32 weights (``save_model`` would
otherwise compress them to FP16 by default, and FP32 would no longer be FP32).

The files are written into a temporary folder beside the output and moved into place weights first,
the sidecar last; the sidecar records both files' sha256, so a reader refuses an IR whose files do not
belong together (an interrupted build, a copy of one file only).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tamdeploy import __version__
from tamdeploy.deploy.runners.openvino_ir import (
    FRAMEWORK_INFO,
    INFERENCE_KEY,
    PRECISION_KEY,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    cpu_has_bf16,
    openvino_message,
    openvino_version,
    read_model,
    sidecar_path,
    tamdeploy_core,
    weights_path,
)
from tamdeploy.errors import TamdeployError
from tamdeploy.files import OutputError, check_writable, describe_write_error, sha256_file

# graph precision -> the inference precision the IR is built for
DEFAULT_INFERENCE = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "int8": "fp32"}


@dataclass
class IRBuildResult:
    xml_path: Path
    bin_path: Path
    sidecar_path: Path
    precision: str
    inference_precision: str
    openvino_version: str
    xml_bytes: int
    bin_bytes: int
    seconds: float
    warnings: list[str]

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("xml_path", "bin_path", "sidecar_path"):
            d[key] = str(d[key])
        d["seconds"] = round(self.seconds, 3)
        return d


def check_ir_output(out_xml: Path, inputs: list[Path]) -> Path:
    """The folder the IR goes to, once its three files (.xml, .bin, .xml.json) are known to be writable
    there: checked before calibrating, so that a mistake costs seconds, not the build."""
    if out_xml.suffix != ".xml":  # OpenVINO saves only a lower-case .xml
        raise TamdeployError(f"an OpenVINO IR is an .xml file (lower case, with its .bin beside it), got {out_xml}")
    for path in (weights_path(out_xml), sidecar_path(out_xml)):
        check_writable(path, inputs)
    return check_writable(out_xml, inputs)


def build_ir(onnx_path: str | Path, out_xml: str | Path, *, precision: str, meta: Any = None,
             calibration: dict | None = None) -> IRBuildResult:
    """Write the IR of ``onnx_path`` (an FP32 or INT8 tamdeploy graph) to ``out_xml`` and its ``.bin``.

    ``precision``: fp32, bf16, fp16 (hints on the FP32 graph) or int8 (the graph is the Q/DQ one);
    ``meta``: the ONNX model's tamdeploy metadata, copied into the sidecar; ``calibration``: how the
    INT8 ranges were calibrated (a random calibration is recorded and warned about)."""
    if precision not in DEFAULT_INFERENCE:
        raise TamdeployError(f"`precision` for OpenVINO must be one of {', '.join(DEFAULT_INFERENCE)}, "
                             f"got {precision!r}")
    onnx_path, out_xml = Path(onnx_path), Path(out_xml)
    directory = check_ir_output(out_xml, inputs=[onnx_path])
    started = time.perf_counter()
    ov_version = openvino_version()
    core = tamdeploy_core()
    inference = DEFAULT_INFERENCE[precision]
    warnings = []
    if inference == "bf16" and not cpu_has_bf16(core):
        warnings.append("this CPU has no native BF16: the IR is built, but OpenVINO will run it in f32 here "
                        "(it runs in BF16 on CPUs with AVX512-BF16 or AMX)")
    if calibration is not None and calibration.get("random"):
        warnings.append("the INT8 ranges were calibrated on random pixels: accuracy on real video is unknown; "
                        "rebuild with `calib=PATH` on real clips before deploying")
    model = read_model(core, onnx_path)
    # the IR says what it is without its sidecar too (a copy of the .xml and .bin only): the runner reads
    # these when the sidecar is missing, as it reads the rest of tamdeploy's metadata
    model.set_rt_info(precision, [FRAMEWORK_INFO, PRECISION_KEY])
    model.set_rt_info(inference, [FRAMEWORK_INFO, INFERENCE_KEY])

    import openvino as ov

    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_xml.name}.", dir=directory))
    except OSError as e:
        raise OutputError(describe_write_error(out_xml, e)) from e
    try:
        staged_xml = staging / out_xml.name
        try:
            ov.save_model(model, str(staged_xml), compress_to_fp16=precision == "fp16")
        except RuntimeError as e:  # OpenVINO reports a failed write (a full disk, say) as a RuntimeError
            free = shutil.disk_usage(staging).free
            room = f"; {free / 1e6:.0f} MB free on that disk" if free < 2 * onnx_path.stat().st_size else ""
            raise OutputError(f"cannot write {out_xml}: OpenVINO could not save the IR "
                              f"({openvino_message(e)}){room}") from e
        staged_bin = weights_path(staged_xml)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "tamdeploy_version": __version__,
            "openvino_version": ov_version,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "precision": precision,
            "inference_precision": inference,
            "weights": "fp16" if precision == "fp16" else ("int8" if precision == "int8" else "fp32"),
            "files": {"xml_sha256": sha256_file(staged_xml), "bin_sha256": sha256_file(staged_bin)},
            "onnx": {"path": str(onnx_path.resolve()), "sha256": sha256_file(onnx_path)},
            "calibration": calibration,
            "config": meta.config.to_dict() if meta is not None else None,
            "metadata": meta.to_metadata_props() if meta is not None else None,
        }
        xml_bytes, bin_bytes = staged_xml.stat().st_size, staged_bin.stat().st_size
        staged_sidecar = sidecar_path(staged_xml)
        staged_sidecar.write_bytes(json.dumps(sidecar, indent=2).encode())
        # all three are written before any is moved: a failure leaves no IR without its sidecar
        for staged, target in ((staged_bin, weights_path(out_xml)), (staged_xml, out_xml),
                               (staged_sidecar, sidecar_path(out_xml))):
            try:
                staged.replace(target)
            except OSError as e:
                raise OutputError(describe_write_error(target, e)) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return IRBuildResult(xml_path=out_xml, bin_path=weights_path(out_xml), sidecar_path=sidecar_path(out_xml),
                         precision=precision, inference_precision=inference,
                         openvino_version=ov_version, xml_bytes=xml_bytes, bin_bytes=bin_bytes,
                         seconds=time.perf_counter() - started, warnings=warnings)
