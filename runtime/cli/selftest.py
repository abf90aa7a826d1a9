"""``retinaface-trt selftest``: build, serialize, deserialize and run every kind of engine on this machine's
TensorRT and GPU, compare each with the executor, print one line per case and (``--report``) write it all
as JSON. Exit status 0 only when every case that ran passed (skipped ones are listed with the reason)."""

from __future__ import annotations

import sys
from pathlib import Path

from runtime.backends import FLOAT_PRECISIONS
from runtime.cli import options
from runtime.selftest import BACKENDS
from runtime.selftest.run import DEFAULT_BUDGET


def add_parser(subparsers) -> None:
    selftest = subparsers.add_parser(
        "selftest", help="prove the engines on this TensorRT and GPU: every case built, run and compared",
        description="Build every kind of engine (fixed, dynamic batch, dynamic size, ONNX parser, post-processing "
                    "inside, portable) for each backbone and precision, run it on seeded synthetic images and "
                    "compare it with the executor in float32. Needs no data: without --weights both backbones get "
                    "seeded random weights. Exit status 0 only when every case passed.")
    selftest.add_argument("--weights", type=Path, help="a .pth or .wts checkpoint (default: seeded random weights "
                                                       "of both backbones)")
    selftest.add_argument("--backend", choices=BACKENDS, default="tensorrt",
                          help="tensorrt: real engines (needs TensorRT and an NVIDIA GPU); torch: the dry run, the "
                               "executor standing in for TensorRT's build (default: %(default)s)")
    options.add_device_arg(selftest, default="auto")
    selftest.add_argument("--precision", nargs="+", choices=FLOAT_PRECISIONS,
                          default=list(FLOAT_PRECISIONS),
                          help="the precisions to build (default: all; INT8 engines need calibration images: "
                               "tests/runtime/backends/tensorrt/test_int8_real.py checks them)")
    selftest.add_argument("--full", action="store_true",
                          help="every case: both backbones (or the checkpoint's) x the precisions x every kind "
                               "(default: the engine most users build, 640x640 with a dynamic batch, per precision, "
                               "its batch shapes alternating under CUDA graph replay: minutes)")
    selftest.add_argument("--cases", nargs="+", metavar="PATTERN",
                          help="only cases matching a glob, from every case: a kind (fixed, dynamic-batch, "
                               "dynamic-size, onnx, postprocess, version-compatible, ampere+, same-cc) or a whole "
                               "name such as 'resnet50/fp16/*' (default: the default set, or --full)")
    selftest.add_argument("--case-budget", type=options.argparse_type(_seconds, "seconds"), default=DEFAULT_BUDGET,
                          metavar="SECONDS",
                          help="time one case may take, its build included; a case over it fails and the run "
                               "stops there, never hangs (default: %(default)g)")
    selftest.add_argument("--report", type=Path, metavar="OUT.json",
                          help="write everything as JSON, for an issue report (checked writable first; rewritten "
                               "after each case, so an interrupted run keeps what ran)")
    selftest.add_argument("--force", action="store_true", help="overwrite an existing --report")
    selftest.set_defaults(run=run_selftest)


def run_selftest(args) -> int:
    import json

    from retinaface_trt.errors import RetinaFaceError
    from retinaface_trt.fileio import write_text_atomic
    from runtime.selftest import as_dict, format_table, run_selftest as run

    report = _checked_report(args.report, args.force) if args.report else None

    def write(result) -> None:
        if report is None:
            return
        try:
            write_text_atomic(report, json.dumps(as_dict(result), indent=2) + "\n")
        except OSError as error:
            raise RetinaFaceError(f"cannot write the report {report}: {error.strerror or error}") from None

    result = run(weights=args.weights, backend=args.backend, device=args.device, precisions=args.precision,
                 patterns=args.cases, full=args.full, budget=args.case_budget, on_result=write,
                 progress=lambda line: print(f"selftest {line}", file=sys.stderr, flush=True))
    print(format_table(result))
    if report is not None:
        print(f"report: {report}" + ("" if result.passed else f"; {_send_to()}"))
    elif not result.passed:
        print(f"rerun with --report OUT.json and {_send_to()}")
    return 0 if result.passed else 1


def _seconds(text: str) -> int:
    from runtime.options import check_count

    return check_count("--case-budget", text)


def _checked_report(path: Path, force: bool) -> Path:
    """``--report``'s path, refused before any work if it exists (without --force), is a folder or has none."""
    from retinaface_trt.errors import RetinaFaceError
    from retinaface_trt.fileio import check_writable

    if path.is_dir():
        raise RetinaFaceError(f"--report {path} is a folder; pass a file name such as {path / 'selftest.json'}")
    return check_writable(path, force)


def _send_to() -> str:
    from runtime.selftest.report import SEND_TO

    return SEND_TO
