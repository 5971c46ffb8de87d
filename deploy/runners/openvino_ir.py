"""OpenVINO plumbing that the IR builder (``deploy.build.openvino``) and the runner
(``openvino_runner``) share: importing OpenVINO with the install hint, a Core that reads tamdeploy's
ONNX exports (the TAMAggregate conversion extension registered), the precision hints, and the IR's
JSON sidecar (``model.xml.json``: what the IR was built from and how it must run).

An IR is ``model.xml`` (the graph) plus ``model.bin`` (the weights) beside it. The sidecar records both
files' sha256, so a sidecar left over from another build is refused rather than trusted, and the
OpenVINO version that wrote them: an IR from a newer OpenVINO may use ops this one cannot read.
Importing this module needs no OpenVINO.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from tamdeploy.deploy.runners.sidecar import read_sidecar_file, sidecar_path
from tamdeploy.errors import BackendUnavailableError, TamdeployError
from tamdeploy.files import sha256_file

INSTALL_HINT = 'OpenVINO is not installed: pip install "tamdeploy[openvino]"'
SIDECAR_FORMAT = "tamdeploy-openvino-ir"
SIDECAR_VERSION = 1
# what the runner reads from the sidecar, and the JSON type each must have
SIDECAR_FIELDS = {"format_version": int, "precision": str, "inference_precision": str, "openvino_version": str,
                  "files": dict,
                  "onnx": dict, "calibration": dict, "config": dict, "metadata": dict}
# tamdeploy's precision -> OpenVINO's INFERENCE_PRECISION_HINT
INFERENCE_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# OpenVINO keeps an ONNX model's metadata_props as the model's "framework" rt_info (also in the IR it
# saves); ``build_ir`` sets the IR's own precision there and adds the inference precision it was built for
FRAMEWORK_INFO = "framework"
PRECISION_KEY = "tamdeploy.precision"
INFERENCE_KEY = "tamdeploy.openvino_inference_precision"


class IRMismatchError(TamdeployError):
    """An IR whose files or sidecar do not belong together, or that this OpenVINO cannot read."""


def import_openvino() -> ModuleType:
    """The ``openvino`` module, or ``BackendUnavailableError`` with the install hint."""
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailableError(INSTALL_HINT) from e
    return openvino


def openvino_version() -> str:
    """OpenVINO's release version, ``2026.4.1`` (its full build string trimmed)."""
    return import_openvino().__version__.split("-")[0]


def tamdeploy_core(cache_dir: str | Path | None = None) -> Any:
    """An ``openvino.Core`` that reads tamdeploy's ONNX exports as they are (TAMAggregate converted by
    ``plugins.tam_openvino``), with the compiled-model cache in ``cache_dir`` when given."""
    ov = import_openvino()
    from tamdeploy.plugins.tam_openvino import tam_conversion_extension

    core = ov.Core()
    core.add_extension(tam_conversion_extension())
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(cache_dir)})
    return core


def openvino_message(e: BaseException) -> str:
    """OpenVINO's error text on one line: its exceptions start with a source location ("Exception from
    src/...:84:") and bury the reason in the lines after it ("Incorrect weights in bin file!")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Exception from src", "Check '"))] or lines
    text = "; ".join(dict.fromkeys(reasons)) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def read_model(core: Any, path: str | Path) -> Any:
    """``path`` (ONNX or IR) as an ``openvino.Model``, adapted to OpenVINO's CPU plugin
    (``openvino_graph.adapt_model``); a model OpenVINO cannot read is a one-line TamdeployError."""
    from tamdeploy.deploy.runners.openvino_graph import adapt_model

    try:
        model = core.read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError subclasses with multi-line texts
        raise TamdeployError(f"OpenVINO cannot read {path}: {openvino_message(e)}") from e
    adapt_model(model)
    return model


def embedded_info(model: Any) -> dict[str, str]:
    """The metadata an ``openvino.Model`` carries: tamdeploy's ONNX metadata_props and, in an IR that
    ``build_ir`` wrote, its precision and inference precision; empty for a model from elsewhere."""
    if not model.has_rt_info([FRAMEWORK_INFO]):
        return {}
    framework = model.get_rt_info()[FRAMEWORK_INFO]  # a dict of OVAny values
    return {key: value.astype(str) for key, value in framework.items()} if isinstance(framework, dict) else {}


def cpu_has_bf16(core: Any) -> bool:
    """Whether OpenVINO's CPU plugin runs BF16 natively here (else a bf16 hint runs in f32)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def weights_path(xml: str | Path) -> Path:
    return Path(xml).with_suffix(".bin")


def read_sidecar(xml: str | Path) -> dict | None:
    """The IR's sidecar, or None when there is none (one tamdeploy did not build)."""
    return read_sidecar_file(xml, SIDECAR_FORMAT, "OpenVINO IR", IRMismatchError, SIDECAR_FIELDS)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def check_ir(xml: str | Path, sidecar: dict | None, here_version: str) -> None:
    """Raise unless ``xml`` has its weights beside it and, when there is a sidecar, the sidecar describes
    these very files and an OpenVINO no newer than this one wrote them."""
    xml = Path(xml)
    weights = weights_path(xml)
    if not weights.is_file():
        raise IRMismatchError(f"{xml} has no weights file {weights.name} beside it: an IR is the .xml, its .bin and "
                              f"its .xml.json; copy them together, or rebuild with 'tamdeploy build'")
    if sidecar is None:
        return
    name = sidecar_path(xml).name
    if (sidecar.get("format_version") or 0) > SIDECAR_VERSION:
        raise IRMismatchError(f"{name} is of a newer tamdeploy (sidecar format {sidecar['format_version']}, this "
                              f"one reads {SIDECAR_VERSION}): upgrade tamdeploy or rebuild the IR here")
    for key in ("precision", "inference_precision"):
        if sidecar.get(key) not in (None, *INFERENCE_PRECISIONS, "int8"):
            raise IRMismatchError(f"{name} is damaged (its {key!r} is {sidecar[key]!r}); rebuild the IR with "
                                  f"'tamdeploy build'")
    files = sidecar.get("files") or {}
    if not files.get("xml_sha256") or not files.get("bin_sha256"):
        raise IRMismatchError(f"{name} is damaged (no sha256 of the .xml and .bin, so nothing ties it to "
                              f"{xml.name}); rebuild the IR with 'tamdeploy build', or delete the sidecar")
    for path, key in ((xml, "xml_sha256"), (weights, "bin_sha256")):
        if files[key] != sha256_file(path):
            raise IRMismatchError(f"{sidecar_path(xml).name} describes another build than {path.name} (sha256 "
                                  f"differs): the IR and its sidecar were not written together; rebuild with "
                                  f"'tamdeploy build'")
    built = sidecar.get("openvino_version") or ""
    if built and _release(built) > _release(here_version):
        raise IRMismatchError(f"{xml.name} was written by OpenVINO {built}, newer than the {here_version} here, "
                              f"which may not read its ops: upgrade OpenVINO or rebuild the IR here")


def check_sidecar_against_ir(xml: str | Path, sidecar: dict, embedded: dict[str, str]) -> None:
    """Raise where the sidecar says otherwise than the IR itself (``embedded_info``: the precision it was
    built as, and the ONNX model's tamdeploy metadata that ``build_ir`` saved into it): the sha256s tie the
    sidecar to the files, not its other fields, so an edited sidecar would otherwise decide silently how
    the IR is judged (``verify``'s criterion) and fed (``predict``'s mean and std)."""
    claims = {PRECISION_KEY: sidecar.get("precision"), INFERENCE_KEY: sidecar.get("inference_precision")}
    # the metadata's own precision is the ONNX model's (fp32); the IR's is the key above
    claims.update({k: v for k, v in (sidecar.get("metadata") or {}).items() if k != PRECISION_KEY})
    for key, claimed in claims.items():
        if claimed is not None and key in embedded and embedded[key] != str(claimed):
            raise IRMismatchError(f"{sidecar_path(xml).name} says {key} is {str(claimed)[:60]!r}, but {Path(xml).name} "
                                  f"itself says {embedded[key][:60]!r}: the sidecar was edited or is of another "
                                  f"build; rebuild the IR with 'tamdeploy build', or delete the sidecar")
