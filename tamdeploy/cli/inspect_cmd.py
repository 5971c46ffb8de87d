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
        help="A .pt/.pth checkpoint (TANet, mmaction2, ACTION-Net, senet.pytorch or tamdeploy format).")] = None,
    system: Annotated[bool, typer.Option(
        "--system", help="Show this machine instead: the CPU's instruction sets that decide which precision "
                         "pays off (AVX2, AVX-512, VNNI, BF16, AMX), the runtimes installed, and advice.")] = False,
    arch: Annotated[str | None, typer.Option(help="Architecture, when detection needs help.")] = None,
    num_segments: Annotated[int | None, typer.Option(help="Frames per clip (T).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Number of classes.")] = None,
    trust_checkpoint: TrustOption = False,
    json_output: JsonOption = False,
) -> None:
    """Show what a checkpoint holds: layout, architecture, T, classes, parameters, input size (or, with
    --system, what this machine offers a deployed model)."""
    if system:
        _inspect_system(json_output)
        return
    if checkpoint is None:
        raise TamdeployError("name a checkpoint to inspect, or pass --system to inspect this machine")
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
