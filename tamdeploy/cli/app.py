"""The ``tamdeploy`` command line: the Typer app and the one list of its commands.

Each command lives in its own module (``*_cmd.py``), parses its options and calls the library; the
app registers them here, in the order ``--help`` lists them (the order of the workflow).
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

try:  # Typer >= 0.2x carries its own copy of click
    from typer._click.exceptions import Abort, ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import Abort, ClickException

from tamdeploy import __version__
from tamdeploy.cli.bench_cmd import bench
from tamdeploy.cli.build_cmd import build
from tamdeploy.cli.client_cmd import client
from tamdeploy.cli.demo_cmd import demo
from tamdeploy.cli.eval_cmd import eval
from tamdeploy.cli.export_cmd import export
from tamdeploy.cli.inspect_cmd import inspect
from tamdeploy.cli.options import fail, state, terminate_on_sigterm
from tamdeploy.cli.package_cmd import package
from tamdeploy.cli.predict_cmd import predict
from tamdeploy.cli.serve_cmd import serve
from tamdeploy.cli.verify_cmd import verify

COMMANDS = (inspect, export, build, verify, bench, predict, eval, package, serve, client, demo)

app = typer.Typer(
    name="tamdeploy",
    help="Deploy SE / ACTION-Net / TANet (TAM) networks: PyTorch checkpoint -> ONNX -> TensorRT / OpenVINO, "
    "with numerical parity checked, latency measured and accuracy on your own labelled videos.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # docstrings reflow to the terminal's width instead of keeping their breaks
    pretty_exceptions_enable=False,
    add_completion=False,
)
for command in COMMANDS:
    app.command()(command)


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
    state["debug"] = debug


def run() -> None:
    """Console-script entry point. A mistake that the option parser catches (an unknown option, a missing
    argument, a value of the wrong type) is one line and exit 2 like every other error, and one line of
    JSON on stdout too with --json."""
    json_output = "--json" in sys.argv[1:]
    signal.signal(signal.SIGTERM, terminate_on_sigterm)
    try:
        result = app(standalone_mode=False)
    except ClickException as e:
        message = e.format_message().strip().rstrip(".")
        if not message:  # `tamdeploy` alone: the help was the answer
            raise SystemExit(e.exit_code) from None
        context = getattr(e, "ctx", None)
        if context is not None:
            message += f" (see `{context.command_path} --help`)"
        raise SystemExit(fail(message, e.exit_code, json_output).exit_code) from None
    except Abort:  # typer.Abort or end of input; Ctrl-C outside a command is typer's own exit 130
        raise SystemExit(fail("aborted; nothing written", 1, json_output).exit_code) from None
    raise SystemExit(result if isinstance(result, int) else 0)
