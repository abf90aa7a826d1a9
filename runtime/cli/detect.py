"""``retinaface-trt detect``: detect.py over image files, folders and globs.

Each input is processed on its own: a bad one (missing, unreadable, not an image, too large) is reported
on one stderr line and the others still run; the exit status is then 1. Model errors (bad weights, a
missing backend) stop the command before any output is written. ``--json`` and annotated copies are
written atomically.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options
from runtime.face import DEFAULT_VIS_THRESHOLD

log = logging.getLogger("retinaface_trt")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pnm")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("detect", help="detect faces in images (detect.py pipeline)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    options.add_model_args(p)
    options.add_pipeline_args(p)
    p.add_argument("--vis-threshold", type=options.probability, default=DEFAULT_VIS_THRESHOLD,
                   help=f"faces reported and drawn from this score (default {DEFAULT_VIS_THRESHOLD})")
    p.add_argument("--json", dest="json_path", metavar="OUT.json", help="write one record per image")
    p.add_argument("--save-dir", metavar="DIR", help="write annotated copies here (created if missing)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(run=run)


def run(args) -> int:
    from retinaface_trt.fileio import check_writable

    if args.json_path:
        check_writable(args.json_path, args.force)
    _check_save_dir(args.save_dir)
    jobs = expand_inputs(args.inputs)  # [(path, error or None)], in input order
    from runtime.detector import Detector

    with Detector.from_options(**options.detector_options(args)) as detector:
        if args.save_dir:  # created only once the model loaded: a failed start leaves nothing behind
            os.makedirs(args.save_dir, exist_ok=True)
        records = _process_all(detector, jobs, args)
    if args.json_path:
        from retinaface_trt.fileio import write_text_atomic
        from runtime.face import to_json

        write_text_atomic(args.json_path, to_json(records, indent=2) + "\n", force=args.force)
    failed = sum("error" in record for record in records)
    if failed:
        print(f"retinaface-trt detect: {failed} of {len(records)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


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


def _check_save_dir(save_dir) -> None:
    if save_dir and os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise RetinaFaceError(f"--save-dir {save_dir} is a file; expected a folder")


def _process_all(detector, jobs, args) -> list[dict]:
    from runtime.cli.progress import Progress
    from runtime.face import error_record

    progress = Progress(len(jobs), "detect", enabled=len(jobs) > 1)
    records, used_names, start = [], set(), time.perf_counter()
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
    elapsed = time.perf_counter() - start
    log.info("%d images in %.3f s: %.1f ms per image (read, detect, write)",
             len(jobs), elapsed, 1000 * elapsed / max(1, len(jobs)))
    return records


def _process_one(detector, path, args, used_names) -> dict:
    from runtime.image_io import read_image
    from runtime.face import image_record, visible

    bgr = read_image(path, max_pixels=detector.max_pixels)
    faces = detector.detect(bgr)
    if args.save_dir:
        _save_annotated(path, bgr, visible(faces, args.vis_threshold), args.save_dir, used_names, args.force)
    return image_record(path, bgr.shape[1], bgr.shape[0], faces, args.vis_threshold)


def _save_annotated(path, bgr, faces, save_dir, used_names, force) -> None:
    from retinaface_trt.fileio import write_bytes_atomic
    from runtime.draw import draw_faces, encode_like

    stem, suffix = os.path.splitext(os.path.basename(path))
    name, n = stem + suffix, 1
    while name in used_names:  # two inputs with one file name (from different folders) keep both copies
        name, n = f"{stem}_{n}{suffix}", n + 1
    used_names.add(name)
    write_bytes_atomic(os.path.join(save_dir, name), encode_like(name, draw_faces(bgr, faces)), force=force)

