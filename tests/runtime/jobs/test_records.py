"""The record store (--json-lines) and the streamed JSON array (--json)."""

from __future__ import annotations

import json
import os

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.face import to_json
from runtime.jobs import records
from runtime.jobs.records import RecordStore, json_array


def record(name: str, faces: int = 1, error: str | None = None) -> dict:
    face = {"score": 0.9, "box": {"x": 1.0, "y": 2.0, "w": 3.0, "h": 4.0}, "landmarks": []}
    made = {"image": name, "width": 8, "height": 6, "faces": [face] * faces}
    return {**made, "width": None, "height": None, "faces": [], "error": error} if error else made


def test_appended_records_are_read_back_by_the_next_run(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordStore.open(path) as store:
        assert len(store) == 0 and not path.exists()            # nothing is created before the first record
        store.append(record("a.jpg", 2))
        store.append(record("b.jpg", error="b.jpg: no such file"))
    with RecordStore.open(path) as store:
        assert "a.jpg" in store and "b.jpg" in store and "c.jpg" not in store
        assert store.record("a.jpg") == record("a.jpg", 2)
        assert store.entry("a.jpg")[2:] == (2, False) and store.entry("b.jpg")[2:] == (0, True)
    assert path.read_text().splitlines() == [to_json(record("a.jpg", 2)), to_json(record("b.jpg", error="b.jpg: no such file"))]


def test_a_torn_last_line_is_dropped_and_replaced(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = to_json(record("a.jpg")) + "\n"
    path.write_text(whole + to_json(record("b.jpg"))[:25])      # killed while writing b.jpg's line
    with RecordStore.open(path) as store:
        assert "a.jpg" in store and "b.jpg" not in store
        store.append(record("b.jpg"))
    assert path.read_text() == whole + to_json(record("b.jpg")) + "\n"


def test_a_line_that_is_not_a_record_is_an_error_naming_it(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(to_json(record("a.jpg")) + "\n" + '{"some": "thing"}\n' + to_json(record("b.jpg")) + "\n")
    with pytest.raises(RetinaFaceError, match=r"r.jsonl line 2 is not a record of `detect --json-lines` "
                                              r"\(no \"image\" path and \"faces\" list\)"):
        RecordStore.open(path)
    path.write_text("not json\n")
    with pytest.raises(RetinaFaceError, match="line 1 is not a record .*not JSON"):
        RecordStore.open(path)


def test_a_file_being_written_by_another_run_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordStore.open(path) as first:
        first.append(record("a.jpg"))
        with pytest.raises(RetinaFaceError, match="being written by another detect run"):
            RecordStore.open(path)
    RecordStore.open(path).close()          # free again once the first run is done


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match="is a folder; expected a file name"):
        RecordStore.open(tmp_path)


def test_a_missing_folder_is_made_on_the_first_record_only(tmp_path):
    with RecordStore.open(tmp_path / "new" / "r.jsonl") as store:
        assert list(tmp_path.iterdir()) == []          # opening writes nothing
        store.append({"image": "a.jpg", "width": 1, "height": 1, "faces": []})
    assert json.loads((tmp_path / "new" / "r.jsonl").read_text())["image"] == "a.jpg"
    (tmp_path / "plain").write_text("x")
    with pytest.raises(RetinaFaceError, match="plain is a file, not a folder"):
        RecordStore.open(tmp_path / "plain" / "r.jsonl")


def test_the_last_record_of_an_image_counts(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(to_json(record("a.jpg", 1)) + "\n\n" + to_json(record("a.jpg", 3)) + "\n")
    with RecordStore.open(path) as store:
        assert store.record("a.jpg")["faces"] == record("a.jpg", 3)["faces"]


def test_records_are_synced_at_most_every_interval_and_at_the_end(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(records.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    with RecordStore.open(tmp_path / "r.jsonl", sync_interval_s=3600) as store:
        for i in range(50):
            store.append(record(f"{i}.jpg"))
        assert synced == []
    assert len(synced) == 1
    with RecordStore.open(tmp_path / "r.jsonl", sync_interval_s=0) as store:
        store.append(record("x.jpg"))
        store.append(record("y.jpg"))
    assert len(synced) == 1 + 2 + 1


def test_dash_streams_the_records_to_standard_output(capsys):
    with RecordStore.open("-") as store:
        store.append(record("a.jpg"))
    assert capsys.readouterr().out == to_json(record("a.jpg")) + "\n"


@pytest.mark.parametrize("count", [0, 1, 3])
def test_the_streamed_array_is_the_text_of_to_json(tmp_path, count):
    made = [record(f"{i}.jpg", i) for i in range(count)]
    with json_array(tmp_path / "o.json") as write:
        for one in made:
            write(one)
    assert (tmp_path / "o.json").read_text() == to_json(made, indent=2) + "\n"
    assert json.loads((tmp_path / "o.json").read_text()) == made


def test_a_failed_run_leaves_no_array(tmp_path):
    with pytest.raises(RuntimeError):
        with json_array(tmp_path / "o.json") as write:
            write(record("a.jpg"))
            raise RuntimeError("the worker died")
    assert list(tmp_path.iterdir()) == []
