"""What every command shares: the ``--json`` and ``--trust-checkpoint`` options and ``user_errors``,
which turns a ``TamdeployError`` into one line on stderr and its exit code (``--debug`` adds the traceback).

Commands import this module, never the app: the app imports the commands (one list, in ``app.py``),
so the import graph has no circle.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from tamdeploy.console import error, set_message_rewrite
from tamdeploy.errors import TamdeployError
from tamdeploy.files import written_outputs

# set by the app's callback from ``--debug``
state = {"debug": False}

# Library parameters whose flag is not the parameter's name with dashes.
FLAGS = {"model_spec": "--model", "precision=int8": "--int8", "precision=fp16": "--fp16", "precision=bf16": "--bf16",
         "workspace_gb": "--workspace"}
_PARAMETER = re.compile(r"`([a-z0-9_]+)(?:=([^`]*))?`")


def spoken_as_flags(message: str) -> str:
    """A library message with its `parameter` / `parameter=value` marks shown as this CLI's flags:
    `tam_op` -> --tam-op, `calib=PATH` -> --calib PATH, `precision=int8` -> --int8."""

    def flag(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        whole = f"{name}={value}" if value is not None else name
        if whole in FLAGS:
            return FLAGS[whole]
        text = FLAGS.get(name, "--" + name.replace("_", "-"))
        return text if value is None else f"{text} {value}"

    return _PARAMETER.sub(flag, message)


set_message_rewrite(spoken_as_flags)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
TrustOption = Annotated[bool, typer.Option(
    "--trust-checkpoint",
    help="Allow the checkpoint's pickle to run code (only for files you trust; off by default).")]


BackendOption = Annotated[str | None, typer.Option(
    help="pytorch, onnxruntime, openvino or tensorrt (default: from the artifact's suffix; an .onnx also runs on "
         "openvino).")]
LabelsOption = Annotated[Path | None, typer.Option(
    help="Class names: one per line (mmaction2's label map), a CSV with id,name, or a JSON list; default: indices.")]
ViewsOption = Annotated[str, typer.Option(
    help="Test views per video, CLIPSxCROPS: 1x1 (centre crop of TSN's centre frames), 3x3, 10x3 (clips evenly "
         "spaced in time; 3 crops along the longer side); their scores are averaged.")]
ThreadsOption = Annotated[int | None, typer.Option(
    help="Intra-op threads of the model's runtime (default: the runtime's; with decode workers on a small "
         "machine, fewer threads leave cores to decoding).")]
BatchOption = Annotated[int, typer.Option(help="Model inputs (views) per inference.")]
WorkersOption = Annotated[int | None, typer.Option(
    help="Decode processes running ahead of the model (default: the cores less one; 0 decodes in this process).")]

RayOption = Annotated[bool, typer.Option(
    "--ray", help="Run on a Ray cluster (Ray Data: decoding on CPU tasks, the model on an actor pool): the one at "
                  "--ray-address or RAY_ADDRESS, else a local Ray instance (pip install \"tamdeploy[ray]\").")]
RayAddressOption = Annotated[str | None, typer.Option(
    help="Ray cluster for --ray: host:port of its head (what `ray start --head` printed), or ray://host:10001.")]

OVPrecisionOption = Annotated[str | None, typer.Option(
    "--ov-precision", help="OpenVINO: inference precision fp32, bf16 or fp16 (default: what the IR was built "
                           "for, else fp32).")]
PerformanceOption = Annotated[str | None, typer.Option(
    help="OpenVINO: latency (one stream, every core on one request; default) or throughput (several "
         "streams; a batch is split across them).")]
StreamsOption = Annotated[int | None, typer.Option(help="OpenVINO: number of streams (default: the hint's).")]
CacheDirOption = Annotated[Path | None, typer.Option(
    help="OpenVINO: compiled-model cache folder, so that the next load skips compiling.")]


# The OpenVINO runner's options as this CLI spells them.
OPENVINO_FLAGS = {"precision": "--ov-precision", "performance": "--performance", "streams": "--streams",
                  "cache_dir": "--cache-dir"}


def openvino_options(precision: str | None, performance: str | None, streams: int | None,
                     cache_dir: Path | None) -> dict[str, Any]:
    """The OpenVINO runner's options that were given (the others keep the runner's defaults), checked here
    so that a mistake names this CLI's flag (--ov-precision, not the runner's `precision`)."""
    from tamdeploy.deploy.runners.openvino_ir import INFERENCE_PRECISIONS
    from tamdeploy.deploy.runners.openvino_runner import PERFORMANCE_MODES

    if precision is not None and precision not in INFERENCE_PRECISIONS:
        raise TamdeployError(f"--ov-precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r} "
                             "(INT8 is a graph: build it with `tamdeploy build --int8`)")
    if performance is not None and performance not in PERFORMANCE_MODES:
        raise TamdeployError(f"--performance must be one of {', '.join(PERFORMANCE_MODES)}, got {performance!r}")
    given = {"precision": precision, "performance": performance, "streams": streams, "cache_dir": cache_dir}
    return {key: value for key, value in given.items() if value is not None}


INTERNAL_ERROR_EXIT = 3  # 1 means "parity failed", 2 "a mistake the user can fix"
INTERRUPTED_EXIT = 130  # the shell's code for SIGINT
BROKEN_PIPE_EXIT = 141  # the shell's code for SIGPIPE
TERMINATED_EXIT = 143  # the shell's code for SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a scheduler stopping the job) raised as an interrupt, so that the clean-up Ctrl-C
    gets (temp files removed, decode workers stopped, the one line) runs for it too."""


def terminate_on_sigterm(signum: int, frame: Any) -> None:
    # a second SIGTERM (the first waits for a long native call, a TensorRT build, to return) ends it at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


def fail(message: str, exit_code: int, json_output: bool) -> typer.Exit:
    """Print the one line (and, with --json, the same as one line of JSON on stdout) and make the exit.
    A message of several lines (a runtime's error text) is joined into one."""
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    error(message)
    if json_output:
        print(json.dumps({"error": spoken_as_flags(message), "exit_code": exit_code}))
    return typer.Exit(exit_code)


def show_traceback() -> None:
    """With --debug, the traceback of the exception being handled, before its one line and exit code (which
    --debug does not change)."""
    if state["debug"]:
        traceback.print_exc(file=sys.stderr)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The outcome of every command in one place: a ``TamdeployError`` is one line and its exit code (2);
    Ctrl-C is one line saying what was written, exit 130; anything else is a bug: one line, exit 3. With
    ``--debug`` the traceback comes first, the exit code stays. With ``--json`` the error is also printed as
    JSON on stdout, so a script reading JSON gets JSON."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        json_output = bool(kwargs.get("json_output"))
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except TamdeployError as e:
            show_traceback()
            raise fail(str(e), e.exit_code, json_output) from None
        except KeyboardInterrupt as e:
            show_traceback()
            written = written_outputs()
            what = ("nothing written" if not written else
                    "written before it: " + ", ".join(str(p) for p in written))
            if isinstance(e, Terminated):
                raise fail(f"terminated; {what}", TERMINATED_EXIT, json_output) from None
            raise fail(f"interrupted; {what}", INTERRUPTED_EXIT, json_output) from None
        except BrokenPipeError:  # the reader went away (`| head`): not an error of ours, and nothing to tell
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail
            raise typer.Exit(BROKEN_PIPE_EXIT) from None
        except Exception as e:
            show_traceback()
            raise fail(f"internal error: {type(e).__name__}: {e} (a bug in tamdeploy; run again with --debug "
                        f"for the traceback)", INTERNAL_ERROR_EXIT, json_output) from None

    return wrapper
