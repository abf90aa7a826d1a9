"""ImageReader: decodes ahead in threads, hands images on in task order, never holds more than its bound."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.reader import END, ImageReader, TaskList
from runtime.jobs.tasks import Task
from tests.runtime.jobs.fakes import LiveCount


class Live(LiveCount):
    """A read function whose images are tracked: ``peak`` is the most alive at once."""

    def __init__(self, delay_s=0.0):
        super().__init__()
        self.delay_s = delay_s

    def __call__(self, path, max_pixels=0):
        time.sleep(self.delay_s)
        if path.startswith("bad"):
            raise RetinaFaceError(f"{path}: not a readable image")
        return self.track(np.full((2, 3, 3), int(path.split("_")[1]) % 256, np.uint8))


def drain(reader, hold=0.0) -> list:
    items = []
    while (item := reader.get(timeout=5)) is not END:
        assert item is not None, "the reader stalled"
        time.sleep(hold)       # a slow consumer: the reader must wait, not pile images up
        items.append((item.task.index, None if item.image is None else int(item.image[0, 0, 0]), item.error))
        del item
    return items


def test_images_come_in_task_order_whatever_finishes_first():
    read = Live()
    slow_first = lambda path, max_pixels=0: (time.sleep(0.05 if path == "img_0" else 0), read(path))[1]  # noqa: E731
    tasks = [Task(i, f"img_{i}") for i in range(12)]
    with ImageReader(TaskList(tasks), read_threads=4, prefetch=8, read=slow_first) as reader:
        assert [index for index, _, _ in drain(reader)] == list(range(12))


def test_bad_inputs_become_errors_and_the_others_still_come():
    tasks = [Task(0, "img_0"), Task(1, "bad_1"), Task(2, "none", error="none: no file matches this pattern"),
             Task(3, "img_3")]
    with ImageReader(TaskList(tasks), read_threads=2, read=Live()) as reader:
        assert drain(reader) == [(0, 0, None), (1, None, "bad_1: not a readable image"),
                                 (2, None, "none: no file matches this pattern"), (3, 3, None)]


@pytest.mark.parametrize("count", [10, 200])
def test_decoded_images_stay_within_the_bound_whatever_the_number_of_tasks(count):
    read = Live()
    tasks = [Task(i, f"img_{i}") for i in range(count)]
    with ImageReader(TaskList(tasks), read_threads=3, prefetch=6, queued=2, read=read) as reader:
        assert len(drain(reader, hold=0.002)) == count
    assert read.peak <= 6 + 2 + 1 + 1      # prefetch, queued, one in the feeder's hands, one with the consumer


class Trickle:
    """A source with ``ready`` tasks now and the rest only once ``release`` is set (as a worker's parcels)."""

    def __init__(self, ready: int, total: int):
        self.tasks, self.ready, self.release = [Task(i, f"img_{i}") for i in range(total)], ready, threading.Event()

    def take(self, wait):
        if not self.tasks:
            return END
        if self.tasks[0].index >= self.ready and not self.release.is_set():
            time.sleep(0.01 if wait else 0)
            return None
        return self.tasks.pop(0)


def test_decoded_images_are_not_held_back_while_the_source_has_no_task():
    source = Trickle(ready=3, total=5)
    with ImageReader(source, read_threads=2, prefetch=4, queued=8, read=Live()) as reader:
        got = [reader.get(timeout=2) for _ in range(3)]
        assert [item.task.index for item in got] == [0, 1, 2]
        assert reader.get(timeout=0.1) is None          # nothing more yet, and no hang
        source.release.set()
        assert [index for index, _, _ in drain(reader)] == [3, 4]


def test_a_failing_source_is_raised_in_the_consumer():
    class Broken:
        def take(self, wait):
            raise ValueError("the queue is gone")

    with ImageReader(Broken(), read=Live()) as reader:
        with pytest.raises(ValueError, match="the queue is gone"):
            reader.get(timeout=5)


def test_closing_early_stops_the_threads():
    tasks = [Task(i, f"img_{i}") for i in range(1000)]
    reader = ImageReader(TaskList(tasks), read_threads=2, prefetch=4, read=Live(delay_s=0.001))
    with reader:
        assert reader.get(timeout=5).task.index == 0
    assert not reader._feeder.is_alive()


# ---- JPEGs decoded on the device in batches (nvJPEG, stood in for by OpenCV here) -----------------------------

class BatchDecoder:
    """Stands in for :func:`runtime.image_io.decode_jpegs` (no GPU here): OpenCV's pixels, each call's size kept."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, datas, device, sources, max_pixels):
        from runtime.image_io import decode_image

        self.calls.append(len(datas))
        out = []
        for data, source in zip(datas, sources):
            try:
                out.append(decode_image(data, source=source, max_pixels=max_pixels))
            except RetinaFaceError as error:
                out.append(error)
        return out


@pytest.fixture
def mixed_folder(tmp_path):
    """40 files: JPEGs, two PNGs and one broken JPEG (index 7), each its own grey level."""
    import cv2

    paths = []
    for i in range(40):
        suffix = ".png" if i in (5, 30) else ".jpg"
        path = tmp_path / f"{i:02d}{suffix}"
        cv2.imwrite(str(path), np.full((24 + i, 32, 3), 5 * i, np.uint8))
        if i == 7:
            path.write_bytes(path.read_bytes()[:40])      # a JPEG header, then nothing
        paths.append(str(path))
    return paths


def test_jpegs_decoded_on_the_device_come_in_task_order_in_batches(mixed_folder, monkeypatch):
    """With ``decode_on``, the threads only read the files and the feeder decodes the JPEGs read so far in one
    call: the same images, in the same order, as OpenCV in the threads; other formats and broken files as there."""
    import runtime.image_io as image_io
    from runtime.budget import PixelBudget

    decoder = BatchDecoder()
    monkeypatch.setattr(image_io, "decode_jpegs", decoder)
    tasks = [Task(i, path) for i, path in enumerate(mixed_folder)]

    def run(**options):
        budget = PixelBudget(10_000_000)
        with ImageReader(TaskList(tasks), read_threads=4, prefetch=16, queued=4, budget=budget, **options) as reader:
            items = []
            while (item := reader.get(timeout=5)) is not END:
                items.append((item.task.index, None if item.image is None else item.image.tobytes(), item.error,
                              item.pixels, item.encoded))
                budget.give(item.pixels)
        assert budget.taken == 0
        return items

    on_threads, on_device = run(), run(decode_on="cpu", decode_batch=8)
    assert on_device == on_threads
    assert [index for index, *_ in on_device] == list(range(40))
    assert on_device[7][1] is None and "07.jpg" in on_device[7][2]
    assert all(encoded is None for *_, encoded in on_device)          # no bytes leave the reader
    # 38 JPEGs, one refused by its header before any decoder sees it
    assert sum(decoder.calls) == 37 and max(decoder.calls) > 1 and max(decoder.calls) <= 8
