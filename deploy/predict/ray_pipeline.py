"""``eval --ray``: the same evaluation as a Ray Data pipeline, for sets too large for one machine.

video paths -> ``map_batches(decode)`` on CPU tasks (the local path's own ``decode_one``, so the model
inputs are the same arrays) -> ``map_batches(ModelActor)`` on an actor pool that holds the runners
(a GPU per actor when a backend needs one) -> rows back on the driver, put in input order. A video
that fails to decode travels as a row with its reason, like on the local path.

Results are the local path's: the same inputs and models; ONNX Runtime may differ in the last bit
between batch sizes (its GEMM takes other paths for other row counts), so logits agree to ~1e-6 and
the top-1 classes are the same (``tests/deploy/predict/test_ray.py``).

The cluster: ``address`` (``--ray-address``), else ``RAY_ADDRESS``, else a local Ray instance started
here on 127.0.0.1 and stopped after. Ray's usage statistics are off unless the user turned them on.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from tamdeploy.deploy.inputs.clips import ClipSpec
from tamdeploy.deploy.inputs.video import Views
from tamdeploy.deploy.predict.decoding import decode_one
from tamdeploy.deploy.predict.predictor import StreamStats, logits_of
from tamdeploy.errors import BackendUnavailableError, TamdeployError

if TYPE_CHECKING:
    from tamdeploy.deploy.runners.base import Runner

INSTALL_HINT = 'eval --ray needs Ray Data: pip install "tamdeploy[ray]"'
CONNECT_TIMEOUT_S = 30  # an address nothing answers on fails within this, not after Ray's own minutes
_DECODE_BATCH = 4  # videos per decode task: small, so the first batches reach the model early


def _import_ray(local: bool):
    """Ray reads these settings when it is imported. A local instance is kept on 127.0.0.1: Ray 2.60
    rewrites 127.0.0.1 to the machine's network address when it starts a node (and a driver can then
    hang dialling it, ray#59110), except when its single-machine mode is on, which
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` turns on (measured: every socket then listens on loopback);
    its token authentication (a file in ~/.ray) is off for the instance it starts and stops itself."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # a head that answers slowly: one line, not twenty
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise BackendUnavailableError(INSTALL_HINT) from e
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-run INFO lines would cut through the bar
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One line within ``timeout`` for an address nothing answers on: ``ray.init`` itself retries for
    about 14 minutes (20 attempts of ~41 s, measured on Ray 2.60) before it gives up."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise TamdeployError(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise TamdeployError(f"cannot reach the Ray cluster at {address}: {e.strerror or e} (is `ray start --head` "
                             "running there, and the port open?)") from None


@contextmanager
def ray_session(address: str | None):
    """Connected to the cluster at ``address`` / ``RAY_ADDRESS``, or to a local instance started here
    (stopped on exit); a session the caller already opened (``ray.init`` in a script) is used as it is."""
    target = address or os.environ.get("RAY_ADDRESS")
    ray = _import_ray(local=not target)
    if ray.is_initialized():
        yield ray
        return
    if target:
        check_reachable(target)
    ours = signal.getsignal(signal.SIGTERM)
    try:
        if target:
            ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {target}" if target else "a local Ray instance"
        raise TamdeployError(f"cannot connect to {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                             ) from e
    if ours is not None and threading.current_thread() is threading.main_thread():  # ray.init's exits on SIGTERM
        signal.signal(signal.SIGTERM, ours)
    try:
        yield ray
    finally:
        ray.shutdown()


def _decode_batch(batch: dict[str, np.ndarray], spec: ClipSpec, views: Views) -> dict[str, np.ndarray]:
    """Decode tasks never raise for a bad video: they mark its row (zeros keep the column rectangular).
    They hand on uint8 frames, normalised by the actor with the same ``ClipSpec.normalise``: a quarter
    of the bytes through Ray's object store."""
    shape = (views.count, *((spec.num_segments,) if spec.is_video else ()), spec.input_size, spec.input_size, 3)
    arrays, errors = [], []
    for source in batch["path"]:
        array, error = decode_one(str(source), spec, views, normalise=False)
        arrays.append(array if array is not None else np.zeros(shape, np.uint8))
        errors.append(error or "")
    return {"index": batch["index"], "views": np.stack(arrays), "error": np.array(errors, dtype=object)}


class ModelActor:
    """Holds the runners (activated once per actor) and returns, per video, each model's logits averaged
    over its views; the views column stays here."""

    def __init__(self, make_runners: Callable[[], list[tuple[str, Runner]]], spec: ClipSpec) -> None:
        self.runners = [runner.activate() for _, runner in make_runners()]
        self.spec = spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.array([not e for e in batch["error"]])
        views = batch["views"]
        count = views.shape[1]
        out = np.full((len(ok), len(self.runners), 0), np.nan, np.float32)
        if ok.any():
            inputs = self.spec.normalise(views[ok].reshape(-1, *views.shape[2:]))
            per_runner = [logits_of(r, inputs).reshape(int(ok.sum()), count, -1).mean(axis=1) for r in self.runners]
            out = np.full((len(ok), len(self.runners), per_runner[0].shape[-1]), np.nan, np.float32)
            out[ok] = np.stack(per_runner, axis=1)
        return {"index": batch["index"], "error": batch["error"], "logits": out}


def needs_gpu(runners: list[Runner]) -> bool:
    """Whether the actors must ask Ray for a GPU: a TensorRT engine or a CUDA execution provider."""
    return any(runner.name.endswith(("tensorrt", "cuda")) for runner in runners)


def _pool_size(ray, gpu: bool) -> int:
    """One actor per GPU, or per live node on CPUs (each actor's runtime uses that node's cores)."""
    if gpu:
        return max(1, int(ray.cluster_resources().get("GPU", 1)))
    return max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def ray_logits(sources: list[str], make_runners: Callable[[], list[tuple[str, Runner]]], spec: ClipSpec,
               views: Views, batch: int, address: str | None, gpu: bool, progress: bool
               ) -> tuple[list[tuple[list[np.ndarray] | None, str | None]], StreamStats]:
    """Per source, in input order: (one averaged logits vector per model, None) or (None, reason)."""
    from tamdeploy.console import progress_bar

    results: list[Any] = [None] * len(sources)
    stats = StreamStats()
    with ray_session(address) as ray:
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False  # tamdeploy's own bar below
        context.print_on_execution_start = False
        if gpu and ray.cluster_resources().get("GPU", 0) < 1:
            # Ray Data would wait forever for a GPU the cluster does not have
            raise TamdeployError("the model needs a GPU (TensorRT / CUDA) but the Ray cluster has none")
        dataset = ray.data.from_items([{"index": i, "path": s} for i, s in enumerate(sources)])
        # decode tasks ask for less CPU than the actor, so Ray does not fuse them into it
        dataset = dataset.map_batches(_decode_batch, fn_kwargs={"spec": spec, "views": views},
                                      batch_size=_DECODE_BATCH, batch_format="numpy", num_cpus=0.5)
        dataset = dataset.map_batches(
            ModelActor, fn_constructor_kwargs={"make_runners": make_runners, "spec": spec},
            batch_size=max(1, -(-batch // views.count)), batch_format="numpy",
            compute=ActorPoolStrategy(min_size=1, max_size=_pool_size(ray, gpu)),
            num_cpus=0 if gpu else 1, num_gpus=1 if gpu else None)
        with progress_bar(progress, unit="videos") as bar:
            task = bar.add_task("evaluating on Ray", total=len(sources))
            for row in dataset.iter_rows():
                index, error = int(row["index"]), str(row["error"]) or None
                logits = None if error else list(np.asarray(row["logits"], dtype=np.float32))
                results[index] = (logits, error)
                stats.videos += 1
                stats.failed += error is not None
                bar.advance(task)
    return results, stats
