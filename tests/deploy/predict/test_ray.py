"""eval / predict --ray: the same results as the local path, on a local Ray instance and on a two-raylet
cluster on loopback; an unreachable address is one line, quickly. Every Ray process started here is
stopped here (``ray.shutdown`` / ``Cluster.shutdown``) and checked gone by PID."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from helpers.cli import invoke
from helpers.video import write_garbage

# Ray reads its settings at import: no usage statistics, no token file, sockets on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip("ray", reason="Ray is in the dev extra: pip install -e '.[dev]'")

from tamdeploy.deploy.predict.evaluate import evaluate  # noqa: E402


def ray_processes() -> set[int]:
    """PIDs of this test process's descendants that are Ray's (raylet, gcs_server, ray:: workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, stack = set(), [os.getpid()]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child)
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"ray" in command and b"pytest" not in command:
                found.add(child)
    return found


def assert_stopped(pids: set[int], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = {p for p in pids if Path(f"/proc/{p}").exists()
                 and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"}
        if not alive:
            return
        time.sleep(0.2)
    raise AssertionError(f"Ray processes still running: {sorted(alive)}")


@pytest.fixture
def annotations(data, tmp_path) -> Path:
    """The labelled set plus one undecodable video, which must travel through Ray as a failure."""
    write_garbage(tmp_path / "broken.mp4")
    lines = [f"{data['root']}/{line}" for line in data["list"].read_text().splitlines()[:20]]
    ann = tmp_path / "val.txt"
    ann.write_text("\n".join(lines[:5] + ["broken.mp4 1"] + lines[5:]) + "\n")
    return ann


def same_results(local, remote) -> None:
    assert [f.source for f in remote.failed] == [f.source for f in local.failed] == [str(local.failed[0].source)]
    assert remote.sources == local.sources and remote.labels == local.labels
    for a, b in zip(local.models, remote.models, strict=True):
        assert b.predicted == a.predicted  # the same top-1 per video
        assert b.top1 == a.top1 and b.top5 == a.top5 and (b.confusion == a.confusion).all()


@pytest.mark.slow
def test_local_ray_instance_gives_the_local_results(data, annotations):
    local = evaluate([data["onnx"], data["int8"]], annotations, workers=0, progress=False)
    before = ray_processes()
    remote = evaluate([data["onnx"], data["int8"]], annotations, progress=False, ray=True)
    assert remote.engine == "ray" and not ray.is_initialized()  # the instance it started, it stopped
    assert_stopped(ray_processes() - before)
    same_results(local, remote)


@pytest.mark.slow
def test_two_raylet_cluster_on_loopback(data, annotations):
    from ray.cluster_utils import Cluster

    local = evaluate([data["onnx"]], annotations, workers=0, progress=False)
    before = ray_processes()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        assert cluster.address.startswith("127.0.0.1:")
        remote = evaluate([data["onnx"]], annotations, progress=False, ray=True, ray_address=cluster.address)
    finally:
        cluster.shutdown()
    assert_stopped(ray_processes() - before)
    same_results(local, remote)


def test_predict_on_ray_matches_local(data):
    runs = [invoke("predict", data["onnx"], data["videos"], "--json", *extra) for extra in (["--workers", "0"],
                                                                                           ["--ray"])]
    assert all(r.exit_code == 0 for r in runs), [r.stderr for r in runs]
    local, remote = (r.json()["predictions"] for r in runs)
    assert [p["top_k"][0]["index"] for p in remote] == [p["top_k"][0]["index"] for p in local]
    for a, b in zip(local, remote, strict=True):
        assert [t["score"] for t in b["top_k"]] == pytest.approx([t["score"] for t in a["top_k"]], abs=1e-5)


def test_unreachable_address_is_one_line_and_exit_2_quickly(data):
    started = time.monotonic()
    result = invoke("eval", data["onnx"], "--ann", data["list"], "--ray-address", "127.0.0.1:9")
    assert result.exit_code == 2 and time.monotonic() - started < 20
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
