"""``retinaface-trt detect``: detect.py over image files, folders and globs.

Each input is processed on its own: a bad one (missing, unreadable, not an image, too large) is reported
on one stderr line and the others still run; the exit status is then 1. Model errors (bad weights, a
missing backend) and unwritable outputs stop the command before any work, and before any output is written.
``--json`` (``-`` for standard output) and annotated copies are written atomically. A run ends with one
summary line on stderr (``3 images, 28 faces, 41.2 ms/image``) unless ``--quiet``.

``--save-dir`` may be a folder of an earlier run: the annotated copies of this run's inputs replace files of
the same names and nothing else there is touched; a folder holding this run's inputs is refused (the copies
would replace the originals).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pnm")
DEFAULT_SAVE_DIR = os.path.join("out", "annotated")   # where detect.py's -s/--save_image puts the copies


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("detect", help="detect faces in images (detect.py pipeline)",
                              description="Detect faces in image files, folders and glob patterns with the "
                                          "pipeline of the original detect.py.",
                              epilog="The flag spellings of detect.py (-m/--trained_model, --network, --cpu, "
                                     "--confidence_threshold, --top_k, --nms_threshold, --keep_top_k, --vis_thres, "
                                     "-s/--save_image) are accepted too: see docs/detection.md.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    options.add_model_args(p)
    options.add_pipeline_args(p)
    options.add_int8_args(p)
    options.add_vis_threshold_arg(p)
    p.add_argument("--json", dest="json_path", metavar="OUT.json",
                   help="write one record per image (- for standard output)")
    p.add_argument("--save-dir", metavar="DIR",
                   help="write annotated copies here (created if missing; copies of earlier runs with the same "
                        "names are replaced)")
    p.add_argument("-s", "--save_image", dest="save_dir", action="store_const", const=DEFAULT_SAVE_DIR,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.set_defaults(run=run)


def run(args) -> int:
    _check_outputs(args)
    jobs = expand_inputs(args.inputs)  # [(path, error or None)], in input order
    _check_save_dir_holds_no_input(args.save_dir, jobs)
    from runtime.detector import Detector

    with Detector.from_options(**options.detector_options(args)) as detector:
        options.check_network(args, detector.backend.cfg)
        if args.save_dir:  # created only once the model loaded: a failed start leaves nothing behind
            from retinaface_trt.fileio import make_dirs
            make_dirs(args.save_dir)
        start = time.perf_counter()
        records = _process_all(detector, jobs, args)
        elapsed = time.perf_counter() - start
    _write_json(records, args)
    return _finish(records, elapsed, args)


def expand_inputs(inputs: list[str]) -> list[tuple[str, str | None]]:
    """Files, folders (their image files, sorted, not recursive) and globs → [(path, error or None)]."""
    jobs: list[tuple[str, str | None]] = []
    for item in inputs:
        if os.path.isdir(item):
            jobs.extend(_folder_images(item))
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item))
            jobs.extend((m, None) for m in matches if os.path.isfile(m))
            if not matches:
                jobs.append((item, f"{item}: no file matches this pattern"))
        else:
            jobs.append((item, None))
    return jobs


def _folder_images(folder: str) -> list[tuple[str, str | None]]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as error:
        return [(folder, f"cannot read folder {folder}: {error.strerror or error}")]
    found = [(os.path.join(folder, n), None) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    return found or [(folder, f"folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES[:4])}, …)")]


def _check_outputs(args) -> None:
    """Every output is known to be writable before any work starts (see retinaface_trt.fileio)."""
    from retinaface_trt.fileio import check_output_dir, check_writable

    if args.json_path:
        check_writable(args.json_path, args.force)
    if args.save_dir:
        check_output_dir(args.save_dir)


def _check_save_dir_holds_no_input(save_dir, jobs) -> None:
    if not save_dir or not os.path.isdir(save_dir):
        return
    for path, error in jobs:
        folder = os.path.dirname(path) or "."
        if error is None and os.path.isdir(folder) and os.path.samefile(folder, save_dir):
            raise RetinaFaceError(f"--save-dir {save_dir} holds the input {path}: its annotated copy would replace "
                                  "it; choose another folder")


def _write_json(records: list[dict], args) -> None:
    if args.json_path:
        from retinaface_trt.fileio import write_text_atomic
        from runtime.face import to_json

        write_text_atomic(args.json_path, to_json(records, indent=2) + "\n", force=args.force)


def _finish(records: list[dict], elapsed_s: float, args) -> int:
    """Print the summary line (unless --quiet) and the failure count; return the exit status."""
    failed = sum("error" in record for record in records)
    if not args.quiet:
        print(summary_line(records, elapsed_s), file=sys.stderr)
    if failed:
        print(f"retinaface-trt detect: {failed} of {len(records)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def summary_line(records: list[dict], elapsed_s: float) -> str:
    """``N images, M faces, X ms/image``: faces as reported (score ≥ --vis-threshold), time per input
    (read, detect, write)."""
    images, faces = len(records), sum(len(record["faces"]) for record in records)
    return (f"{images} image{'s' * (images != 1)}, {faces} face{'s' * (faces != 1)}, "
            f"{1000 * elapsed_s / max(1, images):.1f} ms/image")


def _process_all(detector, jobs, args) -> list[dict]:
    from runtime.cli.progress import Progress
    from runtime.face import error_record

    progress = Progress(len(jobs), "detect", enabled=len(jobs) > 1 and not args.quiet)
    records, used_names = [], set()
    for path, error in jobs:
        try:
            if error:
                raise RetinaFaceError(error)
            records.append(_process_one(detector, path, args, used_names))
        except (RetinaFaceError, OSError) as failure:  # one bad input is reported; the others still run
            records.append(error_record(path, str(failure)))
            progress.write(f"retinaface-trt detect: error: {failure}")
        progress.advance()
    progress.finish()
    return records


def _process_one(detector, path, args, used_names) -> dict:
    from runtime.image_io import read_image
    from runtime.face import image_record, visible

    bgr = read_image(path, max_pixels=detector.max_pixels)
    faces = detector.detect(bgr)
    if args.save_dir:
        _save_annotated(path, bgr, visible(faces, args.vis_threshold), args.save_dir, used_names)
    return image_record(path, bgr.shape[1], bgr.shape[0], faces, args.vis_threshold)


def _save_annotated(path, bgr, faces, save_dir, used_names) -> None:
    """Write the annotated copy of ``path`` into ``save_dir`` under its file name (``name_1.jpg``, … for a name
    already written by this run), replacing a file of that name from an earlier run."""
    from retinaface_trt.fileio import write_bytes_atomic
    from runtime.draw import draw_faces, encode_like

    stem, suffix = os.path.splitext(os.path.basename(path))
    name, n = stem + suffix, 1
    while name in used_names:  # two inputs with one file name (from different folders) keep both copies
        name, n = f"{stem}_{n}{suffix}", n + 1
    used_names.add(name)
    write_bytes_atomic(os.path.join(save_dir, name), encode_like(name, draw_faces(bgr, faces)), force=True)

