"""``retinaface-trt inspect ENGINE [--layers]``: an engine's sidecar, checked, and its layers.

Without ``--layers`` nothing needs TensorRT or a GPU: the engine file must exist, its sidecar must fit the
schema, and the file's size and sha256 must match the sidecar (else exit status 1). ``--layers`` loads
the engine and prints one line per engine layer with its type, precision and tactic (TensorRT's engine
inspector; engines built by ``retinaface-trt build`` carry DETAILED profiling information).
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.cli import options


def add_parser(subparsers) -> None:
    inspect = subparsers.add_parser("inspect", help="check an engine against its sidecar and show its layers",
                                    description="Print an engine's sidecar after checking the file against it "
                                                "(no TensorRT needed); --layers also loads it and lists its layers.")
    inspect.add_argument("engine", type=Path, help="engine file written by `build`")
    inspect.add_argument("--layers", action="store_true",
                         help="also list every engine layer with its type, precision and tactic (needs TensorRT "
                              "and the GPU the engine was built for)")
    options.add_cuda_device_arg(inspect)
    inspect.set_defaults(run=run_inspect)


def run_inspect(args) -> int:
    from runtime.backends.tensorrt.sidecar import check_engine_file

    _refuse_a_model_that_is_no_engine(args.engine)
    info, _ = check_engine_file(args.engine)
    print(json.dumps(info, indent=2, sort_keys=True))
    print(f"engine file: {info['engine_bytes']} bytes, sha256 as recorded in {args.engine.name}.json")
    if args.layers:
        from runtime.backends.tensorrt.engine import TensorRTBackend

        with TensorRTBackend(args.engine, device=args.device) as backend:
            print(format_layers(backend.layer_information()))
    return 0


def _refuse_a_model_that_is_no_engine(path: Path) -> None:
    """Weights and ONNX models are named for what they are, rather than reported as engines without a sidecar."""
    from retinaface_trt.errors import RetinaFaceError

    suffix = path.suffix.lower()
    if suffix in (".wts", ".pth"):
        raise RetinaFaceError(f"{path} is a weights file, not a TensorRT engine: build one from it with "
                              f"`retinaface-trt build --weights {path} -o {path.with_suffix('.engine')}`, or run it "
                              f"as it is with `retinaface-trt detect IMAGE --weights {path}`")
    if suffix == ".onnx":
        raise RetinaFaceError(f"{path} is an ONNX model, not a TensorRT engine: build one from it with "
                              f"`retinaface-trt build --onnx {path} -o {path.with_suffix('.engine')}`")


def layer_rows(engine_information: str) -> list[tuple[str, str, str, str]]:
    """(name, type, precision, tactic) per layer of the engine inspector's JSON (8.6, 10.x and 11.x forms).

    Layers built without DETAILED verbosity are bare names: their other fields are empty.
    """
    layers = json.loads(engine_information).get("Layers", [])
    return [(layer, "", "", "") if isinstance(layer, str) else
            (str(layer.get("Name", "?")), str(layer.get("LayerType", "")), _precision(layer),
             str(layer.get("TacticName") or layer.get("TacticValue") or ""))
            for layer in layers]


_PRECISION_WORDS = (("fp32", "fp32"), ("float", "fp32"), ("fp16", "fp16"), ("half", "fp16"), ("int8", "int8"),
                    ("int32", "int32"), ("int64", "int64"), ("bool", "bool"))


def _precision(layer: dict) -> str:
    """The data types of a layer's outputs (11.x: ``DataType``; 8.6/10.x: inside ``Format/Datatype``)."""
    found = []
    for tensor in layer.get("Outputs") or []:
        text = str(tensor.get("DataType") or tensor.get("Format/Datatype") or "") if isinstance(tensor, dict) else ""
        word = next((name for key, name in _PRECISION_WORDS if key in text.lower()), text)
        if word and word not in found:
            found.append(word)
    return "/".join(found)


def format_layers(engine_information: str) -> str:
    """Aligned lines ``name  type  precision  tactic`` after a header, plus a note for names-only engines."""
    rows = layer_rows(engine_information)
    table = [("layer", "type", "precision", "tactic")] + rows
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in table]
    if rows and not any(row[1] for row in rows):
        lines.append("(layer names only: the engine was built without ProfilingVerbosity.DETAILED; rebuild it "
                     "with `retinaface-trt build` to see types, precisions and tactics)")
    return "\n".join(line.rstrip() for line in lines)
