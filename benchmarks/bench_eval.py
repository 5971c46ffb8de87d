"""Issue 17's measurements: does decoding starve the model, does seeking beat decoding from the start,
and what does Ray cost on this machine.

    python benchmarks/bench_eval.py [--clips 64] [--seconds 10] [--rounds 3] [--workers 1] [--threads 1]
                                    [--ray-clips 200] [--out-dir runs/bench_eval]

1. Pipeline: the demo-size TANet (width 0.25, T=8, 112x112, ONNX Runtime) on CLIPS mp4 files of
   320x240, SECONDS long at 25 fps (H.264, a keyframe every 2 s), views 1x1. Per round, side by side:
   decode only (the same worker pool, no model), model only (the same batches from memory), and
   ``evaluate()`` end to end; the target is end-to-end >= 85% of min(decode-only, model-only) videos/s.
   Also end to end with ``workers=0`` (decode and model taking turns) for reference.
2. Seeking: 8 frames of a 10-minute clip (15000 frames) by ``read_video_views`` (seek) against decoding
   from the first frame to the last wanted one (what tamdeploy did before).
3. Ray (with ``--ray-clips``): ``evaluate(ray=True)`` on a local Ray instance against the local path on
   the same clips, wall time including Ray's start; target <= 1.5x.

The CPU and versions are printed and written to the results file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from tamdeploy.deploy.inputs.clips import ClipSpec, read_views
from tamdeploy.deploy.inputs.synthetic import DIRECTIONS, moving_square, write_video
from tamdeploy.deploy.inputs.video import FrameTransform, Views, read_video_views, segment_indices
from tamdeploy.deploy.predict.decoding import Decoded, decoded
from tamdeploy.deploy.predict.evaluate import evaluate
from tamdeploy.deploy.predict.predictor import predict_stream
from tamdeploy.deploy.runners import open_runner
from tamdeploy.system import system_info

FPS, WIDTH, HEIGHT = 25, 320, 240


def clip_frames(label: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    square = moving_square(DIRECTIONS[label], frames, HEIGHT, rng)
    return np.pad(square, ((0, 0), (0, 0), ((WIDTH - HEIGHT) // 2, (WIDTH - HEIGHT) // 2), (0, 0)), mode="edge")


def write_set(directory: Path, count: int, seconds: float, seed: int = 0) -> Path:
    """COUNT clips and a video list ``val.txt`` (made once; reused when there)."""
    directory.mkdir(parents=True, exist_ok=True)
    ann = directory / "val.txt"
    if ann.is_file() and len(ann.read_text().splitlines()) == count:
        return ann
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        label = i % len(DIRECTIONS)
        path = directory / f"{i:04d}.mp4"
        write_video(path, clip_frames(label, int(seconds * FPS), rng), fps=FPS, gop=2 * FPS,
                    options={"preset": "veryfast"})
        lines.append(f"{path.name} {label}\n")
    ann.write_text("".join(lines))
    return ann


def demo_onnx(out_dir: Path) -> Path:
    from tamdeploy.deploy.demo import _demo_model
    from tamdeploy.exporters.pipeline import export_checkpoint
    from tamdeploy.models import save_checkpoint

    path = out_dir / "tanet_demo.onnx"
    if not path.is_file():
        export_checkpoint(save_checkpoint(_demo_model(), None, out_dir / "tanet_demo.pth"), path)
    return path


def rate(count: int, seconds: float) -> float:
    return count / seconds


def pipeline_round(model: Path, ann: Path, sources: list[str], spec: ClipSpec, workers: int, threads: int,
                   batch: int, cached: list[Decoded]) -> dict[str, float]:
    started = time.perf_counter()
    for _ in decoded(sources, spec, Views(), workers):
        pass
    decode = rate(len(sources), time.perf_counter() - started)
    with open_runner(model, threads=threads) as runner:
        predict_stream(cached[:batch], [runner], batch)  # warm-up, as evaluate's first batch also pays it
        started = time.perf_counter()
        for _ in predict_stream(cached, [runner], batch):
            pass
        model_only = rate(len(cached), time.perf_counter() - started)
    result = {"decode": decode, "model": model_only}
    for w in (workers, 0):
        report = evaluate([model], ann, workers=w, threads=threads, batch=batch, progress=False)
        result[f"eval_w{w}"] = rate(report.videos, report.seconds)
    return result


def seek_vs_start(out_dir: Path) -> dict[str, float]:
    from tamdeploy.deploy.inputs import video

    long_clip = out_dir / "ten_minutes.mp4"
    if not long_clip.is_file():
        write_video(long_clip, clip_frames(0, 600 * FPS, np.random.default_rng(1)), fps=FPS, gop=2 * FPS,
                    options={"preset": "ultrafast"})
    transform = FrameTransform(112, 128)
    timings: dict[str, list[float]] = {"seek": [], "from_start": []}
    for _ in range(3):
        started = time.perf_counter()
        read_video_views(long_clip, 8, transform)
        timings["seek"].append(time.perf_counter() - started)
        started = time.perf_counter()
        video._decode_from_start(long_clip, segment_indices(600 * FPS, 8), transform.views)
        timings["from_start"].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ray-clips", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/bench_eval"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    info = system_info()
    print(json.dumps({"cpu": info.cpu, "cores": info.logical_cores, "isa": info.isa, "runtimes": info.runtimes}))

    model = demo_onnx(args.out_dir)
    ann = write_set(args.out_dir / "clips", args.clips, args.seconds)
    sources = [str(ann.parent / line.split()[0]) for line in ann.read_text().splitlines()]
    with open_runner(model) as runner:
        spec = ClipSpec.from_config(runner.config)
    cached = [Decoded(i, s, read_views(s, spec)) for i, s in enumerate(sources)]
    rounds = [pipeline_round(model, ann, sources, spec, args.workers, args.threads, args.batch, cached)
              for _ in range(args.rounds)]
    summary = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    ratios = [r[f"eval_w{args.workers}"] / min(r["decode"], r["model"]) for r in rounds]
    results = {"rounds": rounds, "median": summary, "eval / min(decode, model)": statistics.median(ratios),
               "per_round_ratio": ratios, "seek_vs_start_s": seek_vs_start(args.out_dir), "args": vars(args)}
    if args.ray_clips:
        ray_ann = write_set(args.out_dir / "ray_clips", args.ray_clips, 2.0, seed=2)
        timings = {}
        for label, use_ray in (("local", False), ("ray", True), ("local_again", False)):
            started = time.perf_counter()
            report = evaluate([model], ray_ann, workers=args.workers, threads=args.threads, batch=args.batch,
                              progress=False, ray=use_ray)
            timings[label] = time.perf_counter() - started
            timings[f"{label}_top1"] = report.models[0].top1
        timings["ray / local"] = timings["ray"] / statistics.mean([timings["local"], timings["local_again"]])
        results["ray"] = timings
    results["args"]["out_dir"] = str(args.out_dir)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
