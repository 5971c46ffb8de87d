"""Decoding that keeps the model busy: videos are decoded in worker processes, ahead of the model by
a bounded number, and handed over in input order.

Why processes: decoding is CPU work in FFmpeg plus numpy resizing; threads would share one interpreter
with the model's Python loop. Why ``forkserver``: the parent holds an inference session with its own
threads, which ``fork`` would copy mid-flight; a forkserver child is forked from a small clean process
that has imported only the decoding modules (no torch), so a worker starts in milliseconds. The workers'
decoders share the cores (``cores // workers`` FFmpeg threads each). Measured on 2 cores, 64 clips of
10 s, demo TANet at 76 clips/s: one worker with 1 thread ran eval at 17.6 videos/s (0.89 of its
decode-only rate), with 2 threads at 22.9 videos/s (0.80 of its decode-only rate, which had had both
cores to itself): the second is what a user wants. Why bounded: at most ``ahead`` videos are decoded or
in flight, so memory depends on ``ahead`` and the views of one video, not on the size of the data set.
Workers hand over uint8 frames; the consumer normalises them (a quarter of the bytes to move).

A video that cannot be decoded comes back as a ``Decoded`` with its reason; it never stops the run.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tamdeploy.console import warn
from tamdeploy.deploy.inputs.clips import ClipSpec, read_view_frames, read_views
from tamdeploy.deploy.inputs.video import Views, set_decoder_threads
from tamdeploy.errors import TamdeployError

_WORKER_MODULES = ["tamdeploy.deploy.inputs.clips"]


@dataclass(frozen=True)
class Decoded:
    """One video's views, uint8 frames ``[views, T, S, S, 3]`` from ``decoded`` (normalised on the model's
    side: a quarter of the bytes between processes, and the normalising off the decoders' cores) or
    float32 model input ``[views, *sample_shape]``; or why there are none."""

    index: int  # position in the input order
    source: str
    views: np.ndarray | None
    error: str | None = None


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    """Decode workers when not told: the usable cores less one for the model (at least 1)."""
    return max(1, usable_cores() - 1)


def decode_one(source: str, spec: ClipSpec, views: Views, normalise: bool = True
               ) -> tuple[np.ndarray | None, str | None]:
    """(views, None) or (None, reason): a file that cannot be used is a result, not an exception.
    ``normalise=False``: the uint8 frames (``read_view_frames``)."""
    try:
        return (read_views if normalise else read_view_frames)(source, spec, views), None
    except TamdeployError as e:  # UndecodableError, a frame folder that cannot be listed, ...
        return None, str(e)
    except OSError as e:  # a name too long for the file system, a permission, ...
        return None, f"cannot read it: {e.strerror or e}"


def _start_forkserver_without_cwd() -> None:
    """Start the forkserver (once per process) without the current folder on its ``sys.path``: it runs as
    ``python -c``, which puts the folder first, and there a folder named ``tamdeploy`` (a clone's parent
    folder) shadows an editable install, whose finder comes after the path's. ``PYTHONSAFEPATH``
    (Python 3.11+) keeps the folder off; the forkserver keeps the environment it started with."""
    from multiprocessing import forkserver

    saved = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["PYTHONSAFEPATH"]
        else:
            os.environ["PYTHONSAFEPATH"] = saved


def decoded(sources: Iterable[str], spec: ClipSpec, views: Views, workers: int, batch: int = 1,
            ahead: int | None = None) -> Iterator[Decoded]:
    """Each source decoded to uint8 frames, in input order. ``workers=0`` decodes in this process, one at a
    time (the same function: results are identical); otherwise ``workers`` processes decode up to ``ahead``
    videos ahead of the consumer. The default keeps the workers busy while the model runs a batch of
    ``batch`` inputs: the videos one batch takes, plus two per worker (measured: with two in all, a
    worker sat idle through every model call and a 1-worker eval ran at 0.71 of the decode rate)."""
    if workers < 0:
        raise TamdeployError(f"`workers` must be 0 or more, got {workers}")
    if workers and sys.version_info < (3, 11) and (Path.cwd() / "tamdeploy").is_dir():
        warn("a folder named tamdeploy here would shadow tamdeploy in the decode workers (Python 3.10 cannot keep "
             "it off their path): decoding in this process; run from another folder to decode in parallel")
        workers = 0
    if workers == 0:
        for index, source in enumerate(sources):
            yield Decoded(index, source, *decode_one(source, spec, views, normalise=False))
        return
    ahead = max(1, ahead or -(-batch // views.count) + 2 * workers)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_WORKER_MODULES)
    _start_forkserver_without_cwd()
    pending: deque[tuple[int, str, Future]] = deque()
    todo = iter(enumerate(sources))
    threads = max(1, usable_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=set_decoder_threads, initargs=(threads,)) as pool:
        def submit_next() -> None:
            for index, source in todo:
                pending.append((index, source, pool.submit(decode_one, source, spec, views, False)))
                return

        for _ in range(ahead):
            submit_next()
        try:
            while pending:
                index, source, future = pending.popleft()
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise TamdeployError(f"a decode worker died while decoding {source}: an FFmpeg crash, out of "
                                         "memory, or (from a Python script) a script without `if __name__ == "
                                         "\"__main__\":`, which worker processes re-run; `workers=0` decodes in "
                                         "this process") from None
                submit_next()
                yield Decoded(index, source, *result)
        except BaseException:  # an interrupt, a dead worker, a consumer that stopped: drop the queued decodes
            pool.shutdown(wait=False, cancel_futures=True)
            raise
