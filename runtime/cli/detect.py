"""``retinaface-trt detect``: detect.py over image files, folders and globs, on one device or several.

Each input is processed on its own: a bad one (missing, unreadable, not an image, too large) is reported
on one stderr line and the others still run; the exit status is then 1. Model errors (bad weights, a
missing backend) and unwritable outputs stop the command before any work, and before any output is written.
``--json`` (``-`` for standard output) and annotated copies are written atomically. A run ends with one
summary line on stderr (``3 images, 28 faces, 41.2 ms/image``) unless ``--quiet``.

Large folders (:mod:`runtime.jobs`): a pool of threads reads and decodes images ahead of the detector, images of
one size run as one batch (``--batch``), ``--devices`` runs one worker process per device, and the records are
written in input order whatever finishes first. ``--json-lines`` appends each record as soon as it is final and
makes a re-run of the command skip the inputs recorded there (see :mod:`runtime.jobs.records`). Memory does not
grow with the number of inputs, beyond their paths.

Videos, streams and cameras go to :mod:`runtime.cli.video` (one JSON line per frame); ``--crops`` (aligned faces,
:mod:`runtime.align`) and ``--anonymize`` (copies with the faces hidden instead of drawn, :mod:`runtime.anonymize`)
apply to images and videos alike.

``--save-dir`` may be a folder of an earlier run: the annotated copies of this run's inputs replace files of
the same names and nothing else there is touched; a folder holding this run's inputs is refused (the copies
would replace the originals).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
import time
from dataclasses import dataclass

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options
from runtime.options import DECODERS, IMAGE_SUFFIXES

DEFAULT_SAVE_DIR = os.path.join("out", "annotated")   # where detect.py's -s/--save_image puts the copies
MAX_BATCH = 1024
STDOUT_NAMES = options.STDOUT_NAMES


def _check_devices(text: str) -> list[str]:
    from runtime.jobs.devices import check_devices

    return check_devices(text)


devices = options.argparse_type(_check_devices, "devices")
batch = options.argparse_type(lambda t: _at_most(options.check_count("the batch", t), MAX_BATCH, "the batch"), "batch")


def _at_most(value: int, limit: int, name: str) -> int:
    if value > limit:
        raise RetinaFaceError(f"{name} must be at most {limit}, found {value}")
    return value


DETECTOR = options.DetectorFlags()
VIS = options.VisThresholdFlag()


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("detect", help="detect faces in images (detect.py pipeline)",
                              description="Detect faces in image files, folders and glob patterns with the "
                                          "pipeline of the original detect.py.",
                              epilog="The flag spellings of detect.py (-m/--trained_model, --network, --cpu, "
                                     "--confidence_threshold, --top_k, --nms_threshold, --keep_top_k, --vis_thres, "
                                     "-s/--save_image) are accepted too: see docs/detection.md. Large folders and "
                                     "several GPUs: docs/scaling.md.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders or glob patterns; or video files, stream URLs (rtsp://, http://) or a "
                        "camera index")
    DETECTOR.add(p)
    VIS.add(p)
    options.add_json_arg(p, "one record per image")
    p.add_argument("--save-dir", metavar="DIR",
                   help="write annotated copies here (created if missing; copies of earlier runs with the same "
                        "names are replaced)")
    p.add_argument("-s", "--save_image", dest="save_dir", action="store_const", const=DEFAULT_SAVE_DIR,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    _add_folder_args(p)
    from runtime.cli.video import add_video_args

    add_video_args(p)
    p.set_defaults(run=run)


def _add_folder_args(parser) -> None:
    group = parser.add_argument_group("large folders")
    group.add_argument("--json-lines", metavar="OUT.jsonl",
                       help="append each image's record to this file as soon as it is final, one JSON line each; "
                            "run the command again with the same file to skip the inputs recorded there "
                            "(- for standard output)")
    group.add_argument("--batch", type=batch, default=None, metavar="N",
                       help=f"images of one size per detector call, 1..{MAX_BATCH} (default 1 on a CPU, 8 on a GPU)")
    group.add_argument("--devices", type=devices, metavar="DEVICES",
                       help="one worker process per device: cuda:0,cuda:1,… or all (every GPU); cpu entries too "
                            "(cpu,cpu); instead of --device")
    group.add_argument("--pixel-budget", type=options.count, default=None, metavar="MP",
                       help="megapixels of decoded images in flight at once, per device: bounds memory whatever "
                            "the images' sizes (one larger image still runs, alone; default: this machine's pixel "
                            "budget, from its free memory: docs/errors.md)")
    group.add_argument("--read-threads", type=options.count, default=None, metavar="N",
                       help="threads reading and decoding images, per device (default: the CPUs this process may "
                            "use, shared by the devices, at most 32)")
    group.add_argument("--decoder", choices=DECODERS, default="auto",
                       help="JPEG decoder: cv2 (cv2.imdecode in the reading threads, detect.py's pixels; auto, the "
                            "default) or nvjpeg (on the GPU; slower than cv2 on every core of the GPU "
                            "machine measured: docs/detection.md)")


def run(args) -> int:
    from runtime.cli import video
    from runtime.video import is_video_source

    video.prepare(args)
    _check_flags(args)
    _check_batch(args)
    videos = [item for item in args.inputs if is_video_source(item)]
    if videos:
        return video.run_videos(args, videos, DETECTOR.parse(args))
    _check_outputs(args)
    jobs = expand_inputs(args.inputs)  # [(path, error or None)], in input order
    _check_save_dir_holds_no_input(args.save_dir, jobs)
    from retinaface_trt.fileio import check_not_an_input, hold_output
    from runtime.jobs.records import RecordStore

    with contextlib.ExitStack() as stack:
        for flag, path in (("--json", args.json_path), ("--json-lines", args.json_lines)):
            if path:
                check_not_an_input(path, [p for p, error in jobs if error is None], flag)
                stack.enter_context(hold_output(path, f"wait for it to finish, or pass another {flag} file"))
        store = (stack.enter_context(RecordStore.open(args.json_lines, _record_settings(args)))
                 if args.json_lines else None)
        recorded = [store is not None and path in store for path, _ in jobs]
        tally, elapsed = _run_jobs(args, jobs, recorded, store, stack)
    return _finish(tally, elapsed, args)


def _run_jobs(args, jobs, recorded, store, stack) -> tuple["Tally", float]:
    """Detect what is not recorded yet and write every input's record in input order; return what was done
    and the seconds it took once the model was loaded."""
    from runtime.jobs.tasks import Task, failed
    from runtime.jobs.workers import WorkerLost

    todo = [Task(i, path, error) for i, ((path, error), done) in enumerate(zip(jobs, recorded)) if not done]
    detector = DETECTOR.parse(args)
    # the model is loaded here, and only when an input may be an image: a missing file is said at once
    runner = stack.enter_context(_runner(args, detector)) if any(t.error is None for t in todo) else None
    if runner is not None:
        detector.model.check_network(runner.cfg)
    for folder in (args.save_dir, args.crops) if runner else ():  # only once the model loaded: a failed start
        if folder:                                                   # leaves nothing behind
            from retinaface_trt.fileio import make_dirs
            make_dirs(folder)
    output, start = _InOrder(jobs, recorded, store, Outputs.of(args), len(todo)), time.perf_counter()
    try:
        with output.json():
            for outcome in runner.run(todo) if runner else (failed(t, t.error) for t in todo):
                output.add(outcome)
            output.close()
    except WorkerLost as lost:
        raise RetinaFaceError(f"{lost}; {_resume_hint(args)}") from None
    finally:
        output.progress.finish()
    return output.tally, time.perf_counter() - start


def _runner(args, detector: options.DetectorSettings):
    """The detector of this process (``--device``) or one worker process per device (``--devices``), as a
    context manager with ``cfg`` and ``run(tasks)`` (:mod:`runtime.jobs`)."""
    from runtime.jobs.tasks import JobSettings, default_read_threads

    names = _devices(args)
    workers = len(names) if names else 1
    from runtime.cli.video import anonymize_settings

    settings = JobSettings(batch=args.batch, vis_threshold=VIS.parse(args), annotate=bool(args.save_dir),
                           read_threads=args.read_threads or default_read_threads(workers),
                           pixel_budget=args.pixel_budget and args.pixel_budget * 1_000_000,
                           anonymize=anonymize_settings(args), crop_size=args.crop_size if args.crops else None,
                           decoder=args.decoder)
    if names:
        from runtime.jobs.workers import DetectorFactory, WorkerPool

        return WorkerPool(names, DetectorFactory(detector.options()), settings)
    from runtime.detector import Detector
    from runtime.jobs.pipeline import InProcess

    return InProcess(Detector.from_options(**detector.options()), settings)


def _record_settings(args) -> dict:
    """What the records of a ``--json-lines`` file depend on: a resumed run must use the same (the store refuses
    others, see :mod:`runtime.jobs.records`)."""
    model = args.engine or args.weights
    from retinaface_trt.thresholds import Thresholds

    return {"model": os.path.realpath(model) if model else None, "precision": args.precision, "resize": args.resize,
            "input_size": list(args.input_size) if args.input_size else None,
            **{name: getattr(args, name) for name in Thresholds.names()}, "vis_threshold": args.vis_threshold,
            "max_pixels": args.max_pixels, "decoder": args.decoder}


def _check_batch(args) -> None:
    """``--batch`` bounded by the pixel budget of this machine (:mod:`runtime.budget`): N images of the input
    size (``--resize stretch``/``letterbox``; with ``original`` the default input size stands for a photo) must
    fit in it. Batches of larger images are split by the budget as they form."""
    if not args.batch or args.batch == 1:
        return
    from runtime.budget import batch_fits, pixel_budget
    from runtime.options import DEFAULT_INPUT_SIZE

    width, height = args.input_size or DEFAULT_INPUT_SIZE
    given = args.pixel_budget
    devices = _devices(args) or [args.device]
    budget = given * 1_000_000 if given else pixel_budget(devices[0], host_share=len(devices))
    if not batch_fits(width * height, args.batch, budget):
        whose = "--pixel-budget" if given else ("this machine's pixel budget (half its free memory at 192 bytes a "
                                                "pixel, see docs/errors.md)")
        raise RetinaFaceError(f"--batch {args.batch}: {args.batch} images of {width}×{height} take "
                              f"{args.batch * width * height} pixels, more than {whose} of {budget}; "
                              f"use --batch {max(1, budget // (width * height))} or less")


def _devices(args) -> list[str] | None:
    if not args.devices:
        return None
    from runtime.jobs.devices import resolve_devices

    return resolve_devices(args.devices)


def _resume_hint(args) -> str:
    if args.json_lines and args.json_lines not in STDOUT_NAMES:
        return f"the records in {args.json_lines} are kept: run the same command again to do the rest"
    return "with --json-lines OUT.jsonl, running the command again skips the images already done"


def _check_flags(args) -> None:
    """Flags that exclude each other: a usage error (exit status 2)."""
    problem = None
    empty = [flag for flag, value in (("--json", args.json_path), ("--json-lines", args.json_lines),
                                      ("--save-dir", args.save_dir)) if value is not None and not value.strip()]
    if empty:
        problem = f"{empty[0]} needs a file name, found an empty string"
    elif args.devices and args.device != "auto":
        problem = "--device and --devices exclude each other (--devices cuda:0,cuda:1 runs one worker per device)"
    elif args.json_path and args.json_lines and _same_output(args.json_path, args.json_lines):
        problem = "--json and --json-lines must be different files"
    if problem:
        parser = getattr(args, "command_parser", None)
        if parser is None:
            raise RetinaFaceError(problem)
        parser.error(problem)


def _same_output(first: str, second: str) -> bool:
    if first in STDOUT_NAMES or second in STDOUT_NAMES:
        return first in STDOUT_NAMES and second in STDOUT_NAMES
    return os.path.abspath(first) == os.path.abspath(second)


def expand_inputs(inputs: list[str]) -> list[tuple[str, str | None]]:
    """Files, folders (their image files, sorted, not recursive) and globs → [(path, error or None)]."""
    jobs: list[tuple[str, str | None]] = []
    for item in inputs:
        if os.path.isdir(item):
            jobs.extend(_folder_images(item))
        elif not os.path.exists(item) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            jobs.extend((m, None) for m in matches if os.path.isfile(m))
            if not matches:
                jobs.append((item, f"{item}: no file matches this pattern"))
        elif not os.path.exists(item):
            jobs.append((item, f"{item}: no such file; check the path"))
        else:
            jobs.append((item, None))
    return jobs


def _folder_images(folder: str) -> list[tuple[str, str | None]]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as error:
        return [(folder, f"cannot read folder {folder}: {error.strerror or error}")]
    found = [(os.path.join(folder, n), None) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    if found:
        return found
    hint = (f"; its subfolders are not searched: pass '{os.path.join(folder, '**', '*.jpg')}' (quoted) to include them"
            if any(os.path.isdir(os.path.join(folder, n)) for n in names) else "")
    return [(folder, f"folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES[:4])}, …){hint}")]


def _check_outputs(args) -> None:
    """Every output is known to be writable before any work starts (see retinaface_trt.fileio)."""
    from retinaface_trt.fileio import check_output_dir

    options.check_json_path(args)
    for folder in (args.save_dir, args.crops):
        if folder:
            check_output_dir(folder)


def _check_save_dir_holds_no_input(save_dir, jobs) -> None:
    if not save_dir or not os.path.isdir(save_dir):
        return
    for path, error in jobs:
        folder = os.path.dirname(path) or "."
        if error is None and os.path.isdir(folder) and os.path.samefile(folder, save_dir):
            raise RetinaFaceError(f"--save-dir {save_dir} holds the input {path}: its annotated copy would replace "
                                  "it; choose another folder")


@dataclass
class Tally:
    """What a run did: ``images``, ``faces`` and ``failed`` of the inputs processed now; ``recorded`` and
    ``recorded_failed`` of those skipped because an earlier run recorded them."""

    images: int = 0
    faces: int = 0
    failed: int = 0
    recorded: int = 0
    recorded_failed: int = 0


@dataclass(frozen=True)
class Outputs:
    """Where records and annotated copies go (detect's output flags)."""

    json_path: str | None
    force: bool
    save_dir: str | None
    crops: str | None
    quiet: bool

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Outputs":
        return cls(args.json_path, args.force, args.save_dir, args.crops, args.quiet)


class _InOrder:
    """Writes the records in input order as outcomes arrive in any order: annotated copy, then ``--json-lines``
    line, then ``--json`` entry; a recorded input's stored record takes its place in ``--json``. Holds only the
    outcomes that arrived before an earlier input's (bounded by the images the runner has in flight)."""

    def __init__(self, jobs, recorded: list[bool], store, outputs: Outputs, todo: int):
        from runtime.progress import Progress

        self.jobs, self.recorded, self.store, self.outputs = jobs, recorded, store, outputs
        self.tally, self.used_names, self.crop_names = Tally(), set(), set()
        self.progress = Progress(todo, "detect", enabled=todo > 1 and not outputs.quiet, unit="images")
        self._waiting: dict = {}
        self._position = 0
        self._write_json = None

    @contextlib.contextmanager
    def json(self):
        """While open, records also go to ``--json`` (written in full when it closes without an error)."""
        if not self.outputs.json_path:
            yield
            return
        from runtime.jobs.records import json_array

        with json_array(self.outputs.json_path, force=self.outputs.force) as self._write_json:
            yield

    def add(self, outcome) -> None:
        self._waiting[outcome.index] = outcome
        self._flush()

    def close(self) -> None:
        self._flush()
        if self._position != len(self.jobs):     # a runner that lost a task without saying so
            raise RetinaFaceError(f"internal error: no record for input {self.jobs[self._position][0]}")

    def _flush(self) -> None:
        while self._position < len(self.jobs):
            if self.recorded[self._position]:
                self._stored(self.jobs[self._position][0])
            elif self._position in self._waiting:
                self._write(self._waiting.pop(self._position))
            else:
                return
            self._position += 1

    def _write(self, outcome) -> None:
        from runtime.face import error_record

        path, record = self.jobs[outcome.index][0], outcome.record
        if outcome.annotated is not None:
            try:
                _save_annotated(path, outcome.annotated, self.outputs.save_dir, self.used_names)
            except RetinaFaceError as failure:    # the copy failed: so did this input
                record = error_record(path, str(failure))
        if outcome.crops and "error" not in record:
            try:
                _save_crops(path, outcome.crops, self.outputs.crops, self.crop_names)
            except RetinaFaceError as failure:
                record = error_record(path, str(failure))
        if "error" in record:
            self.progress.write(f"retinaface-trt detect: error: {record['error']}")
        if self.store is not None:
            self.store.append(record)
        if self._write_json:
            self._write_json(record)
        self.tally.images += 1
        self.tally.faces += len(record["faces"])
        self.tally.failed += "error" in record
        self.progress.advance()

    def _stored(self, path: str) -> None:
        entry = self.store.entry(path)
        if self.outputs.save_dir and not entry.failed:
            _annotated_name(path, self.used_names)     # the name its copy got in the earlier run stays taken
        if self._write_json:
            self._write_json(self.store.record(path))
        self.tally.recorded += 1
        self.tally.recorded_failed += entry.failed


def _finish(tally: Tally, elapsed_s: float, args) -> int:
    """Print the summary line (unless --quiet) and the failure count; return the exit status."""
    failed = tally.failed + tally.recorded_failed
    if not args.quiet:
        print(summary_line(tally, elapsed_s, args.json_lines, args.save_dir), file=sys.stderr)
    if failed:
        earlier = f" ({tally.recorded_failed} recorded earlier)" if tally.recorded_failed else ""
        print(f"retinaface-trt detect: {failed} of {tally.images + tally.recorded} inputs failed{earlier}",
              file=sys.stderr)
    return 1 if failed else 0


def summary_line(tally: Tally, elapsed_s: float, store: str | None = None, save_dir: str | None = None) -> str:
    """``N images, M faces, X ms/image``: the inputs processed by this run, faces as reported (score ≥
    --vis-threshold), time per input (read, detect, write); ``; K already in OUT.jsonl`` for those skipped;
    ``; annotated copies in DIR`` with ``--save-dir`` (or ``-s``, whose folder the user did not name)."""
    images, faces = tally.images, tally.faces
    line = (f"{images} image{'s' * (images != 1)}, {faces} face{'s' * (faces != 1)}, "
            f"{1000 * elapsed_s / max(1, images):.1f} ms/image")
    line += f"; {tally.recorded} already in {store}" if tally.recorded else ""
    return line + (f"; annotated copies in {save_dir}" if save_dir else "")


def _save_annotated(path: str, data: bytes, save_dir: str, used_names: set) -> None:
    """Write ``data``, the annotated copy of ``path`` (:func:`runtime.jobs.tasks.annotated_copy`), into ``save_dir``
    under the input's file name (``name_1.jpg``, … for a name already written by this run), replacing a file of
    that name from an earlier run."""
    from retinaface_trt.fileio import write_bytes_atomic

    write_bytes_atomic(os.path.join(save_dir, _annotated_name(path, used_names)), data, force=True)


def _save_crops(path: str, crops, crops_dir: str, used_names: set) -> None:
    """Write the aligned crops of ``path`` (PNG bytes, by score) as ``<stem>_<k>.png`` into ``crops_dir``."""
    from retinaface_trt.fileio import write_bytes_atomic

    stem = os.path.splitext(_annotated_name(path, used_names))[0]
    for k, data in enumerate(crops):
        write_bytes_atomic(os.path.join(crops_dir, f"{stem}_{k}.png"), data, force=True)


def _annotated_name(path: str, used_names: set) -> str:
    """The file name of ``path``'s copy, taken in ``used_names``: two inputs with one file name (from different
    folders) keep both copies."""
    stem, suffix = os.path.splitext(os.path.basename(path))
    name, n = stem + suffix, 1
    while name in used_names:
        name, n = f"{stem}_{n}{suffix}", n + 1
    used_names.add(name)
    return name
