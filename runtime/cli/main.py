"""``retinaface-trt``: one subcommand per job, each a thin layer over the library.

Every subcommand lives in its own module that defines ``add_parser(subparsers)`` (registering its flags
and ``set_defaults(run=...)``) and a ``run(args) -> int``. Heavy imports (torch, TensorRT, ONNX Runtime)
happen inside ``run`` so that ``--help`` works on any machine.

``-v/--verbose`` and ``-q/--quiet`` are accepted before and after the subcommand (``args.verbose`` is the
total count, ``args.quiet`` a bool: no progress bars or summary lines). Exit status: 0 success, 1 user
error (one ``retinaface-trt CMD: error: ...`` line), 2 usage error (argparse, with the subcommand's usage).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from typing import Sequence

from retinaface_trt import __version__
from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options

log = logging.getLogger("retinaface_trt")

# Module paths of the subcommands, in the order `--help` lists them.
SUBCOMMANDS = (
    "runtime.cli.export_wts",
    "runtime.cli.build",
    "runtime.cli.inspect",
    "runtime.cli.export_onnx",
    "runtime.cli.compare",
    "runtime.cli.detect",
    "runtime.cli.evaluate",
    "runtime.cli.benchmark",
    "runtime.cli.serve",
    "runtime.cli.export_triton",
    "runtime.cli.selftest",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retinaface-trt",
        description="RetinaFace on TensorRT: export weights, build engines, detect faces.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_output_flags(parser, "")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for module_path in SUBCOMMANDS:
        importlib.import_module(module_path).add_parser(subparsers)
    for subparser in {id(p): p for p in subparsers.choices.values()}.values():
        _add_output_flags(subparser, "sub_")
        subparser.set_defaults(command_parser=subparser)
    return parser


def _add_output_flags(parser: argparse.ArgumentParser, prefix: str) -> None:
    """-v and -q; the subcommand's copies count into separate names (argparse would otherwise overwrite the
    values given before the subcommand with the subcommand's defaults)."""
    parser.add_argument("-v", "--verbose", dest=prefix + "verbose", action="count", default=0,
                        help="more log output (-v info, -vv debug)")
    parser.add_argument("-q", "--quiet", dest=prefix + "quiet", action="store_true",
                        help="no progress bar or summary line (errors and warnings still shown)")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag is reported by the subcommand's parser, with its usage (exit 2)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.verbose += getattr(args, "sub_verbose", 0)
    args.quiet = args.quiet or getattr(args, "sub_quiet", False)
    vars(args).pop(options.SPELLINGS_GIVEN, None)     # parsing state of options.StoreOnce, not a setting
    return args


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status (0 success, 1 user error, 2 usage error)."""
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    from runtime.cli.quiet import filtered_stderr, quiet_libraries

    quiet_libraries()
    with filtered_stderr() if argv is None else contextlib.nullcontext():   # the console program only
        return _run(args)


def _run(args: argparse.Namespace) -> int:
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
