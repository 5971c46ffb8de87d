"""A real Triton Inference Server on this machine, without a container: the ``tritonserver`` binary that
the ``nvidia-pytriton`` wheel bundles, launched directly on a model repository (pytriton itself is never
imported).

Why its own environment (``tamdeploy serve --setup``, default ``~/.cache/tamdeploy/triton-env``): the
bundled Python-backend stub was built against numpy 1 (pybind11 before numpy 2 support). With numpy 2
in the Python that runs the models, measured here, models loaded and reported READY but returned empty
or wrong tensors and one stub died; nvidia-pytriton also pins numpy<2. So the models run in a venv with
numpy<2, onnxruntime, PyAV and tamdeploy (installed without its dependencies: no torch), while tamdeploy
itself keeps numpy 2.

How it is launched, and why (each measured on tritonserver 2.51 from nvidia-pytriton 0.7.0):
- a private backends folder of links holding the Python backend *and* the stub for this Python version
  (the wheel keeps the stubs apart, so the stock folder fails with "triton_python_backend_stub is not found");
- the environment's ``bin`` first on PATH: the stub runs Python in isolated mode (PYTHONPATH ignored) and
  takes the first ``python3`` on PATH, whose ``pyvenv.cfg`` gives it the environment's packages;
- the interpreter's own LIBDIR first on LD_LIBRARY_PATH: else the stub loads the system's libpython;
- every address on 127.0.0.1; shared memory regions named after the server, so a crash leaves
  nothing anonymous in /dev/shm.

Ready takes 1.5-3.5 s; SIGTERM stops the server and its stubs in ~2 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tamdeploy.errors import BackendUnavailableError, DataError, TamdeployError

PYTRITON_VERSION = "0.7.0"  # the wheel's layout (bin/, backends/, python_backend_stubs/) is relied on
ENV_VARIABLE = "TAMDEPLOY_TRITON_ENV"
SERVER_PACKAGES = ["numpy<2", "onnxruntime>=1.20", "av>=14", "rich>=14"]


def default_environment() -> Path:
    return Path(os.environ.get(ENV_VARIABLE) or Path.home() / ".cache" / "tamdeploy" / "triton-env")


@dataclass(frozen=True)
class ServerEnvironment:
    """The server's venv and what the nvidia-pytriton wheel put in it."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        found = sorted((self.root / "lib").glob("python3*/site-packages"))
        return found[0] if found else self.root / "lib" / "site-packages"

    @property
    def tritonserver_root(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.tritonserver_root / "bin" / "tritonserver"

    @property
    def libraries(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    def stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.tritonserver_root / "python_backend_stubs" / version / "triton_python_backend_stub"

    def check(self) -> None:
        """One line naming what is missing and the command that makes it."""
        fix = f"run `tamdeploy serve --setup` (or --setup --env {self.root})"
        if not self.python.is_file():
            raise BackendUnavailableError(f"no Triton server environment at {self.root}; {fix}")
        if not self.binary.is_file():
            raise BackendUnavailableError(f"{self.root} has no tritonserver binary (nvidia-pytriton); {fix}")
        if not self.stub().is_file():
            raise BackendUnavailableError(f"nvidia-pytriton ships no Python-backend stub for Python "
                                          f"{sys.version_info.major}.{sys.version_info.minor}")
        if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
            raise BackendUnavailableError("this Python was built without its shared library (libpython), which "
                                          "Triton's Python stub loads; use a Python built with --enable-shared")


# what a copy of the checkout leaves out: at its top, environments, build output and run artifacts (the
# package ``deploy/build`` is source); anywhere, caches
_NOT_SOURCE_TOP = {".git", "build", "dist", "runs"}
_NOT_SOURCE_TOP_PATTERNS = (".venv*", "*.egg-info")
_NOT_SOURCE_ANYWHERE = ("__pycache__", ".*_cache", ".hypothesis")


def _tamdeploy_source(scratch: Path) -> str:
    """What pip installs tamdeploy from in the server environment: this checkout when tamdeploy runs from
    one (an editable install), copied into ``scratch`` first so that setuptools' in-tree build leaves no
    ``build/`` in the checkout (where files deleted since would linger and be installed next time); else
    the released version of the same number."""
    import fnmatch

    import tamdeploy

    root = Path(tamdeploy.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if not (pyproject.is_file() and 'name = "tamdeploy"' in pyproject.read_text()):
        return f"tamdeploy=={tamdeploy.__version__}"

    def matches(name: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(name, p) for p in patterns)

    def left_out(directory: str, names: list[str]) -> set[str]:
        top = Path(directory) == root
        return {name for name in names if matches(name, _NOT_SOURCE_ANYWHERE)
                or (top and (name in _NOT_SOURCE_TOP or matches(name, _NOT_SOURCE_TOP_PATTERNS)))}

    copy = scratch / "tamdeploy-source"
    shutil.copytree(root, copy, ignore=left_out)
    return str(copy)


def setup_environment(root: Path, progress: bool = True) -> ServerEnvironment:
    """Create the server's venv (this Python, its shared library) and install what the models need;
    the only step that downloads (~450 MB in all, nvidia-pytriton's tritonserver the most of it). Re-running
    it repairs an environment."""
    import tempfile

    from tamdeploy.console import status

    env = ServerEnvironment(root)
    base = getattr(sys, "_base_executable", sys.executable)
    with tempfile.TemporaryDirectory(prefix="tamdeploy-setup-") as scratch:
        steps = [
            ([base, "-m", "venv", str(root)], "creating the environment"),
            ([str(env.python), "-m", "pip", "install", "-q", f"nvidia-pytriton=={PYTRITON_VERSION}", "--no-deps"],
             "installing nvidia-pytriton (the tritonserver binary)"),
            ([str(env.python), "-m", "pip", "install", "-q", *SERVER_PACKAGES], "installing numpy<2, onnxruntime, av"),
            ([str(env.python), "-m", "pip", "install", "-q", "--no-deps", _tamdeploy_source(Path(scratch))],
             "installing tamdeploy"),
        ]
        for command, what in steps:
            with status(what, progress):
                done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise TamdeployError(f"setting up the Triton environment failed while {what}: "
                                     f"{_pip_reason(done.stderr)}")
    env.check()
    return env


def _pip_reason(stderr: str) -> str:
    """The line of pip's output that says what went wrong: its last ``error:`` line (pip ends with a note
    that the error came from a subprocess, which says nothing), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error:") and "subprocess" not in line]
    return (errors or lines or ["(no output)"])[-1]


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    if not 0 <= port <= 65535:
        raise DataError(f"port {port} is not a port: use 1-65535, or 0 for a free one")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as a server binds: a port whose last connections are in TIME-WAIT (a server just stopped) is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise DataError(f"port {port} on {host} is in use ({e.strerror}); pick another with --port / "
                            "--grpc-port / --metrics-port") from None


def free_port() -> int:
    """A port nothing listens on now (for tests and for `--port 0`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local_repository(repository: Path, workdir: Path) -> Path:
    """A copy of REPOSITORY the bundled server can run: ``onnxruntime``-backend models become Python-
    backend models running ONNX Runtime (``triton_models/onnx_python.py``); the wheel has no ONNX Runtime
    backend. A TensorRT plan cannot run without a GPU build of Triton: one line."""
    from importlib import resources

    from google.protobuf import text_format

    from tamdeploy.deploy.serve.repository import model_config_pb2

    pb = model_config_pb2()
    target = workdir / "repository"
    shutil.copytree(repository, target, ignore=shutil.ignore_patterns("__pycache__"))
    runner = resources.files("tamdeploy.deploy.serve.triton_models").joinpath("onnx_python.py").read_text()
    configs = sorted(target.glob("*/config.pbtxt"))
    if not configs:
        raise DataError(f"{repository} holds no models (no */config.pbtxt): make one with `tamdeploy package "
                        "--triton`")
    for path in configs:
        try:
            config = text_format.Parse(path.read_text(), pb.ModelConfig())
        except text_format.ParseError as e:
            original = repository / path.relative_to(target)  # the user's file, not the copy (gone at exit)
            raise DataError(f"{original} does not validate against Triton's model config: {e}") from None
        if config.backend == "tensorrt" or config.platform == "tensorrt_plan":
            raise DataError(f"{path.parent.name} is a TensorRT plan: serve it with NVIDIA's Triton container on "
                            "its GPU; `tamdeploy serve` runs ONNX and Python models on this CPU")
        if config.backend == "onnxruntime" or config.platform == "onnxruntime_onnx":
            config.backend, config.platform = "python", ""
            config.parameters["onnx_file"].string_value = config.default_model_filename or "model.onnx"
            config.default_model_filename = "model.py"
            # instances share the cores: two instances on two cores run one thread each
            instances = sum(group.count for group in config.instance_group) or 1
            config.parameters["intra_op_threads"].string_value = str(max(1, (os.cpu_count() or 1) // instances))
            path.write_text(text_format.MessageToString(config))
            for version in (p for p in path.parent.iterdir() if p.is_dir() and p.name.isdigit()):
                (version / "model.py").write_text(runner)
    return target


class TritonServer:
    """One tritonserver process on 127.0.0.1 (a context manager: started on enter, stopped on exit)."""

    def __init__(self, repository: Path, env: ServerEnvironment, workdir: Path, http_port: int = 8000,
                 grpc_port: int = 8001, metrics_port: int = 8002, host: str = "127.0.0.1",
                 log_path: Path | None = None) -> None:
        self.repository, self.env, self.workdir = repository, env, workdir
        self.http_port, self.grpc_port, self.metrics_port, self.host = http_port, grpc_port, metrics_port, host
        self.process: subprocess.Popen | None = None
        self.log_path = log_path or workdir / "tritonserver.log"
        self.ready_seconds: float | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def _backends(self) -> Path:
        python = self.workdir / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        stock = self.env.tritonserver_root / "backends" / "python"
        for link, target in [("libtriton_python.so", stock / "libtriton_python.so"),
                             ("triton_python_backend_utils.py", stock / "triton_python_backend_utils.py"),
                             ("triton_python_backend_stub", self.env.stub())]:
            if not (python / link).exists():
                (python / link).symlink_to(target)
        return python.parent

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libraries = [sysconfig.get_config_var("LIBDIR"), str(self.env.libraries), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in libraries if p)
        env["PATH"] = f"{self.env.root / 'bin'}:{env.get('PATH', '')}"
        env.pop("PYTHONPATH", None)
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def command(self) -> list[str]:
        return [str(self.env.binary), f"--model-repository={self.repository}",
                f"--backend-directory={self._backends()}",
                f"--cache-directory={self.env.tritonserver_root / 'caches'}",
                f"--http-address={self.host}", f"--http-port={self.http_port}",
                f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                "--allow-metrics=true", "--allow-gpu-metrics=false", f"--metrics-address={self.host}",
                f"--metrics-port={self.metrics_port}", "--allow-sagemaker=false", "--allow-vertex-ai=false",
                "--exit-on-error=true", "--strict-readiness=true", "--exit-timeout-secs=5",
                "--model-control-mode=none", f"--backend-config=python,shm-region-prefix-name=tamdeploy_{os.getpid()}_"]

    def start(self, timeout: float = 120.0) -> TritonServer:
        self.env.check()
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            check_port_free(port, self.host)
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), env=self._environment(), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            cwd=self.workdir, start_new_session=True)  # Ctrl-C reaches us, not it
        try:
            self._wait_ready(started, timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float, timeout: float) -> None:
        url = f"http://{self.host}:{self.http_port}/v2/health/ready"
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise TamdeployError(f"tritonserver exited with code {self.process.returncode} before it was ready: "
                                     f"{self.failure_line()} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TamdeployError(f"tritonserver was not ready within {timeout:.0f} s (log: {self.log_path})")

    def failure_line(self) -> str:
        """What to tell the user when the server stops by itself: the log's first error line (Triton's
        ``E...`` lines, less the GPU-less machine's CUDA notices), else its last line (a refused option
        prints the usage text, then the reason)."""
        try:
            lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "(no log)"
        errors = [line for line in lines if line[:1] == "E" and line[1:5].isdigit()
                  and not any(noise in line for noise in ("CudaDriverHelper", "pinned", "CUDA"))]
        return (errors or lines[-1:] or ["(empty log)"])[0]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM to the server's PID (its stubs exit with it), SIGKILL if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
            for leftover in Path("/dev/shm").glob(f"tamdeploy_{os.getpid()}_*"):
                leftover.unlink(missing_ok=True)
            return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
