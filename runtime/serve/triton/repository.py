"""Writing the Triton model repository (layout and tensors: :mod:`runtime.serve.triton`).

Two kinds, one ensemble:

* from an engine (``--engine``): ``retinaface_net`` is ``platform: "tensorrt_plan"`` with the plan's bytes
  (checked against its sidecar), its input and output names and dims from the sidecar, its largest batch
  from the sidecar's optimization profile, and ``instance_group`` KIND_GPU (``count`` instances on every
  GPU the server sees);
* from weights (``--weights``): with ``--backend tensorrt`` an engine is built (or taken from the engine
  cache) and the repository is the one above; otherwise ``retinaface_net`` is a Python-backend model running
  the project's executor (``torch``) or ONNX Runtime on a copy of the weights, so the same repository is
  served where TensorRT is not.

The repository is built in a temporary folder beside the destination and renamed into place once complete,
so a failed export leaves nothing behind (and ``force`` replaces an old repository only then).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint
from runtime.serve import triton as names
from runtime.serve.triton.configs import (ExportOptions, NetworkModel, batching, ensemble_config, instances,
                                          parameter_list, post_config, pre_config, tensor)
from runtime.serve.triton.pbtxt import to_pbtxt

VERSION = "1"                 # every model's one version folder
DEFAULT_PYTHON_BATCH = 16     # largest batch of a Python-backend network, and of engines built here


def write_repository(output: str | os.PathLike, engine=None, weights=None, options: ExportOptions = ExportOptions(),
                     force: bool = False, backend: str = "auto", device: str | None = "cpu",
                     engine_cache=None) -> Path:
    """Write the repository of one model: ``engine`` (a TensorRT engine with its sidecar), or ``weights``.

    With ``weights``, ``backend`` picks the network: ``tensorrt`` builds an engine (or takes it from
    ``engine_cache``, see :func:`runtime.backends.tensorrt.cache.ensure_engine`) and writes the plan route;
    ``auto`` / ``torch`` (the executor) and ``onnxruntime`` run in the Python backend, on KIND_GPU instances
    when ``device`` is ``cuda[:N]``, else KIND_CPU.
    """
    output = _check_destination(Path(output), force)
    net = network_model(engine, weights, backend, device, engine_cache, options)
    _write_tree(output, repository_files(net, options))
    return output


def network_model(engine, weights, backend: str, device, engine_cache, options: ExportOptions) -> NetworkModel:
    """The ``retinaface_net`` model that ``engine`` or ``weights`` and ``backend`` ask for."""
    if (engine is None) == (weights is None):
        raise RetinaFaceError("export-triton needs exactly one model: --engine ENGINE (a TensorRT plan) or "
                              "--weights W (.pth/.wts/.onnx, with --backend torch, onnxruntime or tensorrt)")
    if engine is not None:
        if str(engine).lower().endswith(".onnx"):
            raise RetinaFaceError(f"{engine} is an ONNX model, not a TensorRT engine; export it for Triton's Python "
                                  f"backend with --weights {engine} --backend onnxruntime")
        if backend not in ("auto", "tensorrt"):
            raise RetinaFaceError(f"--engine is a TensorRT plan, served by Triton's TensorRT backend; --backend "
                                  f"{backend} needs --weights instead")
        return plan_model(Path(engine), options)
    if backend == "tensorrt":
        return plan_model(_built_engine(weights, device, engine_cache, options), options)
    return python_model(Path(weights), "torch" if backend == "auto" else backend, device, options)


def _built_engine(weights, device, engine_cache, options: ExportOptions) -> Path:
    """An engine of ``weights`` at the export's precision, input size and largest batch (cached)."""
    from runtime.backends import tensorrt_available
    from runtime.device import resolve_device

    if not tensorrt_available():
        raise RetinaFaceError(f"TensorRT is not installed: {install_hint('tensorrt')} (or export the "
                              "network for Triton's Python backend: --backend torch)")
    from runtime.backends.tensorrt.cache import default_engine_cache, ensure_engine

    index = resolve_device("cuda" if device in (None, "auto", "cpu") else device).index or 0
    return ensure_engine(weights, engine_cache or default_engine_cache(), options.precision, options.input_size,
                         options.max_batch or DEFAULT_PYTHON_BATCH, device_index=index)


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
              "input": [tensor(INPUT_NAME, "TYPE_FP32", input_dims)],
              "output": [tensor(name, "TYPE_FP32", output_dims[name]) for name in OUTPUT_NAMES],
              "dynamic_batching": batching(options), "instance_group": instances("KIND_GPU", options)}
    header = (f"engine built with TensorRT {info.get('tensorrt_version')} on {info.get('gpu_name')} (compute "
              f"capability {info.get('compute_capability')}), {info.get('precision')}: serve it with a Triton "
              "release on that TensorRT version, on GPUs of that architecture")
    return NetworkModel(config, {"model.plan": plan}, info["backbone"], max_batch, input_dims, output_dims, header)


def python_model(weights: Path, backend: str, device, options: ExportOptions) -> NetworkModel:
    """``retinaface_net`` as a Python-backend model running ``backend`` (torch, onnxruntime) on a copy of
    ``weights``. The backend is built once here, on the CPU, so that what Triton would refuse at load time
    (a missing file, a bad checkpoint, a precision the backend lacks) is refused now, before anything is written."""
    from network import INPUT_NAME, OUTPUT_NAMES
    from runtime.backends import create_backend

    probe = create_backend(backend, weights=str(weights), device="cpu", precision=options.precision)
    cfg = probe.cfg
    probe.close()
    width, height = options.input_size
    input_dims = [3, height, width]
    output_dims = _output_dims(cfg, options.input_size)
    kind = "KIND_GPU" if str(device or "").startswith("cuda") else "KIND_CPU"
    settings = {"weights": "weights" + weights.suffix.lower(), "backend": backend, "precision": options.precision}
    config = {"backend": "python",
              "input": [tensor(INPUT_NAME, "TYPE_FP32", input_dims)],
              "output": [tensor(name, "TYPE_FP32", output_dims[name]) for name in OUTPUT_NAMES],
              "dynamic_batching": batching(options), "instance_group": instances(kind, options),
              "parameters": parameter_list(settings)}
    files = {"model.py": _model_source("net.py"), settings["weights"]: weights.read_bytes()}
    return NetworkModel(config, files, cfg.name, options.max_batch or DEFAULT_PYTHON_BATCH, input_dims, output_dims)


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
