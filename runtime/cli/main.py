"""``retinaface-trt``: one subcommand per job, each a thin layer over the library.

Every subcommand lives in its own module that defines ``add_parser(subparsers)`` (registering its flags
and ``set_defaults(run=...)``) and a ``run(args) -> int``. Heavy imports (torch, TensorRT, ONNX Runtime)
happen inside ``run`` so that ``--help`` works on any machine.

``-v/--verbose`` and ``-q/--quiet`` are accepted before and after the subcommand (``args.verbose`` is the
total count, ``args.quiet`` a bool: no progress bars or summary lines). Exit status: 0 success, 1 user
error (one ``retinaface-trt CMD: error: ...`` line), 2 usage error (one such line too, with a hint: a close flag
name and where the flags are listed).
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


class Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line (``retinaface-trt CMD: error: …``) with a hint (a close
    flag name, and where the flags are listed) instead of the whole usage first; subcommands inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}{self._hint(message)}\n")

    def _hint(self, message: str) -> str:
        hints = []
        if message.startswith("unrecognized arguments:"):
            import difflib

            flags = [o for a in self._actions if a.help != argparse.SUPPRESS for o in a.option_strings]
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.6)
                if word.startswith("-") and close:
                    hints.append(f"did you mean {close[0]}?")
        hints.append(f"`{self.prog} --help` lists the {'flags' if ' ' in self.prog else 'commands'}")
        return " (" + " ".join(hints) + ")"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The reader of standard output went away (``… --json - | head -1``): stop quietly, as other Unix tools do,
    with the status of a process ended by SIGPIPE. Standard output is pointed at /dev/null so that the flush at
    exit does not raise again."""
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
