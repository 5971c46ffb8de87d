"""A real tritonserver (nvidia-pytriton's binary, in the environment `tamdeploy serve --setup` makes)
serving the model and its video ensemble on 127.0.0.1: logits equal to ONNX Runtime, batching seen in the
metrics, bad requests answered with errors while good ones go on, a clean stop. Skipped, with the reason,
where the server environment is missing (CI makes it: .ci/run)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import invoke
from helpers.video import write_garbage

from tamdeploy.deploy.inputs.clips import ClipSpec, read_views
from tamdeploy.deploy.inputs.synthetic import write_motion_clips
from tamdeploy.deploy.serve.client import ServerClient
from tamdeploy.deploy.serve.repository import PackageOptions, package_triton
from tamdeploy.deploy.serve.server import (
    ServerEnvironment,
    TritonServer,
    default_environment,
    free_port,
    local_repository,
)
from tamdeploy.errors import TamdeployError
from tamdeploy.onnx_runtime import create_session

ENVIRONMENT = ServerEnvironment(default_environment())
try:
    ENVIRONMENT.check()
    MISSING = None
except TamdeployError as e:
    MISSING = str(e)
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"no Triton server environment: {MISSING}")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


@pytest.fixture(scope="module")
def served(tiny_onnx, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    labels = root / "labels.txt"
    labels.write_text("zero\none\ntwo\nthree\nfour\n")
    package_triton(tiny_onnx, root / "repo", PackageOptions(preprocess=True, labels=labels, top_k=3))
    server = TritonServer(local_repository(root / "repo", root), ENVIRONMENT, root, free_port(), free_port(),
                          free_port())
    videos = [path for path, _ in write_motion_clips(root / "videos", 3, frames=12, size=48)]
    with server:
        pid = server.process.pid
        children = descendants(pid)
        assert children, "the Python-backend stubs run as the server's children"
        yield {"server": server, "videos": videos, "root": root}
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in {pid, *children}) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in {pid, *children} if Path(f"/proc/{p}/stat").exists()
            and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not left, f"processes left after the server stopped: {left}"


@pytest.fixture(scope="module")
def reference(tiny_onnx):
    session = create_session(tiny_onnx, threads=1)
    from tamdeploy.deploy.runners import open_runner

    with open_runner(tiny_onnx) as runner:
        spec = ClipSpec.from_config(runner.config)
    return lambda clip: session.run(None, {"video": clip})[0], spec


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_model_and_video_ensemble_match_onnx_runtime(served, reference, protocol):
    run, spec = reference
    server = served["server"]
    url = f"http://{server.http_url}" if protocol == "http" else f"grpc://{server.grpc_url}"
    with ServerClient(url) as client:
        client.check_ready()
        assert set(client.models()) == {"tiny", "tiny_preprocess", "tiny_labels", "tiny_video"}
        for video in served["videos"]:
            clip = read_views(video, spec)
            expected = run(clip)
            got = client.infer("tiny", {"video": clip}, ["logits"])["logits"]
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
            answer = client.classify_video("tiny_video", video)
            np.testing.assert_allclose(answer["logits"], expected, atol=1e-5, rtol=1e-5)
            order = np.argsort(-expected[0], kind="stable")[:3]
            assert [x.decode() for x in answer["labels"][0]] == [["zero", "one", "two", "three", "four"][i]
                                                                 for i in order]


def metric(server: TritonServer, name: str, model: str) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{model="{model}",'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {model} not in the metrics")


def test_concurrent_requests_are_batched(served, reference):
    server = served["server"]
    clip = read_views(served["videos"][0], reference[1])
    before = (metric(server, "nv_inference_request_success", "tiny"), metric(server, "nv_inference_exec_count", "tiny"))

    def client_loop():
        with ServerClient(f"grpc://{server.grpc_url}") as client:
            for _ in range(10):
                client.infer("tiny", {"video": clip}, ["logits"])

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests = metric(server, "nv_inference_request_success", "tiny") - before[0]
    executions = metric(server, "nv_inference_exec_count", "tiny") - before[1]
    assert requests == 40 and executions < requests, (requests, executions)


def test_bad_requests_get_errors_while_good_ones_in_flight_succeed(served, reference, tmp_path):
    server = served["server"]
    clip = read_views(served["videos"][0], reference[1])
    good: list[bool] = []

    def good_loop():
        with ServerClient(f"http://{server.http_url}") as client:
            for _ in range(12):
                good.append(client.infer("tiny", {"video": clip}, ["logits"])["logits"].shape == (1, 5))

    thread = threading.Thread(target=good_loop)
    thread.start()
    with ServerClient(f"http://{server.http_url}") as client:
        with pytest.raises(TamdeployError, match="unexpected shape"):
            client.infer("tiny", {"video": clip[:, :2]}, ["logits"])
        with pytest.raises(TamdeployError, match="data-type"):
            client.infer("tiny", {"video": clip.astype(np.float64)}, ["logits"])
        with pytest.raises(TamdeployError, match="cannot decode the video"):
            client.classify_video("tiny_video", write_garbage(tmp_path / "broken.mp4"))
    thread.join()
    assert good == [True] * 12


def test_cli_client_and_bench_against_the_server(served):
    server = served["server"]
    labelled = invoke("client", f"grpc://{server.grpc_url}", *served["videos"], "--json")
    assert labelled.exit_code == 0, labelled.stderr
    records = labelled.json()["predictions"]
    assert len(records) == 3 and all(len(r["top_k"]) == 3 and r["error"] is None for r in records)
    bench = invoke("bench", "--server", f"http://{server.http_url}", "--concurrency", "1,2", "--iters", "5", "--json")
    assert bench.exit_code == 0, bench.stderr
    levels = bench.json()["levels"]
    assert [(lv["concurrency"], lv["requests"], lv["errors"]) for lv in levels] == [(1, 5, 0), (2, 10, 0)]
    assert bench.json()["model"] == "tiny"


def test_a_client_whose_every_video_fails_prints_one_json_document(served, tmp_path):
    server = served["server"]
    result = invoke("client", f"http://{server.http_url}", write_garbage(tmp_path / "bad.mp4"), "--json")
    assert result.exit_code == 2
    assert "labelled none of the 1 video(s)" in result.json()["error"]  # json() parses the whole stdout


def test_port_in_use_and_missing_environment_are_one_line_exit_2(tiny_onnx, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", tiny_onnx, "--port", port, "--grpc-port", 0, "--metrics-port", 0)
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    missing = invoke("serve", tiny_onnx, "--env", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "tamdeploy serve --setup" in missing.stderr
