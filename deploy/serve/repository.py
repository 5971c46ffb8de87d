"""``tamdeploy package --triton REPO``: a Triton Inference Server model repository for an artifact.

What it writes (one folder per model, each moved into REPO only once complete):

- ``NAME/config.pbtxt`` + ``NAME/1/model.onnx`` (``backend: "onnxruntime"``: Triton's ONNX Runtime runs the
  TAMAggregate node through the model-local function the file carries) or ``NAME/1/model.plan``
  (``backend: "tensorrt"``: the TensorRT version and TAM plugin needs go into the config's parameters and
  REPO/README.md); inputs and outputs with the batch axis left to ``max_batch_size``, ``dynamic_batching``
  with preferred sizes and a queue delay, ``instance_group``;
- with ``preprocess``: ``NAME_preprocess`` (Python backend: encoded video bytes, ``TYPE_STRING``, decoded
  and sampled by tamdeploy's own ``read_views``, so exactly as ``predict`` does), ``NAME_labels`` (Python:
  logits -> top-k class names and scores) and the ensemble ``NAME_video`` (bytes -> clip -> logits ->
  labels): a client sends an mp4 and gets labels back.

Every config is built as Triton's own protobuf message (``tritonclient``'s ``model_config_pb2``), checked
for what the schema cannot say (positive dims, preferred sizes within the maximum batch), printed as text
and parsed back before it is written. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tamdeploy.console import warn
from tamdeploy.errors import BackendUnavailableError, DataError, TamdeployError
from tamdeploy.models.config import ModelConfig

INSTALL_HINT = 'Triton repositories need tritonclient: pip install "tamdeploy[serve]"'
VIDEO_INPUT = "video_bytes"  # the ensemble's input: one encoded video per request
LABELS_OUTPUT, SCORES_OUTPUT = "labels", "scores"


def model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise BackendUnavailableError(INSTALL_HINT) from e
    return model_config_pb2


@dataclass(frozen=True)
class PackageOptions:
    name: str | None = None  # default: the artifact's stem
    max_batch: int = 8
    instances: int = 1
    queue_delay_us: int = 2000
    preprocess: bool = False
    labels: Path | None = None
    top_k: int = 5
    gpu: bool | None = None  # instance kind; None: GPU for a plan, CPU for ONNX


@dataclass(frozen=True)
class ModelIO:
    """What the repository needs to know of the model: its config and tensor names."""

    config: ModelConfig
    input_name: str
    output_name: str
    backend: str  # "onnxruntime" | "tensorrt"
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class PackageResult:
    repository: Path
    models: list[str]
    configs: dict[str, str]  # model -> config.pbtxt text

    def to_dict(self) -> dict[str, Any]:
        return {"repository": str(self.repository), "models": self.models}


def artifact_io(artifact: Path) -> ModelIO:
    """Config and tensor names of a tamdeploy ONNX file (metadata) or TensorRT plan (its sidecar)."""
    if artifact.suffix.lower() == ".onnx":
        import onnx

        from tamdeploy.exporters.metadata import read_metadata

        try:
            model = onnx.load(str(artifact), load_external_data=False)
        except Exception as e:  # noqa: BLE001  (onnx raises DecodeError, OSError, ...)
            raise DataError(f"{artifact} is not a readable ONNX file ({type(e).__name__})") from e
        meta = read_metadata(model)
        if meta is None:
            raise DataError(f"{artifact} carries no tamdeploy metadata (T, input size, classes); export it with "
                            "`tamdeploy export`")
        initializers = {i.name for i in model.graph.initializer}
        inputs = [i.name for i in model.graph.input if i.name not in initializers]
        return ModelIO(meta.config, inputs[0], model.graph.output[0].name, "onnxruntime",
                       {"precision": meta.precision or "fp32"})
    if artifact.suffix.lower() in (".plan", ".engine"):
        from tamdeploy.deploy.runners.sidecar import sidecar_path
        from tamdeploy.deploy.runners.trt import read_sidecar

        sidecar = read_sidecar(artifact)
        if not sidecar or not sidecar.get("config"):
            raise DataError(f"{sidecar_path(artifact)} is missing or records no model config; package engines that "
                            "tamdeploy build made (the sidecar says T, input size, classes and the TensorRT version)")
        plugin = sidecar.get("plugin") or {}
        parameters = {"tensorrt_version": str(sidecar.get("tensorrt_version")),
                      "precision": str(sidecar.get("precision")),
                      "tam_op": str(sidecar.get("tam_op")),
                      "tam_plugin": json.dumps(plugin) if plugin else "none (TAM inlined as standard layers)"}
        profile = (sidecar.get("profiles") or [{}])[0]
        return ModelIO(ModelConfig.from_dict(sidecar["config"]), profile.get("input", "video"),
                       (sidecar.get("outputs") or ["logits"])[0], "tensorrt", parameters)
    raise DataError(f"{artifact} is not a model to serve: give a tamdeploy .onnx (any precision) or a TensorRT .plan")


def _sample_dims(config: ModelConfig) -> list[int]:
    s = config.input_size
    return [config.num_segments, 3, s, s] if config.num_segments else [3, s, s]


def preferred_batches(max_batch: int) -> list[int]:
    """Powers of two up to the maximum batch, and the maximum itself: what the batcher aims for."""
    sizes, b = [], 2
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch] if max_batch > 1 else []


def _set_parameters(message: Any, parameters: dict[str, str]) -> None:
    for key, value in parameters.items():
        message.parameters[key].string_value = value


def model_config(io: ModelIO, name: str, options: PackageOptions) -> Any:
    """The classifier's ModelConfig message."""
    pb = model_config_pb2()
    config = pb.ModelConfig(name=name, backend=io.backend, max_batch_size=options.max_batch)
    config.input.add(name=io.input_name, data_type=pb.TYPE_FP32, dims=_sample_dims(io.config))
    config.output.add(name=io.output_name, data_type=pb.TYPE_FP32, dims=[io.config.num_classes])
    config.dynamic_batching.preferred_batch_size.extend(preferred_batches(options.max_batch))
    config.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    gpu = options.gpu if options.gpu is not None else io.backend == "tensorrt"
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU,
                              count=options.instances)
    config.default_model_filename = "model.plan" if io.backend == "tensorrt" else "model.onnx"
    from tamdeploy import __version__

    _set_parameters(config, {"tamdeploy_version": __version__, "arch": io.config.arch or "",
                             "num_segments": str(io.config.num_segments or 0),
                             "input_size": str(io.config.input_size), **io.parameters})
    return config


def preprocess_config(io: ModelIO, name: str, options: PackageOptions) -> Any:
    """bytes -> the model's input, by tamdeploy's decoding (its parameters carry the clip geometry)."""
    pb = model_config_pb2()
    config = pb.ModelConfig(name=name, backend="python", max_batch_size=options.max_batch)
    config.input.add(name=VIDEO_INPUT, data_type=pb.TYPE_STRING, dims=[1])
    config.output.add(name=io.input_name, data_type=pb.TYPE_FP32, dims=_sample_dims(io.config))
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=options.instances)
    _set_parameters(config, {"model_config": json.dumps(io.config.to_dict()), "output_name": io.input_name})
    return config


def labels_config(io: ModelIO, name: str, options: PackageOptions) -> Any:
    pb = model_config_pb2()
    k = min(options.top_k, io.config.num_classes)
    config = pb.ModelConfig(name=name, backend="python", max_batch_size=options.max_batch)
    config.input.add(name=io.output_name, data_type=pb.TYPE_FP32, dims=[io.config.num_classes])
    config.output.add(name=LABELS_OUTPUT, data_type=pb.TYPE_STRING, dims=[k])
    config.output.add(name=SCORES_OUTPUT, data_type=pb.TYPE_FP32, dims=[k])
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=1)
    _set_parameters(config, {"top_k": str(k), "input_name": io.output_name})
    return config


def ensemble_config(io: ModelIO, names: dict[str, str], options: PackageOptions) -> Any:
    pb = model_config_pb2()
    k = min(options.top_k, io.config.num_classes)
    config = pb.ModelConfig(name=names["video"], platform="ensemble", max_batch_size=options.max_batch)
    config.input.add(name=VIDEO_INPUT, data_type=pb.TYPE_STRING, dims=[1])
    config.output.add(name=LABELS_OUTPUT, data_type=pb.TYPE_STRING, dims=[k])
    config.output.add(name=SCORES_OUTPUT, data_type=pb.TYPE_FP32, dims=[k])
    config.output.add(name=io.output_name, data_type=pb.TYPE_FP32, dims=[io.config.num_classes])
    steps = config.ensemble_scheduling.step
    clip, logits = "clip", io.output_name
    first = steps.add(model_name=names["preprocess"], model_version=-1)
    first.input_map[VIDEO_INPUT] = VIDEO_INPUT
    first.output_map[io.input_name] = clip
    second = steps.add(model_name=names["model"], model_version=-1)
    second.input_map[io.input_name] = clip
    second.output_map[io.output_name] = logits
    third = steps.add(model_name=names["labels"], model_version=-1)
    third.input_map[io.output_name] = logits
    third.output_map[LABELS_OUTPUT] = LABELS_OUTPUT
    third.output_map[SCORES_OUTPUT] = SCORES_OUTPUT
    return config


def validate(config: Any) -> str:
    """The config as text, after the checks the schema cannot make; parsed back to prove it reads."""
    from google.protobuf import text_format

    name = config.name
    if config.max_batch_size < 1:
        raise TamdeployError(f"{name}: max_batch_size must be at least 1, got {config.max_batch_size}")
    for tensor in (*config.input, *config.output):
        if not tensor.dims or any(d < 1 for d in tensor.dims):
            raise TamdeployError(f"{name}: tensor {tensor.name} has dims {list(tensor.dims)}; every dim must be >= 1")
    batching = config.dynamic_batching
    if any(b > config.max_batch_size for b in batching.preferred_batch_size):
        raise TamdeployError(f"{name}: preferred batch sizes {list(batching.preferred_batch_size)} exceed "
                             f"max_batch_size {config.max_batch_size}")
    if any(g.count < 1 for g in config.instance_group):
        raise TamdeployError(f"{name}: instance count must be at least 1")
    text = text_format.MessageToString(config)
    text_format.Parse(text, model_config_pb2().ModelConfig())
    return text


def _python_model(source: str) -> str:
    return resources.files("tamdeploy.deploy.serve.triton_models").joinpath(source).read_text()


def package_triton(artifact: str | os.PathLike, repository: str | os.PathLike,
                   options: PackageOptions | None = None) -> PackageResult:
    """Write ARTIFACT's models into REPOSITORY (created if missing); a model folder that already exists
    there is an error, and a failure leaves REPOSITORY as it was."""
    from tamdeploy.deploy.predict.labels import check_label_count, read_labels

    options = options or PackageOptions()
    artifact, repository = Path(artifact), Path(repository)
    if not artifact.is_file():
        raise DataError(f"{artifact} does not exist" if not artifact.exists() else f"{artifact} is not a file")
    for name, value, least in (("max_batch", options.max_batch, 1), ("instances", options.instances, 1),
                               ("top_k", options.top_k, 1), ("queue_delay_us", options.queue_delay_us, 0)):
        if value < least:  # named alone: serve passes only `instances` on
            raise DataError(f"`{name}` must be at least {least}, got {value}")
    io = artifact_io(artifact)
    if options.preprocess and options.top_k > io.config.num_classes:
        warn(f"`top_k={options.top_k}` is more than the model's {io.config.num_classes} classes: the video ensemble "
             f"returns all {io.config.num_classes}")
    base = options.name or artifact.name.split(".")[0]
    if not base.replace("_", "").replace("-", "").isalnum():
        raise DataError(f"model name {base!r}: use letters, digits, - and _ (Triton names folders by it)")
    names = {"model": base, "preprocess": f"{base}_preprocess", "labels": f"{base}_labels", "video": f"{base}_video"}
    wanted = [names["model"]] + ([names["preprocess"], names["labels"], names["video"]] if options.preprocess else [])
    taken = [n for n in wanted if (repository / n).exists()]
    if taken:
        raise DataError(f"{repository} already holds {', '.join(taken)}; remove it or pass another `name`")
    if repository.exists() and not repository.is_dir():
        raise DataError(f"{repository} is not a folder")
    class_names = None
    if options.labels is not None:
        class_names = read_labels(options.labels)
        check_label_count(class_names, io.config.num_classes, options.labels)

    configs = {names["model"]: validate(model_config(io, names["model"], options))}
    if options.preprocess:
        configs[names["preprocess"]] = validate(preprocess_config(io, names["preprocess"], options))
        configs[names["labels"]] = validate(labels_config(io, names["labels"], options))
        configs[names["video"]] = validate(ensemble_config(io, names, options))

    repository.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{repository.name}-", dir=repository.parent) as staging:
        stage = Path(staging)
        model_file = "model.plan" if io.backend == "tensorrt" else "model.onnx"
        _model_folder(stage / names["model"], configs[names["model"]], {model_file: artifact})
        if options.preprocess:
            _model_folder(stage / names["preprocess"], configs[names["preprocess"]],
                          {"model.py": _python_model("preprocess.py")})
            labels_text = "\n".join(class_names or [str(i) for i in range(io.config.num_classes)]) + "\n"
            _model_folder(stage / names["labels"], configs[names["labels"]],
                          {"model.py": _python_model("labels.py"), "labels.txt": labels_text})
            _model_folder(stage / names["video"], configs[names["video"]], {})
        for name in wanted:  # each folder appears complete, or not at all
            os.replace(stage / name, repository / name)
    _write_readme(repository, names, io, options)
    return PackageResult(repository, wanted, configs)


def _model_folder(folder: Path, config_text: str, version_files: dict[str, Path | str]) -> None:
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(config_text)
    for filename, content in version_files.items():
        target = folder / "1" / filename
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(content)


def _write_readme(repository: Path, names: dict[str, str], io: ModelIO, options: PackageOptions) -> None:
    from tamdeploy.files import write_bytes_atomic

    lines = [f"## {names['model']}", "",
             f"- `{names['model']}`: backend `{io.backend}`, input `{io.input_name}` "
             f"FP32 {_sample_dims(io.config)} (batch axis from max_batch_size {options.max_batch}), "
             f"output `{io.output_name}` FP32 [{io.config.num_classes}]."]
    if io.backend == "tensorrt":
        lines.append(f"- TensorRT {io.parameters['tensorrt_version']} built this plan: serve it with the Triton "
                     f"release that ships that TensorRT, on the GPU it was built for. TAM plugin: "
                     f"{io.parameters['tam_plugin']}.")
    if options.preprocess:
        lines += [f"- `{names['video']}` (ensemble): send one encoded video per request as `{VIDEO_INPUT}` "
                  f"(TYPE_STRING); get `{LABELS_OUTPUT}` and `{SCORES_OUTPUT}` (top-{options.top_k}) and the logits.",
                  f"- `{names['preprocess']}` and `{names['labels']}` are Python-backend models: the Python that runs "
                  "them needs `pip install --no-deps tamdeploy` plus `av`, `rich` and numpy (no torch)."]
    readme = repository / "README.md"
    old = readme.read_text() if readme.exists() else "# Triton model repository written by tamdeploy package\n\n"
    write_bytes_atomic(readme, (old.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n").encode())
