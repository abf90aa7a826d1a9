"""``detect``'s flags for videos, aligned crops and anonymised copies, and its run over video sources.

``detect`` hands its inputs here when they are videos (:func:`runtime.video.is_video_source`); a command takes
either videos or images, not both. For videos, ``--json-lines OUT.jsonl`` (``-``: standard output) receives one
line per detected frame (:func:`runtime.video.frame_record`), written as soon as the frame is done (a stream may
never end; an existing file needs ``--force``); ``--save-dir`` gets the annotated (or anonymised) copy, and
``--crops`` the aligned faces (:mod:`runtime.jobs.video`). A source that cannot be opened, is damaged part way or
stalls is one line on stderr; the other sources still run and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import os
import sys

from retinaface_trt.errors import RetinaFaceError
from runtime.cli import options

DEFAULT_ANONYMIZED_DIR = os.path.join("out", "anonymized")


def _check_timeout(text: str) -> float:
    value = options.check_non_negative("the timeout", text)
    if value <= 0:
        raise RetinaFaceError(f"the timeout must be more than 0 seconds, found {text}")
    return value


def _check_crop_size(text: str) -> int:
    from runtime.align import check_crop_size

    return check_crop_size(text)


def _check_margin(text: str) -> float:
    from runtime.anonymize import AnonymizeSettings

    return AnonymizeSettings(margin=options.check_non_negative("the margin", text)).margin


def add_video_args(parser) -> None:
    """--every, --timeout (videos), --crops, --crop-size, --anonymize, --anonymize-margin (videos and images)."""
    from runtime.align import DEFAULT_CROP_SIZE
    from runtime.anonymize import DEFAULT_MARGIN, METHODS
    from runtime.video import DEFAULT_TIMEOUT_S

    group = parser.add_argument_group("videos, aligned crops and anonymised copies (docs/detection.md)")
    group.add_argument("--every", type=options.count, default=1, metavar="N",
                       help="videos: detect every N-th frame (frames 0, N, 2N, …; default 1, every frame)")
    group.add_argument("--timeout", type=options.argparse_type(_check_timeout, "timeout"), default=DEFAULT_TIMEOUT_S,
                       metavar="SECONDS", help="videos: give up on a source that sends nothing for this long "
                                               f"(default {DEFAULT_TIMEOUT_S:g})")
    group.add_argument("--crops", metavar="DIR", help="write each reported face aligned to ArcFace's five-point "
                                                      "template, as PNG files (created if missing)")
    group.add_argument("--crop-size", type=options.argparse_type(_check_crop_size, "crop_size"),
                       default=DEFAULT_CROP_SIZE, metavar="N", help=f"side of the crops (default {DEFAULT_CROP_SIZE})")
    group.add_argument("--anonymize", choices=METHODS, default=None,
                       help="write copies with every reported face hidden instead of annotated copies, into "
                            f"--save-dir (default {DEFAULT_ANONYMIZED_DIR})")
    group.add_argument("--anonymize-margin", type=options.argparse_type(_check_margin, "margin"),
                       default=DEFAULT_MARGIN,
                       metavar="F", help="hide the box enlarged by F times its size on each side "
                                         f"(default {DEFAULT_MARGIN})")


def prepare(args) -> None:
    """Defaults that depend on other flags: --anonymize writes into --save-dir (out/anonymized if not given)."""
    if args.anonymize and not args.save_dir:
        args.save_dir = DEFAULT_ANONYMIZED_DIR


def anonymize_settings(args):
    """The AnonymizeSettings of --anonymize, or None."""
    if not args.anonymize:
        return None
    from runtime.anonymize import AnonymizeSettings

    return AnonymizeSettings(args.anonymize, args.anonymize_margin)


def check_videos(args, videos: list[str]) -> None:
    """Flags and inputs a video run cannot take: one clear line each."""
    if len(videos) != len(args.inputs):
        images = [i for i in args.inputs if i not in videos]
        raise RetinaFaceError(f"videos and images in one command ({videos[0]} and {images[0]}): run detect once for "
                              "the videos and once for the images")
    if args.json_path:
        raise RetinaFaceError("--json takes image records; for videos use --json-lines OUT.jsonl (one line per frame)")
    if args.devices:
        raise RetinaFaceError("--devices runs folders of images; a video runs on one --device")


def expand_videos(videos: list[str]) -> list[str]:
    """Glob patterns among the video files (``'clips/*.mp4'``, quoted) → the files they match, sorted; a pattern
    matching nothing stays, to be reported as missing."""
    import glob

    found: list[str] = []
    for item in videos:
        matches = [] if "://" in item or os.path.exists(item) or not glob.has_magic(item) else sorted(glob.glob(item))
        found.extend(matches or [item])
    return found


def run_videos(args, videos: list[str], chosen: options.DetectorSettings) -> int:
    """Run every video source of ``detect`` with the detector ``chosen`` by its flags; return the exit status (1
    when a source failed or was cut short)."""
    import time

    from retinaface_trt.fileio import check_output_dir, check_writable, make_dirs
    from runtime.detector import Detector
    from runtime.jobs.video import VideoSettings, run_video

    from runtime.video import require_av

    check_videos(args, videos)
    require_av()                    # before any work: a missing extra is one line
    videos = expand_videos(videos)
    if args.json_lines:
        check_writable(args.json_lines, args.force)
    for folder in (args.save_dir, args.crops):
        if folder:
            check_output_dir(folder)
    settings = VideoSettings(args.every, args.batch, args.vis_threshold, args.timeout, args.save_dir,
                             anonymize_settings(args), args.crops, args.crop_size, progress=not args.quiet)
    failed = frames = faces = 0
    with contextlib.ExitStack() as stack:
        detector = stack.enter_context(Detector.from_options(**chosen.options()))
        chosen.model.check_network(detector.backend.cfg)
        for folder in (args.save_dir, args.crops):
            if folder:
                make_dirs(folder)
        write = _line_writer(stack, args.json_lines)
        start = time.perf_counter()          # frames/s of the videos, without loading the model
        for source in videos:
            try:
                tally = run_video(detector, source, settings, write)
            except RetinaFaceError as error:
                print(f"retinaface-trt detect: error: {error}", file=sys.stderr)
                failed += 1
                continue
            frames, faces = frames + tally.frames, faces + tally.faces
            if tally.problem:
                print(f"retinaface-trt detect: error: {tally.problem}", file=sys.stderr)
                failed += 1
    elapsed = time.perf_counter() - start
    if not args.quiet:
        print(f"{len(videos)} video{'s' * (len(videos) != 1)}, {frames} frames, {faces} faces, "
              f"{frames / max(elapsed, 1e-9):.1f} frames/s"
              + (f"; copies in {args.save_dir}" if args.save_dir else ""), file=sys.stderr)
    return 1 if failed else 0


def _line_writer(stack: contextlib.ExitStack, path: str | None):
    """``write(record)``: one JSON line, flushed, to ``path`` (``-``: standard output); a no-op without a path."""
    from runtime.face import to_json

    if not path:
        return lambda record: None
    if path not in options.STDOUT_NAMES:
        from retinaface_trt.fileio import make_dirs

        make_dirs(os.path.dirname(path) or ".")      # missing folders are made, as for every output file
    handle = sys.stdout if path in options.STDOUT_NAMES else stack.enter_context(open(path, "w", encoding="utf-8"))

    def write(record: dict) -> None:
        handle.write(to_json(record) + "\n")
        handle.flush()
    return write
