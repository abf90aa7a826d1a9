"""``retinaface-trt``: one subcommand per job, each a thin layer over the library.

Every subcommand lives in its own module that defines ``add_parser(subparsers)`` (registering its flags
and ``set_defaults(run=...)``) and a ``run(args) -> int``. Heavy imports (torch, TensorRT, ONNX Runtime)
happen inside ``run`` so that ``--help`` works on any machine.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError

log = logging.getLogger("retinaface_trt")

# Module paths of the subcommands, in the order `--help` lists them.
SUBCOMMANDS = (
    "runtime.cli.export_wts",
    "runtime.cli.build",
    "runtime.cli.inspect",
    "runtime.cli.onnx",
    "runtime.cli.detect",
    "runtime.cli.evaluate",
    "runtime.cli.benchmark",
    "runtime.cli.selftest",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retinaface-trt",
        description="RetinaFace on TensorRT: export weights, build engines, detect faces.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v info, -vv debug)")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for module_path in SUBCOMMANDS:
        importlib.import_module(module_path).add_parser(subparsers)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status (0 success, 1 user error, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    try:
        return int(args.run(args) or 0)
    except RetinaFaceError as error:
        print(f"retinaface-trt {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"retinaface-trt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
