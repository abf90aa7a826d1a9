"""What builds and loads the selftest's engines: TensorRT, or the executor standing in for it (the dry run).

Both follow one protocol, so that everything around them (inputs, writing the engine and its sidecar,
comparing, judging: :mod:`runtime.selftest.run`) is the same code for both:

* ``name`` ("tensorrt" or "torch"), ``label`` (one line for the report), ``device`` (where inputs go);
* ``unsupported(case) -> str | None``: why this case cannot run here (a skipped case), or None;
* ``build(case, model) -> (plan bytes, sidecar dict)``: build and serialize one engine;
* ``open(engine_path)``: deserialize an engine written with its sidecar; the result has ``infer(batch)``,
  ``postprocess_in_network`` and ``close()`` (and is a context manager), as
  :class:`runtime.backends.tensorrt.engine.TensorRTBackend` has;
* ``environment() -> dict``: versions and the device, for the report.

:class:`TensorRTEngines` is the real thing: the project's builder (:mod:`runtime.backends.tensorrt.build`,
``build_onnx``) and runner (``TensorRTBackend``). :class:`ExecutorStandIn` replaces the build and the
deserialization for the dry run (``--backend torch``): its "plan" is a recipe (backbone, precision, input
shape, post-processing, the weights' sha256), deserialized by building the same network definition on the
executor, BatchNorm folded in fp32 as an engine does and the strongly typed float16 graph in fp16, under
TensorRT 11's rules (the executor's ``trt`` namespace is 11.4's); the ONNX route runs the exported model in
ONNX Runtime. Portability options are recorded in the sidecar but change nothing in the stand-in.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint

DRY_RUN_HINT = "without it, `retinaface-trt selftest --backend torch` runs every case as a dry run on the executor"
ONNX_EXTRA = install_hint("onnx")
RECIPE_FORMAT = "retinaface-trt executor stand-in 1"


def missing_modules(names) -> list[str]:
    """The modules of ``names`` that cannot be imported."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _onnx_reason(trt, precision: str, modules) -> str | None:
    """Why the ONNX route cannot run: a missing extra, or a precision ``trt`` cannot build from ONNX."""
    from runtime.backends.tensorrt.compat import precision_plan

    missing = missing_modules(modules)
    if missing:
        return f"the ONNX route needs the [onnx] extra ({', '.join(missing)} not installed): {ONNX_EXTRA}"
    try:
        precision_plan(trt, precision, onnx=True)
    except RetinaFaceError as error:
        return str(error)
    return None


def sidecar_for(trt, options, built: dict, model, plan: bytes, device, onnx: bool) -> dict:
    """The sidecar of a freshly built selftest engine (:func:`runtime.backends.tensorrt.build.sidecar_info`)."""
    import hashlib

    from runtime.backends.tensorrt.build import sidecar_info

    info = sidecar_info(trt, options, built, model.cfg.name, model.sha256, plan, device)
    if onnx:
        return {**info, "source": "onnx", "onnx_sha256": hashlib.sha256(model.onnx_bytes()).hexdigest()}
    return {**info, "source": "weights"}


class TensorRTEngines:
    """Engines built by TensorRT on CUDA device ``device``; timing caches shared in ``work_dir/timing``.

    ``trt`` (default: the installed TensorRT) and ``cuda`` (default
    :class:`runtime.backends.tensorrt.engine.TorchCuda`) are seams for the tests, as are ``input_device``
    (default: the CUDA device).
    """

    name = "tensorrt"

    def __init__(self, work_dir: Path, device="cuda", trt=None, cuda=None, input_device=None):
        from runtime.backends.tensorrt.compat import import_tensorrt, version_facts
        from runtime.backends.tensorrt.engine import TorchCuda

        self.trt = trt or import_tensorrt(DRY_RUN_HINT)
        version_facts(self.trt)            # a TensorRT the project does not know is refused once, not per case
        self.cuda = cuda or TorchCuda()
        try:
            self._cuda_device = self.cuda.resolve("cuda" if device in (None, "auto") else device)
        except RetinaFaceError as error:
            raise RetinaFaceError(f"{error}; {DRY_RUN_HINT}") from None
        self.gpu = self.cuda.device_info(self._cuda_device.index)
        self.device = input_device if input_device is not None else self._cuda_device
        self.timing_cache = Path(work_dir) / "timing"
        self.timing_cache.mkdir(parents=True, exist_ok=True)
        self.label = (f"TensorRT {self.trt.__version__} on {self.gpu.name} (compute capability "
                      f"{self.gpu.compute_capability}, {self._cuda_device})")

    def unsupported(self, case) -> str | None:
        from runtime.backends.tensorrt.compat import hardware_level

        if case.onnx:
            return _onnx_reason(self.trt, case.precision, ("onnx",))
        hardware = case.build.get("hardware_compatibility", "none")
        try:
            hardware_level(self.trt, hardware, self.gpu.compute_capability)
        except RetinaFaceError as error:
            return str(error)
        return None

    def build(self, case, model) -> tuple[bytes, dict]:
        from runtime.backends.tensorrt.build import build_serialized
        from runtime.backends.tensorrt.build_onnx import build_serialized_from_onnx

        options = case.options(timing_cache_dir=self.timing_cache)
        options.validate()
        with self.cuda.scope(self._cuda_device):
            if case.onnx:
                plan, built = build_serialized_from_onnx(self.trt, model.onnx_bytes(), options, self.gpu)
            else:
                plan, built = build_serialized(self.trt, model.arrays, model.cfg, options, self.gpu)
        return plan, sidecar_for(self.trt, options, built, model, plan, self.gpu, case.onnx)

    def open(self, engine_path: Path):
        from runtime.backends.tensorrt.engine import TensorRTBackend

        return TensorRTBackend(engine_path, device=self._cuda_device, trt=self.trt, cuda=self.cuda)

    def environment(self) -> dict:
        return {"tensorrt": str(self.trt.__version__), "gpu": self.gpu.name,
                "compute_capability": self.gpu.compute_capability, "device": str(self._cuda_device)}


class ExecutorStandIn:
    """The dry run's engines: the executor on ``device`` (cpu, cuda, cuda:N, auto) in place of TensorRT."""

    name = "torch"

    def __init__(self, device="auto"):
        from runtime.device import resolve_device
        from runtime.backends.tensorrt.sidecar import DeviceInfo

        self.device = resolve_device(device)
        self.gpu = DeviceInfo(f"executor stand-in on {self.device}", "0.0", self.device.index or 0)
        self.label = f"dry run: the executor on {self.device} stands in for TensorRT (no engine is built)"
        self._models: dict[str, object] = {}

    def unsupported(self, case) -> str | None:
        from network.executor import trt as executor

        return _onnx_reason(executor, case.precision, ("onnx", "onnxruntime")) if case.onnx else None

    def build(self, case, model) -> tuple[bytes, dict]:
        """Check that the network builds (and compiles on the executor); the plan is its recipe."""
        from network.executor import trt as executor

        options = case.options()
        options.validate()
        self._models[model.sha256] = model
        if case.onnx:
            plan = model.onnx_bytes()
            built = _onnx_shapes(plan)
        else:
            recipe = {"format": RECIPE_FORMAT, "backbone": model.cfg.name, "precision": case.precision,
                      "input_shape": list(options.input_shape()), "weights_sha256": model.sha256,
                      "postprocess": options.postprocess.as_dict() if options.postprocess else None}
            network = _StandInEngine(recipe, model, self.device).network
            built = {"outputs": {network.get_output(i).name: list(network.get_output(i).shape)
                                 for i in range(network.num_outputs)},
                     "input_shape": list(network.get_input(0).shape)}
            plan = json.dumps(recipe, sort_keys=True).encode()
        return plan, sidecar_for(executor, options, built, model, plan, self.gpu, case.onnx)

    def open(self, engine_path: Path):
        """The file checks every engine gets (:func:`runtime.backends.tensorrt.sidecar.check_engine_file`),
        then the recipe rebuilt on the executor (or the ONNX model in ONNX Runtime, on the CPU)."""
        from runtime.backends.tensorrt.sidecar import check_engine_file

        info, plan = check_engine_file(engine_path)
        if info.get("source") == "onnx":
            return _OnnxStandIn(engine_path, plan)
        recipe = json.loads(plan)
        model = self._models.get(recipe.get("weights_sha256"))
        if recipe.get("format") != RECIPE_FORMAT or model is None:
            raise RetinaFaceError(f"{engine_path} is not an engine of this dry run (its recipe names other "
                                  "weights, or is no recipe)")
        return _StandInEngine(recipe, model, self.device)

    def environment(self) -> dict:
        return {"tensorrt": None, "stand_in": "network.executor", "device": str(self.device)}


class _Runner:
    """Context-manager boilerplate of a stand-in engine."""

    postprocess_in_network = False
    capturable = False            # the executor's program is not captured in CUDA graphs here

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _StandInEngine(_Runner):
    """A recipe built on the executor: fp32 with BatchNorm folded (as an engine does), fp16 as the strongly
    typed float16 graph TensorRT 10 and 11 get (:func:`network.populate_network` with ``half=True``)."""

    def __init__(self, recipe: dict, model, device):
        from network import DETECTION_NAMES, INPUT_NAME, OUTPUT_NAMES, populate_network
        from retinaface_trt.thresholds import Thresholds
        from network.executor import Program, trt as executor
        from runtime.backends.tensorrt.compat import precision_plan
        from runtime.priors import prior_boxes

        settings = Thresholds(**recipe["postprocess"]) if recipe["postprocess"] else None
        height, width = recipe["input_shape"][2:]
        half = precision_plan(executor, recipe["precision"]).half_graph
        self.network = executor.Builder(executor.Logger()).create_network(0)
        self._store = populate_network(executor, self.network, model.arrays, model.cfg,
                                       input_shape=tuple(recipe["input_shape"]), half=half, postprocess=settings,
                                       priors=prior_boxes(model.cfg, height, width) if settings else None)
        self._program = Program(self.network, device, fold_batchnorm=not half)
        self.device, self.postprocess_in_network = device, settings is not None
        self._input, self._outputs = INPUT_NAME, DETECTION_NAMES if settings else OUTPUT_NAMES

    def infer(self, batch):
        """As TensorRTBackend.infer: (loc, conf, landms), or (dets, count) with post-processing inside."""
        from runtime.device import float32_convolutions

        if self._program is None:
            raise RetinaFaceError("this stand-in engine was closed")
        with float32_convolutions():            # "fp32" means IEEE float32 on a GPU too (no TF32)
            outputs = self._program({self._input: batch})
        return tuple(outputs[name] for name in self._outputs)

    def close(self) -> None:
        self._program = None


class _OnnxStandIn(_Runner):
    """The ONNX route of the dry run: the exported model in ONNX Runtime on the CPU."""

    def __init__(self, engine_path: Path, plan: bytes):
        import tempfile

        from runtime.backends.onnxruntime import ONNX_SUFFIX, OnnxRuntimeBackend

        with tempfile.TemporaryDirectory() as folder:     # ONNX Runtime's backend takes an .onnx file
            model = Path(folder) / (Path(engine_path).stem + ONNX_SUFFIX)
            model.write_bytes(plan)
            self._backend = OnnxRuntimeBackend(model, device="cpu")
        self.device = self._backend.device

    def infer(self, batch):
        return self._backend.infer(batch)

    def close(self) -> None:
        self._backend.close()


def _onnx_shapes(data: bytes) -> dict:
    """{"outputs": {name: shape}, "input_shape": shape} of a serialized ONNX model (-1 for symbolic dims)."""
    import onnx

    graph = onnx.load_from_string(data).graph
    dims = lambda value: [d.dim_value if d.HasField("dim_value") else -1            # noqa: E731
                          for d in value.type.tensor_type.shape.dim]
    return {"outputs": {o.name: dims(o) for o in graph.output}, "input_shape": dims(graph.input[0])}
