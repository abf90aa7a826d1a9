"""Videos through ``detect`` and the SDK: files, a truncated file, a local HTTP stream (whole and stalled), the
per-frame records, the written copies and the aligned crops. The videos are made here from the shared photos
with the encoders PyAV ships (FFV1 lossless, H.264 by libx264)."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
import time

import cv2
import numpy as np
import pytest

from runtime import backends
from runtime.cli import main as cli
from tests.runtime.conftest import ReplayBackend

import av  # noqa: E402  (the "video" extra; part of "dev", so CI always has it)


def make_video(path, frames, fps=10, codec="ffv1", options=None):
    """Write BGR frames with ``codec`` (ffv1: lossless, bgr0 pixels; else yuv420p); returns ``path``."""
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        out.mux(stream.encode(None))
    return path


def read_video(path):
    """(frames as BGR arrays, average rate, (width, height)) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
        return frames, stream.average_rate, (stream.codec_context.width, stream.codec_context.height)


def shifted(image, count, step=8):
    return [np.ascontiguousarray(np.roll(image, step * i, axis=1)) for i in range(count)]


@pytest.fixture
def detect(monkeypatch, crowd_reference):
    """``detect`` with the replay backend (the same stored detections for every frame, mapped to its size)."""
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))
    return lambda *argv: cli.main(["detect", *argv, "--weights", "replayed.pth", "--resize", "stretch"])


@pytest.fixture(scope="module")
def crowd_mkv(tmp_path_factory, shared_dir):
    image = cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))
    return make_video(tmp_path_factory.mktemp("video") / "crowd.mkv", shifted(image, 5))


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_record_per_detected_frame_with_every(detect, crowd_mkv, tmp_path, crowd_reference):
    out = tmp_path / "frames.jsonl"
    assert detect(str(crowd_mkv), "--json-lines", str(out), "--every", "2") == 0
    records = lines(out)
    assert [r["frame"] for r in records] == [0, 2, 4]
    assert [r["time"] for r in records] == pytest.approx([0.0, 0.2, 0.4])
    expected = int((crowd_reference["dets_640_in_origin_coords"][:, 4] >= 0.6).sum())
    assert all(r["video"] == str(crowd_mkv) and (r["width"], r["height"]) == (1024, 624) for r in records)
    assert all(len(r["faces"]) == expected for r in records)


def test_annotated_video_keeps_rate_size_and_frames(detect, crowd_mkv, tmp_path):
    assert detect(str(crowd_mkv), "--save-dir", str(tmp_path / "copies")) == 0
    frames, rate, size = read_video(tmp_path / "copies" / "crowd.mkv")
    source, source_rate, source_size = read_video(crowd_mkv)
    assert (len(frames), rate, size) == (len(source), source_rate, source_size)
    red = lambda f: (f[:, :, 2] == 255) & (f[:, :, 1] == 0) & (f[:, :, 0] == 0)     # noqa: E731 (boxes: pure red)
    assert red(frames[0]).sum() > red(source[0]).sum() + 1000


def test_anonymized_video_changes_nothing_outside_the_faces(detect, crowd_mkv, tmp_path):
    # a lossless (FFV1) source is written losslessly: outside the enlarged boxes every pixel is the source's
    from runtime.anonymize import regions

    out = tmp_path / "frames.jsonl"
    assert detect(str(crowd_mkv), "--anonymize", "fill", "--save-dir", str(tmp_path / "anon"),
                  "--json-lines", str(out)) == 0
    frames, _, _ = read_video(tmp_path / "anon" / "crowd.mkv")
    source, _, _ = read_video(crowd_mkv)
    for frame, original, record in zip(frames, source, lines(out), strict=True):
        boxes = [[f["box"]["x"], f["box"]["y"], f["box"]["x"] + f["box"]["w"], f["box"]["y"] + f["box"]["h"]]
                 for f in record["faces"]]
        inside = np.zeros(frame.shape[:2], bool)
        for x1, y1, x2, y2 in regions(boxes, 1024, 624, 0.2):
            inside[y1:y2, x1:x2] = True
        assert inside.any() and (frame[~inside] == original[~inside]).all()
        assert (frame[inside] == 0).all()


def test_anonymized_image_changes_nothing_outside_the_faces(detect, crowd_image, tmp_path):
    from runtime.anonymize import regions

    cv2.imwrite(str(tmp_path / "crowd.png"), crowd_image)
    assert detect(str(tmp_path / "crowd.png"), "--anonymize", "pixelate", "--anonymize-margin", "0.1",
                  "--save-dir", str(tmp_path / "anon"), "--json", str(tmp_path / "faces.json")) == 0
    copy = cv2.imread(str(tmp_path / "anon" / "crowd.png"))
    [record] = json.loads((tmp_path / "faces.json").read_text())
    boxes = [[f["box"]["x"], f["box"]["y"], f["box"]["x"] + f["box"]["w"], f["box"]["y"] + f["box"]["h"]]
             for f in record["faces"]]
    inside = np.zeros(copy.shape[:2], bool)
    for x1, y1, x2, y2 in regions(boxes, 1024, 624, 0.1):
        inside[y1:y2, x1:x2] = True
    assert (copy[~inside] == crowd_image[~inside]).all()
    assert (copy[inside] != crowd_image[inside]).any(-1).mean() > 0.5


def test_crops_of_frames_and_images(detect, crowd_mkv, crowd_image, tmp_path):
    assert detect(str(crowd_mkv), "--every", "4", "--crops", str(tmp_path / "crops"), "--crop-size", "96",
                  "--json-lines", str(tmp_path / "f.jsonl")) == 0
    faces = sum(len(r["faces"]) for r in lines(tmp_path / "f.jsonl"))
    files = sorted((tmp_path / "crops").iterdir())
    assert len(files) == faces > 0 and files[0].name == "crowd_f000000_0.png"
    assert cv2.imread(str(files[0])).shape == (96, 96, 3)
    cv2.imwrite(str(tmp_path / "c.png"), crowd_image)
    assert detect(str(tmp_path / "c.png"), "--crops", str(tmp_path / "image_crops")) == 0
    assert len(list((tmp_path / "image_crops").glob("c_*.png"))) == faces // 2      # frames 0 and 4


def test_truncated_file_gives_the_frames_that_decode_and_one_line(detect, shared_dir, tmp_path, capsys):
    image = cv2.resize(cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg")), (320, 192))
    whole = make_video(tmp_path / "whole.mp4", shifted(image, 60, 4), codec="libx264",
                       options={"movflags": "faststart"})            # the index first, as streamed files have it
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    out = tmp_path / "f.jsonl"
    assert detect(str(cut), "--json-lines", str(out), "--save-dir", str(tmp_path / "copy")) == 1
    count = len(lines(out))
    assert 0 < count < 60
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{count} of the 60 frames" in errors[0]
    assert len(read_video(tmp_path / "copy" / "cut.mp4")[0]) == count


def test_missing_video_is_one_line(detect, tmp_path, capsys):
    assert detect(str(tmp_path / "none.mp4")) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "none.mp4" in errors[0]


def test_a_glob_of_videos_runs_each(detect, crowd_mkv, tmp_path, capsys):
    import shutil

    for name in ("a.mkv", "b.mkv"):
        shutil.copy(crowd_mkv, tmp_path / name)
    assert detect(str(tmp_path / "*.mkv"), "--every", "5", "--json-lines", str(tmp_path / "f.jsonl")) == 0
    assert [r["video"] for r in lines(tmp_path / "f.jsonl")] == [str(tmp_path / "a.mkv"), str(tmp_path / "b.mkv")]
    assert "2 videos, 10 frames" in capsys.readouterr().err


def test_videos_and_images_are_not_mixed(detect, crowd_mkv, tmp_path, capsys):
    assert detect(str(crowd_mkv), str(tmp_path / "a.jpg")) == 1
    assert "videos and images" in capsys.readouterr().err


@contextlib.contextmanager
def serve_bytes(data: bytes, stall_after: int | None = None):
    """An HTTP server on 127.0.0.1 sending ``data`` (then, with ``stall_after``, only that many bytes and nothing
    more for 30 s); yields its URL; stops when the block ends."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/x-matroska")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if stall_after is None else data[:stall_after])
            self.wfile.flush()
            if stall_after is not None:
                release.wait(30)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/crowd.mkv"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_http_stream_gives_the_files_records(detect, crowd_mkv, tmp_path, capsys):
    assert detect(str(crowd_mkv), "--json-lines", str(tmp_path / "file.jsonl")) == 0
    capsys.readouterr()
    with serve_bytes(crowd_mkv.read_bytes()) as url:
        assert detect(url, "--json-lines", str(tmp_path / "http.jsonl"), "--save-dir", str(tmp_path / "copy")) == 0
    # a stream declares no frame count: the progress line is the count and the rate (how often it is drawn
    # depends on time, so only its form is checked); the summary has the final count
    err = capsys.readouterr().err
    assert re.search(rf"detect {re.escape(url)} [1-5] frames  [0-9.]+ frames/s", err), err
    assert re.search(r"^1 video, 5 frames, ", err, re.MULTILINE), err
    from_file, from_http = lines(tmp_path / "file.jsonl"), lines(tmp_path / "http.jsonl")
    assert [dict(r, video=None) for r in from_http] == [dict(r, video=None) for r in from_file]
    assert (tmp_path / "copy" / "crowd.mkv").exists()


def test_stalled_stream_times_out(detect, crowd_mkv, tmp_path, capsys):
    data = crowd_mkv.read_bytes()
    with serve_bytes(data, stall_after=len(data) // 2) as url:
        start = time.monotonic()
        status = detect(url, "--json-lines", str(tmp_path / "f.jsonl"), "--timeout", "1")
        elapsed = time.monotonic() - start
    assert status == 1 and elapsed < 20
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and url in errors[0]
    assert 0 < len(lines(tmp_path / "f.jsonl")) < 5


def test_video_of_a_still_photo_has_the_photos_faces(mnet_pth, shared_dir, tmp_path):
    # lossless frames are the photo's pixels: the detector must find exactly the photo's detections in each
    from runtime.detector import Detector
    from runtime.video import detect_video

    image = cv2.imread(str(shared_dir / "images" / "children_1024x768.jpg"))
    video = make_video(tmp_path / "still.mkv", [image] * 3)
    with Detector.from_options(weights=str(mnet_pth), backend="torch", device="cpu") as detector:
        expected = detector.detect_arrays([image])[0]
        expected = expected[expected[:, 4] >= 0.6]
        found = list(detect_video(detector, str(video), batch=3))
    assert [item.index for item in found] == [0, 1, 2] and len(expected) > 0
    for item in found:
        assert np.array_equal(item.dets, expected)


@pytest.mark.parametrize("text, expected", [("clip.MP4", True), ("a/b.webm", True), ("rtsp://cam/live", True),
                                            ("http://127.0.0.1:8000/x", True), ("0", True), ("photo.jpg", False),
                                            ("folder", False)])
def test_what_counts_as_a_video_source(text, expected):
    from runtime.video import is_video_source

    assert is_video_source(text) is expected


def test_copy_names_of_sources():
    from runtime.video import output_name

    assert output_name("2") == "camera2.mp4"
    assert output_name("rtsp://host:554/live/cam1?token=x") == "cam1.mp4"
    assert output_name("http://host/clips/a.mkv") == "a.mkv"
    assert output_name("/videos/b.mov") == "b.mov"


def test_a_failure_part_way_leaves_no_copy(monkeypatch, crowd_reference, crowd_mkv, tmp_path, capsys):
    from retinaface_trt.errors import RetinaFaceError

    class FailingThird(ReplayBackend):
        def infer(self, batch):
            if len(self.batches) == 2:
                raise RetinaFaceError("the backend failed")
            return super().infer(batch)

    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: FailingThird(crowd_reference))
    status = cli.main(["detect", str(crowd_mkv), "--weights", "replayed.pth", "--resize", "stretch",
                       "--save-dir", str(tmp_path / "copy")])
    assert status == 1 and "the backend failed" in capsys.readouterr().err
    assert list((tmp_path / "copy").iterdir()) == []


def test_ctrl_c_keeps_the_copy_of_the_frames_so_far(crowd_reference, crowd_mkv, tmp_path):
    from runtime.detector import Detector
    from runtime.jobs.video import VideoSettings, run_video

    records = []

    def write(record):
        records.append(record)
        if len(records) == 3:
            raise KeyboardInterrupt

    detector = Detector(ReplayBackend(crowd_reference), resize="stretch")
    with pytest.raises(KeyboardInterrupt):
        run_video(detector, str(crowd_mkv), VideoSettings(copy_dir=str(tmp_path), progress=False), write)
    assert len(read_video(tmp_path / "crowd.mkv")[0]) == 2       # the third frame was interrupted before writing


def test_sdk_engine_gives_one_json_record_per_frame(crowd_reference, crowd_mkv, tmp_path):
    from runtime import Engine
    from runtime.detector import Detector

    with Engine(detector=Detector(ReplayBackend(crowd_reference), resize="stretch"), vis_threshold=0.9) as engine:
        records = [json.loads(line) for line in engine.video(str(crowd_mkv), every=2)]
    assert [r["frame"] for r in records] == [0, 2, 4]
    expected = int((crowd_reference["dets_640_in_origin_coords"][:, 4] >= 0.9).sum())
    assert all(len(r["faces"]) == expected and min(f["score"] for f in r["faces"]) >= 0.9 for r in records)


def test_release_waits_for_a_video_being_read(crowd_reference, crowd_mkv):
    from retinaface_trt.errors import RetinaFaceError
    from runtime import Engine
    from runtime.detector import Detector

    engine = Engine(detector=Detector(ReplayBackend(crowd_reference), resize="stretch"))
    frames = engine.video(str(crowd_mkv))
    first = next(frames)
    released = threading.Event()
    releasing = threading.Thread(target=lambda: (engine.release(), released.set()))
    releasing.start()
    assert not released.wait(0.5)                  # the video being read keeps its detector
    rest = list(frames)
    releasing.join(30)
    assert released.is_set() and len([first, *rest]) == 5
    with pytest.raises(RetinaFaceError, match="released"):
        next(engine.video(str(crowd_mkv)))
