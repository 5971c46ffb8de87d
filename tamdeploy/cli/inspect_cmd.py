"""tamdeploy inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import JsonOption, TrustOption, user_errors
from tamdeploy.console import key_value_table, out, print_json, warn
from tamdeploy.errors import TamdeployError


@user_errors
def inspect(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A .pt/.pth checkpoint (TANet, mmaction2, ACTION-Net, senet.pytorch or tamdeploy format), or an "
             ".onnx that 'tamdeploy export' or 'build' wrote.")] = None,
    system: Annotated[bool, typer.Option(
        "--system", help="Show this machine instead: the CPU's instruction sets that decide which precision "
                         "pays off (AVX2, AVX-512, VNNI, BF16, AMX), the runtimes installed, and advice.")] = False,
    arch: Annotated[str | None, typer.Option(help="Architecture, when detection needs help.")] = None,
    num_segments: Annotated[int | None, typer.Option(help="Frames per clip (T).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Number of classes.")] = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Show what a checkpoint holds: layout, architecture, T, classes, parameters, input size; for an .onnx,
    what tamdeploy recorded in it (or, with --system, what this machine offers a deployed model)."""
    checkpoint_flags = [flag for flag, value in (("--arch", arch), ("--num-segments", num_segments),
                                                 ("--num-classes", num_classes)) if value is not None]
    if system:
        if checkpoint is not None or checkpoint_flags:
            raise TamdeployError("--system describes this machine: give it alone, or name a file without it")
        _inspect_system(json_output)
        return
    if checkpoint is None:
        raise TamdeployError("name a checkpoint to inspect, or pass --system to inspect this machine")
    built = {".xml": "an OpenVINO IR", ".plan": "a TensorRT engine", ".engine": "a TensorRT engine"}
    if checkpoint.suffix.lower() in built:
        raise TamdeployError(f"{checkpoint.name} is {built[checkpoint.suffix.lower()]}: inspect reads checkpoints "
                             f"and .onnx exports; the build's sidecar {checkpoint.name}.json says what it was "
                             f"built from and as")
    if checkpoint.suffix.lower() == ".onnx":
        if checkpoint_flags:  # an export records them; a flag here would be silently ignored
            raise TamdeployError(f"{', '.join(checkpoint_flags)} apply to checkpoints; {checkpoint.name} records "
                                 f"what it was exported with")
        _inspect_onnx(checkpoint, json_output)
        return
    from tamdeploy.models import load_checkpoint

    loaded = load_checkpoint(checkpoint, arch=arch, num_segments=num_segments, num_classes=num_classes,
                             trust_checkpoint=trust_checkpoint)
    cfg = loaded.config
    report = {
        "checkpoint": str(checkpoint),
        "layout": loaded.layout,
        "arch": cfg.arch,
        "depth": cfg.depth,
        "width": cfg.width,
        "num_segments": cfg.num_segments,
        "num_classes": cfg.num_classes,
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "input_shape": ["N", *cfg.input_shape],
        "input_size": cfg.input_size,
        # only tamdeploy's own checkpoints record it; for the others it is the architecture's default
        "input_size_source": "checkpoint" if loaded.layout == "tamdeploy" else "default",
        "sha256": loaded.sha256,
        "warnings": list(loaded.warnings),
    }
    if json_output:
        print_json(report)
        return
    for w in loaded.warnings:
        warn(w)
    rows = [(k, v) for k, v in report.items() if k not in ("warnings", "input_size_source")]
    rows[rows.index(("parameters", report["parameters"]))] = ("parameters", f"{report['parameters']:,}")
    if report["input_size_source"] == "default":
        rows[rows.index(("input_size", cfg.input_size))] = (
            "input_size", f"{cfg.input_size} (default: the weights do not record it; export takes --input-size)")
    out.print(key_value_table(f"{checkpoint.name}", rows))


def _inspect_onnx(path: Path, json_output: bool) -> None:
    """An exported model: what its tamdeploy metadata says, its I/O and its graph's size (weights unread)."""
    from tamdeploy.deploy.build.graph import load_onnx
    from tamdeploy.exporters.metadata import read_metadata
    from tamdeploy.plugins.contract import tam_nodes

    model = load_onnx(path, load_weights=False)
    meta = read_metadata(model)

    def shape(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    report = {
        "model": str(path),
        "exported_by_tamdeploy": meta is not None,
        "arch": meta.config.arch if meta else None,
        "num_segments": meta.config.num_segments if meta else None,
        "num_classes": meta.config.num_classes if meta else None,
        "input_size": meta.config.input_size if meta else None,
        "precision": meta.precision if meta else None,
        "tam_op": meta.tam_op if meta else None,
        "checkpoint_sha256": meta.checkpoint_sha256 if meta else None,
        "inputs": {i.name: shape(i) for i in model.graph.input},
        "outputs": {o.name: shape(o) for o in model.graph.output},
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "nodes": len(model.graph.node),
        "tam_nodes": len(tam_nodes(model)),
        "bytes": path.stat().st_size,
    }
    if json_output:
        print_json(report)
        return
    if meta is None:
        warn(f"{path.name} carries no tamdeploy metadata: not written by 'tamdeploy export' (verify and predict "
             "need the checkpoint's config for it)")
    tensors = {key: "; ".join(f"{name} ({', '.join(map(str, dims))})" for name, dims in report[key].items())
               for key in ("inputs", "outputs")}
    rows = [(key, tensors.get(key, value)) for key, value in report.items()
            if value is not None and key != "exported_by_tamdeploy"]
    out.print(key_value_table(path.name, rows))


def _inspect_system(json_output: bool) -> None:
    from tamdeploy.system import system_info

    info = system_info()
    if json_output:
        print_json(info.to_dict())
        return
    runtimes = ", ".join(f"{name} {version}" for name, version in info.runtimes.items()) or "none"
    rows = [("CPU", info.cpu), ("logical cores", info.logical_cores), ("ISA", ", ".join(info.isa) or "unknown"),
            ("INT8 (VNNI/AMX)", "native" if info.has_vnni else "no"), ("BF16", "native" if info.has_bf16 else "no"),
            ("runtimes", runtimes), ("advice", info.advice())]
    out.print(key_value_table("this machine", rows))
