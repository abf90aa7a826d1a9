"""The worker process's own pieces: its task source and its one-line failures (the process: test_workers.py)."""

from __future__ import annotations

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.reader import END
from runtime.jobs.tasks import Task
from runtime.jobs.worker import QueueSource, one_line


class FakeQueue:
    def __init__(self, parcels):
        self.parcels = list(parcels)

    def get(self, timeout=None):
        import queue

        if not self.parcels:
            raise queue.Empty
        return self.parcels.pop(0)

    get_nowait = get


def test_the_queue_source_takes_parcels_until_none():
    source = QueueSource(FakeQueue([[Task(0, "a"), Task(1, "b")], None]))
    assert [source.take(wait=False).path, source.take(wait=False).path, source.take(wait=False)] == ["a", "b", END]


def test_an_orphaned_worker_stops_taking_tasks(monkeypatch):
    import os

    source = QueueSource(FakeQueue([]))
    assert source.take(wait=True) is None
    monkeypatch.setattr(os, "getppid", lambda: 1)       # the parent died: the worker was handed to init
    assert source.take(wait=True) is END


def test_one_line_keeps_our_messages_and_names_other_errors():
    assert one_line(RetinaFaceError("weights file w.pth not found")) == "weights file w.pth not found"
    assert one_line(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be …")) == \
        "RuntimeError: CUDA error: out of memory"
