"""tamdeploy demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import JsonOption, user_errors
from tamdeploy.console import info, key_value_table, out, print_json
from tamdeploy.errors import TamdeployError


@user_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", "-d", help="Where the demo writes its files.")
                         ] = Path("tamdeploy-demo"),
    seconds: Annotated[float, typer.Option(help="Seconds of timed rounds per batch in the benchmark.")] = 5.0,
    backend: Annotated[str, typer.Option(
        help="onnxruntime, or openvino: verify the export on OpenVINO (read as it is) and add it to the "
             "benchmark (pip install \"tamdeploy[openvino]\").")] = "onnxruntime",
    json_output: JsonOption = False,
) -> None:
    """Run the whole job on a built-in example: build a small TANet, save a checkpoint, export it to
    ONNX, verify it against PyTorch on synthetic mp4 clips, and benchmark PyTorch vs ONNX Runtime
    (and OpenVINO with `--backend openvino`). CPU only, no downloads, about a minute on 2 cores."""
    from tamdeploy.deploy.demo import check_backend, run_demo
    from tamdeploy.files import make_output_dir

    if not seconds > 0:  # checked before the work, not at its last step
        raise TamdeployError(f"--seconds must be > 0, got {seconds:g}")
    check_backend(backend)  # before the folder: a wrong backend leaves nothing behind
    make_output_dir(directory)  # a folder that cannot be made is the one line, before any other output
    if not json_output:
        info(f"tamdeploy demo: writing to {directory}/")
    report = run_demo(directory, seconds=seconds, progress=not json_output, backend=backend)
    if json_output:
        print_json(report.to_dict())
    else:
        parity = report.export["parity"]["overall"]
        verify = report.verify
        rows = [
            ("directory", report.directory),
            *((f"step: {name}", f"{seconds:.1f} s") for name, seconds in report.steps.items()),
            ("export", f"{report.export['nodes']} nodes, {report.export['tam_nodes']} TAMAggregate nodes"),
            ("export parity", f"rel L2 {parity['rel_l2_error']:.2e}, cosine {parity['cosine_similarity']:.9f}, "
                              f"top-5 agreement {parity['top5_agreement']:.0%}"),
            (f"verify ({verify['runner']})", _verify_line(verify)),
            ("result", "PASS" if report.passed else "FAIL"),
        ]
        out.print(key_value_table("tamdeploy demo", rows))
        out.print(report.bench_markdown, markup=False, highlight=False)
        info(f"files: {', '.join(report.files.values())}")
    if not report.passed:
        raise typer.Exit(1)


def _verify_line(verify: dict) -> str:
    logits = verify["outputs"]["logits"]
    return (f"{verify['inputs']['samples']} decoded mp4 clips: rel L2 {logits['rel_l2_error']:.2e}, "
            f"top-1 agreement {logits['top1_agreement']:.0%}, {verify['verdict']}")
