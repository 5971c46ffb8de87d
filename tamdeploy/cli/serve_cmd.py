"""tamdeploy serve."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer

from tamdeploy.cli.options import JsonOption, user_errors
from tamdeploy.console import info, out, print_json
from tamdeploy.errors import DataError


@user_errors
def serve(
    source: Annotated[Path | None, typer.Argument(
        help="A model repository (tamdeploy package --triton) or a tamdeploy .onnx, packaged on the fly with "
             "its video ensemble.")] = None,
    port: Annotated[int, typer.Option(help="HTTP port (KServe v2; 0: any free port).")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: any free port).")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (0: any free port).")] = 8002,
    host: Annotated[str, typer.Option(help="Address to listen on. Keep 127.0.0.1 unless others must reach it.")
                    ] = "127.0.0.1",
    env: Annotated[Path | None, typer.Option(
        help="The server's environment (default: $TAMDEPLOY_TRITON_ENV or ~/.cache/tamdeploy/triton-env).")] = None,
    setup: Annotated[bool, typer.Option(
        "--setup", help="Create the server's environment (downloads nvidia-pytriton's tritonserver, numpy<2, "
                        "onnxruntime, PyAV; once) and exit.")] = False,
    labels: Annotated[Path | None, typer.Option(help="Class names for an .onnx packaged on the fly.")] = None,
    instances: Annotated[int, typer.Option(
        help="Model instances for an .onnx packaged on the fly; the cores are shared among them (on 2 cores, 2 "
             "instances served 4 clients at 2.2x one client's rate, 1 instance at 1.3x but with lower latency).")
    ] = 1,
    json_output: JsonOption = False,
) -> None:
    """Serve a model with a real Triton Inference Server on this machine (no container): health at
    /v2/health/ready, metrics at :METRICS_PORT/metrics; Ctrl-C stops it and its children.

    The server is the tritonserver that the nvidia-pytriton wheel bundles, in its own environment
    (`tamdeploy serve --setup`, once): it runs ONNX models through ONNX Runtime inside its Python backend.
    """
    from tamdeploy.deploy.serve.server import (
        ServerEnvironment,
        TritonServer,
        default_environment,
        free_port,
        local_repository,
        setup_environment,
    )

    root = env or default_environment()
    if setup:
        environment = setup_environment(root, progress=not json_output)
        if json_output:
            print_json({"environment": str(root), "tritonserver": str(environment.binary)})
        else:
            out.print(f"Triton server environment ready at {root}")
        return
    if source is None:
        raise DataError("name a model repository or an .onnx to serve (or --setup to prepare the server)")
    environment = ServerEnvironment(root)
    environment.check()
    # the log outlives the scratch folder, so that an error can point at it; removed after a clean stop
    log_path = Path(tempfile.gettempdir()) / f"tamdeploy-serve-{os.getpid()}.log"
    with tempfile.TemporaryDirectory(prefix="tamdeploy-serve-") as scratch:
        workdir = Path(scratch)
        repository = _repository(source, workdir, labels, instances)
        server = TritonServer(local_repository(repository, workdir), environment, workdir,
                              port or free_port(), grpc_port or free_port(), metrics_port or free_port(), host,
                              log_path=log_path)
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            with server:
                ready = {"http": f"http://{server.http_url}", "grpc": f"grpc://{server.grpc_url}",
                         "metrics": server.metrics_url, "pid": server.process.pid,
                         "ready_seconds": round(server.ready_seconds, 2)}
                if json_output:
                    print_json(ready)
                else:
                    out.print(f"serving {source} on {ready['http']} and {ready['grpc']} (metrics {ready['metrics']}); "
                              "Ctrl-C stops it")
                while not stop.wait(0.5):
                    if server.process.poll() is not None:
                        raise DataError(f"tritonserver stopped by itself (code {server.process.returncode}): "
                                        f"{server.failure_line()} (log: {log_path})")
        except KeyboardInterrupt:
            info("stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)
        log_path.unlink(missing_ok=True)  # a clean stop (an error above keeps it)


def _repository(source: Path, workdir: Path, labels: Path | None, instances: int) -> Path:
    from tamdeploy.deploy.serve.repository import PackageOptions, package_triton

    if not source.exists():
        raise DataError(f"{source} does not exist")
    if source.is_dir():
        return source
    options = PackageOptions(preprocess=True, labels=labels, instances=instances)
    return package_triton(source, workdir / "packaged", options).repository
