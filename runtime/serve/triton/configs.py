"""The ``config.pbtxt`` of each model of the repository, as dicts for :func:`runtime.serve.triton.pbtxt.to_pbtxt`.

:class:`ExportOptions` holds what the user chose, :class:`NetworkModel` what the network model of one route
(plan or executor) brings; the pre, post and ensemble configs are fitted to both, so that every tensor passed
between two models has one name, type and shape on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from retinaface_trt.errors import RetinaFaceError
from runtime.face import DEFAULT_VIS_THRESHOLD
from retinaface_trt.thresholds import Thresholds
from runtime.options import (DEFAULT_INPUT_SIZE, DEFAULT_MAX_PIXELS, check_count,
                             check_input_size, check_probability, check_resize)
from runtime.serve import triton as names
from runtime.serve.triton.pbtxt import Enum


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
    precision:     ``fp32`` or ``fp16`` of a network built or run from weights (an engine keeps its own)
    """

    resize: str = "letterbox"
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    detection: Thresholds = field(default_factory=Thresholds)
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


def pre_config(net: NetworkModel, options: ExportOptions) -> dict:
    from network import INPUT_NAME

    width, height = options.input_size
    return {"name": names.PRE, "backend": "python", "max_batch_size": net.max_batch,
            "input": [tensor(names.IMAGE, "TYPE_STRING", [1])],
            "output": [tensor(INPUT_NAME, "TYPE_FP32", net.input_dims), tensor(names.TRANSFORM, "TYPE_FP64", [4])],
            "dynamic_batching": batching(options), "instance_group": instances("KIND_CPU", options),
            "parameters": parameter_list({"resize": options.resize, "input_width": width, "input_height": height,
                                       "max_pixels": options.max_pixels})}


def post_config(net: NetworkModel, options: ExportOptions) -> dict:
    from network import OUTPUT_NAMES

    width, height = options.input_size
    detection = options.detection
    settings = {"backbone": net.backbone, "input_width": width, "input_height": height,
                "confidence_threshold": detection.confidence_threshold, "nms_threshold": detection.nms_threshold,
                "top_k": detection.top_k, "keep_top_k": detection.keep_top_k, "vis_threshold": options.vis_threshold}
    inputs = [tensor(name, "TYPE_FP32", net.output_dims[name]) for name in OUTPUT_NAMES]
    return {"name": names.POST, "backend": "python", "max_batch_size": net.max_batch,
            "input": inputs + [tensor(names.TRANSFORM, "TYPE_FP64", [4])],
            "output": _face_outputs(), "dynamic_batching": batching(options),
            "instance_group": instances("KIND_CPU", options), "parameters": parameter_list(settings)}


def ensemble_config(net: NetworkModel) -> dict:
    """The ensemble: IMAGE → pre → net → post → BOXES, SCORES, LANDMARKS, COUNT."""
    from network import INPUT_NAME, OUTPUT_NAMES

    faces = (names.BOXES, names.SCORES, names.LANDMARKS, names.COUNT)
    steps = [_step(names.PRE, {names.IMAGE: names.IMAGE}, {INPUT_NAME: "network_input", names.TRANSFORM: "transform"}),
             _step(names.NET, {INPUT_NAME: "network_input"}, {name: name for name in OUTPUT_NAMES}),
             _step(names.POST, {**{name: name for name in OUTPUT_NAMES}, names.TRANSFORM: "transform"},
                   {name: name for name in faces})]
    return {"name": names.ENSEMBLE, "platform": "ensemble", "max_batch_size": net.max_batch,
            "input": [tensor(names.IMAGE, "TYPE_STRING", [1])], "output": _face_outputs(),
            "ensemble_scheduling": {"step": steps}}


def _face_outputs() -> list[dict]:
    return [tensor(names.BOXES, "TYPE_FP32", [-1, 4]), tensor(names.SCORES, "TYPE_FP32", [-1]),
            tensor(names.LANDMARKS, "TYPE_FP32", [-1, 10]), tensor(names.COUNT, "TYPE_INT32", [1])]


def tensor(name: str, data_type: str, dims: list[int]) -> dict:
    """A ModelInput / ModelOutput: ``data_type`` such as TYPE_FP32, per-item ``dims`` (-1: any)."""
    return {"name": name, "data_type": Enum(data_type), "dims": list(dims)}


def batching(options: ExportOptions) -> dict:
    """``dynamic_batching``: Triton gathers requests for up to ``max_delay_us`` µs."""
    return {"max_queue_delay_microseconds": options.max_delay_us}


def instances(kind: str, options: ExportOptions) -> list[dict]:
    """``instance_group``: ``options.instances`` copies of KIND_GPU (on every GPU) or KIND_CPU."""
    return [{"count": options.instances, "kind": Enum(kind)}]


def parameter_list(values: dict) -> list[dict]:
    """``parameters`` entries (Triton's are strings), in ``values``' order."""
    return [{"key": key, "value": {"string_value": str(value)}} for key, value in values.items()]


def _step(model: str, inputs: dict, outputs: dict) -> dict:
    return {"model_name": model, "model_version": -1,
            "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
            "output_map": [{"key": k, "value": v} for k, v in outputs.items()]}
