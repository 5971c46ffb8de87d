"""tamdeploy package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import JsonOption, LabelsOption, user_errors
from tamdeploy.console import info, out, print_json
from tamdeploy.errors import DataError


@user_errors
def package(
    artifact: Annotated[Path, typer.Argument(help="A tamdeploy .onnx (any precision) or a TensorRT .plan.")],
    triton: Annotated[Path | None, typer.Option(
        help="Write a Triton Inference Server model repository here (created if missing; models already in it "
             "are kept).")] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: the artifact's name).")] = None,
    max_batch: Annotated[int, typer.Option(help="max_batch_size: the most clips Triton batches together.")] = 8,
    instances: Annotated[int, typer.Option(help="Model instances (instance_group count).")] = 1,
    queue_delay_us: Annotated[int, typer.Option(
        "--queue-delay-us", help="Dynamic batching: how long a request may wait for others, in microseconds.")] = 2000,
    preprocess: Annotated[bool, typer.Option(
        "--preprocess", help="Also a video-bytes ensemble NAME_video: an mp4 in, top-k labels out (decoding by "
                             "tamdeploy's own code in a Python-backend model).")] = False,
    labels: LabelsOption = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Labels the ensemble returns.")] = 5,
    json_output: JsonOption = False,
) -> None:
    """Package ARTIFACT for serving: `tamdeploy package model.onnx --triton repo/ --preprocess --labels labels.txt`.

    Every config.pbtxt is built and checked with Triton's own protobuf schema; each model folder appears
    in the repository complete or not at all. Serve it with `tamdeploy serve repo/` (this machine) or
    NVIDIA's Triton container (`tritonserver --model-repository repo/`).
    """
    from tamdeploy.deploy.serve.repository import PackageOptions, package_triton

    if triton is None:
        raise DataError("say where to write the repository: --triton REPO")
    ensemble_only = [flag for flag, given in (("--labels", labels is not None), ("--top-k", top_k != 5)) if given]
    if not preprocess and ensemble_only:
        raise DataError(f"{' and '.join(ensemble_only)} shape what the video ensemble returns: add --preprocess (the "
                        f"plain model returns logits)")
    result = package_triton(artifact, triton, PackageOptions(name=name, max_batch=max_batch, instances=instances,
                                                             queue_delay_us=queue_delay_us, preprocess=preprocess,
                                                             labels=labels, top_k=top_k))
    if json_output:
        print_json(result.to_dict())
        return
    out.print(f"Triton repository {result.repository}: " + ", ".join(result.models))
    info(f"serve it here with: tamdeploy serve {result.repository}")
