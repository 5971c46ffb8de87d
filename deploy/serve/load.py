"""``tamdeploy bench --server URL --concurrency 1,4,16``: latency percentiles and throughput of a served
model under concurrent clients, as perf_analyzer reports them (each client sends its next request when
the last one is answered; a bounded number of requests per client)."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from tamdeploy.deploy.bench.report import LatencyStats
from tamdeploy.deploy.serve.client import ServerClient
from tamdeploy.errors import DataError, TamdeployError


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    seconds: float
    latency: LatencyStats
    errors: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds


@dataclass
class ServerBenchReport:
    url: str
    model: str
    input_shape: list[int]
    levels: list[LevelResult]

    def to_dict(self) -> dict:
        return {"url": self.url, "model": self.model, "input_shape": self.input_shape,
                "levels": [dict(asdict(r), requests_per_s=r.requests_per_s) for r in self.levels]}

    def to_markdown(self) -> str:
        base = self.levels[0].requests_per_s
        lines = [f"{self.model} at {self.url}, input {self.input_shape} per request (binary tensors)", "",
                 "| clients | requests | p50 ms | p90 ms | p99 ms | req/s | vs first | errors |",
                 "|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in self.levels:
            lines.append(f"| {r.concurrency} | {r.requests} | {r.latency.median_ms:.2f} | {r.latency.p90_ms:.2f} | "
                         f"{r.latency.p99_ms:.2f} | {r.requests_per_s:.1f} | {r.requests_per_s / base:.2f}x | "
                         f"{r.errors} |")
        return "\n".join(lines)


def parse_concurrency(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",")]  # an empty part ("1,,2") is a typo, not a skip
    except ValueError:
        levels = []
    if not levels or any(c < 1 for c in levels):
        raise DataError(f"`concurrency` must be comma-separated positive integers, got {text!r}")
    return levels


def _pick_model(client: ServerClient, model: str | None) -> str:
    models = client.models()
    if model is not None:
        if model not in models:
            raise DataError(f"the server has no model {model!r}; it has {', '.join(models) or 'none'}")
        return model
    plain = [m for m in models if not m.endswith(("_video", "_preprocess", "_labels"))]
    if len(plain) != 1:
        raise DataError(f"the server has {len(plain)} models ({', '.join(plain)}); pick one with `model`")
    return plain[0]


def bench_server(url: str, model: str | None = None, concurrency: list[int] | None = None,
                 requests: int = 20, warmup: int = 2, seed: int = 0) -> ServerBenchReport:
    """``requests`` per client at each concurrency level, after ``warmup`` untimed ones."""
    concurrency = concurrency or [1, 4, 16]
    if requests < 1:
        raise DataError(f"`iters` (requests per client) must be at least 1, got {requests}")
    with ServerClient(url) as client:
        client.check_ready()
        model = _pick_model(client, model)
        meta = client.metadata(model)
    tensor = meta["inputs"][0]
    if tensor["datatype"] != "FP32":
        raise DataError(f"{model} takes {tensor['datatype']}; bench sends FP32 clips (bench the plain model)")
    shape = [1 if d == -1 else int(d) for d in tensor["shape"]]
    clip = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    output = meta["outputs"][0]["name"]
    levels = [_level(url, model, tensor["name"], output, clip, c, requests, warmup) for c in concurrency]
    return ServerBenchReport(url, model, shape, levels)


def _level(url: str, model: str, name: str, output: str, clip: np.ndarray, clients: int, requests: int,
           warmup: int) -> LevelResult:
    samples: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def client_loop(i: int) -> None:
        with ServerClient(url) as client:
            try:
                for _ in range(warmup):
                    client.infer(model, {name: clip}, [output])
            except TamdeployError:
                errors[i] += 1  # counted; the timed requests say whether the server answers at all
            finally:
                barrier.wait()  # every client starts timing together, whatever its warm-up did
            for _ in range(requests):
                started = time.perf_counter()
                try:
                    client.infer(model, {name: clip}, [output])
                except TamdeployError:
                    errors[i] += 1
                    continue
                samples[i].append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    done = [s for per_client in samples for s in per_client]
    if not done:
        raise TamdeployError(f"every request to {model} failed at concurrency {clients}")
    return LevelResult(clients, len(done), seconds, LatencyStats.from_samples(np.array(done)), sum(errors))
