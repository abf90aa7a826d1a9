"""Images per second of ``detect`` over a folder, for several configurations, each run in a fresh process.

    python tools/measure_detect_throughput.py --weights weights/mobilenet0.25_Final.pth \\
        --images '../shared/images/*.jpg' --count 2000 --repeats 3 \\
        --config "one GPU=--devices cuda:0" --config "two GPUs=--devices cuda:0,cuda:1" \\
        -- --backend tensorrt --precision fp16

A temporary folder gets ``--count`` inputs: symbolic links cycling through the images given (a glob, a folder or
files), so the page cache holds every file after the first run and reading the disk is not what is measured.
Each configuration runs ``python -m runtime.cli.main detect FOLDER --weights W <after --> <config>`` in this
checkout, or in the one ``--tree NAME=DIR`` names for it (an older commit exported with ``git archive``, to compare
versions), ``--repeats`` times, in turn; its summary line (``N images, M faces, X ms/image``: the time after the
model is loaded, reading and writing included) gives images/s. Printed: a Markdown table with the median, min
and max images/s and the ratio of each median to the first configuration's; ``--json OUT`` keeps the raw runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"^(\d+) images?, (\d+) faces?, ([\d.]+) ms/image")


def sources(images: str) -> list[str]:
    """The image files named by a glob, a folder (its files, sorted) or a file."""
    if os.path.isdir(images):
        return sorted(os.path.join(images, name) for name in os.listdir(images))
    return sorted(glob.glob(images)) or [images]


def make_folder(files: list[str], count: int, folder: str) -> str:
    """``count`` symbolic links in ``folder``, cycling through ``files`` (their suffixes kept)."""
    for i in range(count):
        source = os.path.abspath(files[i % len(files)])
        os.symlink(source, os.path.join(folder, f"{i:07d}{os.path.splitext(source)[1].lower()}"))
    return folder


def run_once(tree: str, folder: str, weights: str, argv: list[str]) -> dict:
    """One ``detect`` run: images, faces, ms/image and images/s from its summary line."""
    command = [sys.executable, "-m", "runtime.cli.main", "detect", folder, "--weights", weights, *argv]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False)
    lines = [line.rsplit("\r", 1)[-1] for line in done.stderr.splitlines()]
    found = [SUMMARY.match(line) for line in lines if SUMMARY.match(line)]
    if done.returncode != 0 or not found:
        raise SystemExit(f"detect failed ({done.returncode}): {' '.join(map(shlex.quote, command))}\n{done.stderr}")
    images, faces, ms = int(found[-1][1]), int(found[-1][2]), float(found[-1][3])
    return {"images": images, "faces": faces, "ms_per_image": ms, "images_per_s": 1000.0 / ms}


def table(results: dict) -> str:
    rows = ["| configuration | images/s (median) | min | max | × first | runs |", "| --- | --- | --- | --- | --- | --- |"]
    first = None
    for name, runs in results.items():
        rates = [run["images_per_s"] for run in runs]
        median = statistics.median(rates)
        first = first or median
        rows.append(f"| {name} | {median:.1f} | {min(rates):.1f} | {max(rates):.1f} | {median / first:.2f} | "
                    f"{len(runs)} |")
    return "\n".join(rows)


def parse(argv) -> tuple[argparse.Namespace, list[str]]:
    common = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--images", required=True, help="a glob, a folder or an image file")
    parser.add_argument("--count", type=int, default=200, help="inputs in the folder (default 200)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", action="append", required=True, metavar="NAME=ARGS",
                        help="a configuration: its name and its detect flags (repeat the option)")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="run configuration NAME in the checkout DIR (default: this one)")
    parser.add_argument("--json", dest="json_path", help="write the runs here")
    return parser.parse_args(argv), common


def main(argv=None) -> int:
    args, common = parse(sys.argv[1:] if argv is None else argv)
    configs = dict(entry.split("=", 1) for entry in args.config)
    trees = {name: str(REPO) for name in configs} | dict(entry.split("=", 1) for entry in args.tree)
    results: dict = {name: [] for name in configs}
    with tempfile.TemporaryDirectory(prefix="retinaface-throughput-") as folder:
        make_folder(sources(args.images), args.count, folder)
        for _ in range(args.repeats):            # in turn, so that a slower phase of the machine hits all alike
            for name, flags in configs.items():
                results[name].append(run_once(trees[name], folder, os.path.abspath(args.weights),
                                              [*common, *shlex.split(flags)]))
                print(f"{name}: {results[name][-1]['images_per_s']:.1f} images/s", file=sys.stderr)
    print(table(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"configs": configs, "common": common, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
