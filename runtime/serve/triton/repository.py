"""Writing the Triton model repository (layout and tensors: :mod:`runtime.serve.triton`).

Two kinds, one ensemble:

* from an engine (``--engine``): ``retinaface_net`` is ``platform: "tensorrt_plan"`` with the plan's bytes
  (checked against its sidecar), its input and output names and dims from the sidecar, its largest batch
  from the sidecar's optimization profile, and ``instance_group`` KIND_GPU (``count`` instances on every
  GPU the server sees);
* from weights (``--weights``): ``retinaface_net`` is a Python-backend model running the project's executor
  on a copy of the weights (KIND_CPU), so the same repository is served where TensorRT is not.

The repository is built in a temporary folder beside the destination and renamed into place once complete,
so a failed export leaves nothing behind (and ``force`` replaces an old repository only then).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError
from runtime.face import DEFAULT_VIS_THRESHOLD
from runtime.options import (DEFAULT_INPUT_SIZE, DEFAULT_MAX_PIXELS, DetectionOptions, check_count,
                             check_input_size, check_probability, check_resize)
from runtime.serve import triton as names
from runtime.serve.triton.pbtxt import Enum, to_pbtxt

VERSION = "1"                 # every model's one version folder
DEFAULT_EXECUTOR_BATCH = 16   # largest batch of the executor route (an engine brings its own)


@dataclass(frozen=True)
class ExportOptions:
    """The repository's settings. Checked when created.

    resize:        ``letterbox`` (default) or ``stretch``: batches need one input size, so not ``original``
    input_size:    (W, H) of the network input (default 640×640); a fixed-size engine's own size
    detection:     confidence / NMS thresholds, top_k, keep_top_k (detect.py's defaults)
    vis_threshold: faces in the outputs score at least this (default 0.6, the SDK's)
    max_pixels:    larger images are refused (default 40 M; 0: no limit)
    max_batch:     ``max_batch_size`` of every model; None: the engine's largest batch, or 16
    max_delay_us:  dynamic batching's ``max_queue_delay_microseconds`` (default 2000)
    instances:     instances of each model (per GPU for a plan) (default 1)
    precision:     ``fp32`` or ``fp16`` for the executor route (an engine keeps its own)
    """

    resize: str = "letterbox"
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    detection: DetectionOptions = field(default_factory=DetectionOptions)
    vis_threshold: float = DEFAULT_VIS_THRESHOLD
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int | None = None
    max_delay_us: int = 2000
    instances: int = 1
    precision: str = "fp32"

    def __post_init__(self):
        if check_resize(self.resize) == "original":
            raise RetinaFaceError("Triton batches images of one input size: use --resize letterbox or stretch, "
                                  "not original")
        object.__setattr__(self, "input_size", check_input_size(self.input_size))
        object.__setattr__(self, "vis_threshold", check_probability("vis_threshold", self.vis_threshold))
        object.__setattr__(self, "max_pixels", check_count("max_pixels", self.max_pixels, low=0))
        object.__setattr__(self, "max_delay_us", check_count("max_delay_us", self.max_delay_us, low=0))
        object.__setattr__(self, "instances", check_count("instances", self.instances))
        if self.max_batch is not None:
            object.__setattr__(self, "max_batch", check_count("max_batch", self.max_batch))


@dataclass(frozen=True)
class NetworkModel:
    """The ``retinaface_net`` model of one route: what the other models are fitted to."""

    config: dict                 # its config (without name, max_batch_size)
    files: dict[str, bytes]      # file name in the version folder → content
    backbone: str                # "mobilenet0.25" or "resnet50"
    max_batch: int
    input_dims: list[int]        # [3, H, W] (-1 where the engine is dynamic)
    output_dims: dict[str, list[int]]
    header: str = ""


def write_repository(output: str | os.PathLike, engine=None, weights=None,
                     options: ExportOptions = ExportOptions(), force: bool = False) -> Path:
    """Write the repository for ``engine`` (a TensorRT engine with its sidecar) or ``weights`` (.pth/.wts)."""
    if (engine is None) == (weights is None):
        raise RetinaFaceError("export-triton needs exactly one model: --engine ENGINE (a TensorRT plan) or "
                              "--weights W (.pth/.wts, run by the executor)")
    output = _check_destination(Path(output), force)
    net = plan_model(Path(engine), options) if engine is not None else executor_model(Path(weights), options)
    _write_tree(output, repository_files(net, options))
    return output


def repository_files(net: NetworkModel, options: ExportOptions) -> dict[str, bytes | None]:
    """Every file of the repository (relative path → bytes; None for an empty folder)."""
    header = f"written by retinaface-trt export-triton {__version__}"
    configs = {names.ENSEMBLE: ensemble_config(net), names.PRE: pre_config(net, options),
               names.NET: {"name": names.NET, "max_batch_size": net.max_batch, **net.config},
               names.POST: post_config(net, options)}
    files: dict[str, bytes | None] = {f"{names.ENSEMBLE}/{VERSION}": None}
    for model, config in configs.items():
        text_header = header + ("\n" + net.header if model == names.NET and net.header else "")
        files[f"{model}/config.pbtxt"] = to_pbtxt(config, text_header).encode()
    for model, source in ((names.PRE, "pre.py"), (names.POST, "post.py")):
        files[f"{model}/{VERSION}/model.py"] = _model_source(source)
    files.update({f"{names.NET}/{VERSION}/{name}": data for name, data in net.files.items()})
    return files


def plan_model(engine: Path, options: ExportOptions) -> NetworkModel:
    """``retinaface_net`` as a TensorRT plan, fitted to the engine's sidecar."""
    from network import INPUT_NAME, OUTPUT_NAMES
    from runtime.backends.tensorrt.sidecar import read_engine_bytes, read_sidecar

    info = read_sidecar(engine)
    plan = read_engine_bytes(engine, info)
    if info.get("input_name") != INPUT_NAME or sorted(info.get("outputs", {})) != sorted(OUTPUT_NAMES):
        raise RetinaFaceError(f"engine {engine} has input {info.get('input_name')!r} and outputs "
                              f"{sorted(info.get('outputs', {}))}, expected {INPUT_NAME!r} and {list(OUTPUT_NAMES)}; "
                              "rebuild it with `retinaface-trt build`")
    input_dims = [int(d) for d in info["input_shape"][1:]]
    _check_engine_size(engine, input_dims, info["profile"], options.input_size)
    max_batch = _engine_batch(engine, int(info["profile"]["max"][0]), options.max_batch)
    output_dims = {name: [int(d) for d in info["outputs"][name][1:]] for name in OUTPUT_NAMES}
    config = {"platform": "tensorrt_plan",
              "input": [_tensor(INPUT_NAME, "TYPE_FP32", input_dims)],
              "output": [_tensor(name, "TYPE_FP32", output_dims[name]) for name in OUTPUT_NAMES],
              "dynamic_batching": _batching(options), "instance_group": _instances("KIND_GPU", options)}
    header = (f"engine built with TensorRT {info.get('tensorrt_version')} on {info.get('gpu_name')} (compute "
              f"capability {info.get('compute_capability')}), {info.get('precision')}: serve it with a Triton "
              "release on that TensorRT version, on GPUs of that architecture")
    return NetworkModel(config, {"model.plan": plan}, info["backbone"], max_batch, input_dims, output_dims, header)


def executor_model(weights: Path, options: ExportOptions) -> NetworkModel:
    """``retinaface_net`` as a Python-backend model running the executor on a copy of ``weights``."""
    from network import INPUT_NAME, OUTPUT_NAMES
    from network.config import config_for_weights
    from wts_export.weights import load_weights

    if not weights.is_file():
        raise RetinaFaceError(f"weights file {weights} not found; expected a .pth or .wts file")
    cfg = config_for_weights(load_weights(weights))   # a bad checkpoint fails here, before anything is written
    width, height = options.input_size
    input_dims = [3, height, width]
    output_dims = _output_dims(cfg, options.input_size)
    parameters = {"weights": "weights" + weights.suffix.lower(), "backend": "torch", "precision": options.precision}
    config = {"backend": "python",
              "input": [_tensor(INPUT_NAME, "TYPE_FP32", input_dims)],
              "output": [_tensor(name, "TYPE_FP32", output_dims[name]) for name in OUTPUT_NAMES],
              "dynamic_batching": _batching(options), "instance_group": _instances("KIND_CPU", options),
              "parameters": _parameters(parameters)}
    files = {"model.py": _model_source("net.py"), parameters["weights"]: weights.read_bytes()}
    return NetworkModel(config, files, cfg.name, options.max_batch or DEFAULT_EXECUTOR_BATCH,
                        input_dims, output_dims)


def pre_config(net: NetworkModel, options: ExportOptions) -> dict:
    from network import INPUT_NAME

    width, height = options.input_size
    return {"name": names.PRE, "backend": "python", "max_batch_size": net.max_batch,
            "input": [_tensor(names.IMAGE, "TYPE_STRING", [1])],
            "output": [_tensor(INPUT_NAME, "TYPE_FP32", net.input_dims), _tensor(names.TRANSFORM, "TYPE_FP64", [4])],
            "dynamic_batching": _batching(options), "instance_group": _instances("KIND_CPU", options),
            "parameters": _parameters({"resize": options.resize, "input_width": width, "input_height": height,
                                       "max_pixels": options.max_pixels})}


def post_config(net: NetworkModel, options: ExportOptions) -> dict:
    from network import OUTPUT_NAMES

    width, height = options.input_size
    detection = options.detection
    settings = {"backbone": net.backbone, "input_width": width, "input_height": height,
                "confidence_threshold": detection.confidence_threshold, "nms_threshold": detection.nms_threshold,
                "top_k": detection.top_k, "keep_top_k": detection.keep_top_k, "vis_threshold": options.vis_threshold}
    inputs = [_tensor(name, "TYPE_FP32", net.output_dims[name]) for name in OUTPUT_NAMES]
    return {"name": names.POST, "backend": "python", "max_batch_size": net.max_batch,
            "input": inputs + [_tensor(names.TRANSFORM, "TYPE_FP64", [4])],
            "output": _face_outputs(), "dynamic_batching": _batching(options),
            "instance_group": _instances("KIND_CPU", options), "parameters": _parameters(settings)}


def ensemble_config(net: NetworkModel) -> dict:
    """The ensemble: IMAGE → pre → net → post → BOXES, SCORES, LANDMARKS, COUNT."""
    from network import INPUT_NAME, OUTPUT_NAMES

    faces = (names.BOXES, names.SCORES, names.LANDMARKS, names.COUNT)
    steps = [_step(names.PRE, {names.IMAGE: names.IMAGE}, {INPUT_NAME: "network_input", names.TRANSFORM: "transform"}),
             _step(names.NET, {INPUT_NAME: "network_input"}, {name: name for name in OUTPUT_NAMES}),
             _step(names.POST, {**{name: name for name in OUTPUT_NAMES}, names.TRANSFORM: "transform"},
                   {name: name for name in faces})]
    return {"name": names.ENSEMBLE, "platform": "ensemble", "max_batch_size": net.max_batch,
            "input": [_tensor(names.IMAGE, "TYPE_STRING", [1])], "output": _face_outputs(),
            "ensemble_scheduling": {"step": steps}}


def _face_outputs() -> list[dict]:
    return [_tensor(names.BOXES, "TYPE_FP32", [-1, 4]), _tensor(names.SCORES, "TYPE_FP32", [-1]),
            _tensor(names.LANDMARKS, "TYPE_FP32", [-1, 10]), _tensor(names.COUNT, "TYPE_INT32", [1])]


def _output_dims(cfg, input_size: tuple[int, int]) -> dict[str, list[int]]:
    """Per-image output dims for a fixed input size: P priors × (4, 2, 10)."""
    from network import OUTPUT_NAMES
    from runtime.priors import prior_boxes

    width, height = input_size
    priors = len(prior_boxes(cfg, height, width))
    return {name: [priors, size] for name, size in zip(OUTPUT_NAMES, (4, 2, 10))}


def _check_engine_size(engine: Path, input_dims: list[int], profile: dict, input_size: tuple[int, int]) -> None:
    width, height = input_size
    fixed = input_dims[1:]
    if -1 not in fixed and fixed != [height, width]:
        raise RetinaFaceError(f"engine {engine} takes {fixed[1]}x{fixed[0]} inputs, but input size "
                              f"{width}x{height} was asked for; pass --input-size {fixed[1]}x{fixed[0]}")
    low, high = profile["min"][2:], profile["max"][2:]
    if not (low[0] <= height <= high[0] and low[1] <= width <= high[1]):
        raise RetinaFaceError(f"engine {engine} takes inputs from {low[1]}x{low[0]} to {high[1]}x{high[0]}, "
                              f"but input size {width}x{height} was asked for; pass an --input-size in that range")


def _engine_batch(engine: Path, largest: int, asked: int | None) -> int:
    if asked is not None and asked > largest:
        raise RetinaFaceError(f"engine {engine} was built for batches up to {largest}, but --max-batch {asked} "
                              f"was asked for; pass --max-batch {largest} or less, or rebuild it with "
                              f"`retinaface-trt build --max-batch {asked}`")
    return asked or largest


def _tensor(name: str, data_type: str, dims: list[int]) -> dict:
    return {"name": name, "data_type": Enum(data_type), "dims": list(dims)}


def _batching(options: ExportOptions) -> dict:
    return {"max_queue_delay_microseconds": options.max_delay_us}


def _instances(kind: str, options: ExportOptions) -> list[dict]:
    return [{"count": options.instances, "kind": Enum(kind)}]


def _parameters(values: dict) -> list[dict]:
    return [{"key": key, "value": {"string_value": str(value)}} for key, value in values.items()]


def _step(model: str, inputs: dict, outputs: dict) -> dict:
    return {"model_name": model, "model_version": -1,
            "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
            "output_map": [{"key": k, "value": v} for k, v in outputs.items()]}


def _model_source(name: str) -> bytes:
    return resources.files("runtime.serve.triton").joinpath("models", name).read_bytes()


def _check_destination(output: Path, force: bool) -> Path:
    if output.exists() and not output.is_dir():
        raise RetinaFaceError(f"{output} is a file; expected a folder for the model repository")
    if output.exists() and not force:
        raise RetinaFaceError(f"{output} already exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise RetinaFaceError(f"cannot write {output}: folder {output.parent} does not exist")
    return output


def _write_tree(output: Path, files: dict[str, bytes | None]) -> None:
    """Write ``files`` into a temporary folder beside ``output``, then put it in ``output``'s place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent))
    try:
        os.chmod(staging, 0o755)   # mkdtemp's 0700 would hide the repository from a server run as another user
        for relative, data in files.items():
            path = staging / relative
            if data is None:
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        _replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace(staging: Path, output: Path) -> None:
    if not output.exists():
        os.rename(staging, output)
        return
    retired = output.with_name(f".{output.name}.old-{os.getpid()}")
    os.rename(output, retired)
    os.rename(staging, output)
    shutil.rmtree(retired, ignore_errors=True)
