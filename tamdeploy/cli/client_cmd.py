"""tamdeploy client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import JsonOption, user_errors
from tamdeploy.cli.tables import print_predictions
from tamdeploy.console import info, print_json, warn
from tamdeploy.errors import DataError, TamdeployError


@user_errors
def client(
    server: Annotated[str, typer.Argument(help="The server: http://HOST:8000 or grpc://HOST:8001.")],
    videos: Annotated[list[Path], typer.Argument(help="Video files to send (encoded, as they are).")],
    model: Annotated[str | None, typer.Option(
        help="The video ensemble to send them to (default: the server's only NAME_video model).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Label videos with a served model: each file goes, encoded, to the NAME_video ensemble (`tamdeploy
    package --preprocess`), which decodes, classifies and returns the top-k labels. KServe v2 over http or
    grpc; no PyTorch needed. A video the server cannot decode is named and the others go on.
    """
    from tamdeploy.deploy.serve.client import ServerClient

    for video in videos:
        if video.is_dir():
            raise DataError(f"{video} is a folder; the client sends video files as they are (label frame folders "
                            "with `tamdeploy predict`)")
        if not video.is_file():
            raise DataError(f"{video} does not exist")
    records = []
    with ServerClient(server) as connection:
        connection.check_ready()
        served = connection.models()
        ensembles = [m for m in served if m.endswith("_video")]
        if model is not None and model not in served:
            raise DataError(f"the server has no model {model!r}; its video ensembles: {', '.join(ensembles) or 'none'}")
        name = model or (ensembles[0] if len(ensembles) == 1 else None)
        if name is None:
            advice = "pick one with --model" if ensembles else "package the model with --preprocess"
            raise DataError(f"the server has {len(ensembles)} video ensembles ({', '.join(ensembles) or 'none'}); "
                            f"{advice}")
        for video in videos:
            try:
                result = connection.classify_video(name, video)
            except TamdeployError as e:
                records.append({"video": str(video), "top_k": [], "error": str(e)})
                continue
            labels = [x.decode() if isinstance(x, bytes) else str(x) for x in result["labels"][0]]
            records.append({"video": str(video), "error": None,
                            "top_k": [{"label": label, "score": round(float(score), 6)}
                                      for label, score in zip(labels, result["scores"][0], strict=True)]})
    failed = [r for r in records if r["error"]]
    if not json_output:
        print_predictions(records, len(records[0]["top_k"]) if records and records[0]["top_k"] else 1)
        for r in failed:
            warn(f"{r['video']}: {r['error']}")
        info(f"{len(records) - len(failed)} of {len(records)} video(s) labelled by {name}")
    if len(failed) == len(records):  # with --json the error alone: one JSON document, as predict
        raise DataError(f"the server labelled none of the {len(records)} video(s) (first: {failed[0]['error']})")
    if json_output:
        print_json({"server": server, "model": name, "predictions": records, "failed": len(failed)})
