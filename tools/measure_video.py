"""Frames per second of ``detect`` on a video file, against the decode-only bound of the same file, in one run.
For docs/detection.md#videos.

    python tools/measure_video.py MODEL IMAGE [--size 1280x720] [--frames 300] [--backend auto] [--device cpu]
        [--precision fp32] [--resize original] [--input-size 640x640] [--batch N] [--threads N] [--repeat 2]

(from the checkout's root: ``PYTHONPATH=.`` when the project is not installed). Method: an H.264 file (libx264,
CRF 23, preset veryfast, yuv420p, 30 frames/s) of ``--frames`` frames is made from IMAGE resized to ``--size``,
shifted 4 px per frame. Then, ``--repeat`` times each, alternating:
``decode``: :class:`runtime.video.VideoReader` over the file, every frame converted to BGR (what detect reads);
``detect``: :func:`runtime.jobs.video.run_video` with ``--every 1``, records made and dropped, no copies (decoding
in its thread, detection batched, a CUDA device synchronised by every batch's results). The model is loaded and
run once on the first frames before any timing. Prints one JSON object: the best of each, the ratio, the machine.
"""

import argparse
import json
import os
import platform
import tempfile
import time

import cv2
import numpy as np


def make_video(path: str, image: np.ndarray, size, frames: int) -> None:
    import av

    base = cv2.resize(image, size)
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(base, 4 * i, axis=1)), format="bgr24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def decode_fps(path: str) -> float:
    from runtime.video import VideoReader

    start = time.perf_counter()
    with VideoReader(path) as reader:
        count = sum(1 for _ in reader)
    return count / (time.perf_counter() - start)


def detect_fps(detector, path: str, batch) -> float:
    from runtime.jobs.video import VideoSettings, run_video

    tally = run_video(detector, path, VideoSettings(batch=batch, progress=False), lambda record: None)
    return tally.frames / tally.seconds


def main() -> None:
    from runtime.cli.options import _parse_size
    from runtime.detector import Detector

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help=".pth / .wts weights, or an .onnx model or TensorRT engine")
    parser.add_argument("image")
    parser.add_argument("--size", type=_parse_size, default=(1280, 720))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--resize", default="original")
    parser.add_argument("--input-size", type=_parse_size, default=(640, 640))
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "video.mp4")
        make_video(path, cv2.imread(args.image), args.size, args.frames)
        given = {"engine" if args.model.endswith((".onnx", ".engine", ".plan")) else "weights": args.model}
        with Detector.from_options(**given, backend=args.backend, device=args.device,
                                   precision=args.precision, resize=args.resize, input_size=args.input_size,
                                   threads=args.threads) as detector:
            first = cv2.resize(cv2.imread(args.image), args.size)
            detector.detect_arrays([first] * (args.batch or 1))      # warm-up (cuDNN, graphs) outside the timing
            detector.detect_arrays([first] * (args.batch or 1))
            decode, detect = [], []
            for _ in range(args.repeat):
                decode.append(decode_fps(path))
                detect.append(detect_fps(detector, path, args.batch))
            backend = detector.backend.name
    print(json.dumps({"decode_fps": round(max(decode), 1), "detect_fps": round(max(detect), 1),
                      "ratio": round(max(detect) / max(decode), 3), "runs": {"decode": decode, "detect": detect},
                      "size": args.size, "frames": args.frames, "backend": backend, "device": args.device,
                      "precision": args.precision, "resize": args.resize, "input_size": args.input_size,
                      "batch": args.batch, "cpu": platform.processor() or platform.machine(),
                      "cores": os.cpu_count(), "gpu": _gpu()}))


def _gpu():
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


if __name__ == "__main__":
    main()
