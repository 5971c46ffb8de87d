"""Latency and throughput: several runners measured interleaved in one run, so machine noise hits
them alike (``measure.run_benchmark``); the report with percentiles and ratios (``report``), the
runners built from the command line's artifacts (``setup``) and the PNG plot (``plots``).
"""

from tamdeploy.deploy.bench.measure import run_benchmark
from tamdeploy.deploy.bench.plots import plot_bench
from tamdeploy.deploy.bench.report import BatchResult, BenchReport, LatencyStats, RunnerResult, paired_ratio

__all__ = [
    "BatchResult", "BenchReport", "LatencyStats", "RunnerResult", "paired_ratio", "plot_bench", "run_benchmark",
]
