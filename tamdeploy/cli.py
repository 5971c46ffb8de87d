"""The ``tamdeploy`` command line. Each command parses its options and calls the library; errors a user
can cause print one line and exit 2 (``--debug`` shows the traceback)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer

from tamdeploy import __version__
from tamdeploy.console import error
from tamdeploy.errors import TamdeployError

app = typer.Typer(
    name="tamdeploy",
    help="Deploy SE / ACTION-Net / TANet (TAM) networks: PyTorch checkpoint -> ONNX -> TensorRT, "
    "with numerical parity checked and latency measured.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"tamdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
) -> None:
    _state["debug"] = debug


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn TamdeployError into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TamdeployError as e:
            if _state["debug"]:
                raise
            error(str(e))
            raise typer.Exit(e.exit_code) from None

    return wrapper


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
TrustOption = Annotated[bool, typer.Option(
    "--trust-checkpoint",
    help="Allow the checkpoint's pickle to run code (only for files you trust; off by default).")]


def run() -> None:
    """Console-script entry point."""
    app()


# each command module registers itself on ``app``
from tamdeploy.commands import bench_cmd, build_cmd, demo_cmd, export_cmd, inspect_cmd, verify_cmd  # noqa: E402,F401
